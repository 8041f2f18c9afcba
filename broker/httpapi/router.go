package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stewardhq/steward/broker/store"
)

// Config configures the API router.
type Config struct {
	// Store is the database. Required.
	Store store.Store
	// Logger receives access logs and errors. Required.
	Logger *slog.Logger
	// Registry collects and serves metrics at /metrics. Required.
	Registry *prometheus.Registry
	// OperatorToken authenticates /v1/admin. Required, at least 32 characters.
	OperatorToken string
	// RegulatorToken authenticates the read-only audit API under
	// /v1/audit until regulators sign in with OAuth2 client credentials.
	// Empty disables token access to it. At least 32 characters otherwise.
	RegulatorToken string
	// ReloadPolicy re-reads the operator's regulatory rules and puts them
	// in force, returning the new policy hash; nil disables the route.
	ReloadPolicy func(ctx context.Context) (string, error)
	// PolicyHash reports the policy version in force; nil disables the route.
	PolicyHash func() string
	// IntrospectToken, when set, admits OAuth access tokens granted the
	// audit:read scope (regulators' client credentials) on /v1/audit.
	IntrospectToken Introspector
	// MaxBody bounds request bodies; 0 means DefaultMaxBody.
	MaxBody int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// MinTokenLength is the shortest operator token accepted.
const MinTokenLength = 32

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("httpapi: Config.Store is required")
	case c.Logger == nil:
		return fmt.Errorf("httpapi: Config.Logger is required")
	case c.Registry == nil:
		return fmt.Errorf("httpapi: Config.Registry is required")
	case len(c.OperatorToken) < MinTokenLength:
		return fmt.Errorf("httpapi: the operator token must be at least %d characters", MinTokenLength)
	case c.RegulatorToken != "" && len(c.RegulatorToken) < MinTokenLength:
		return fmt.Errorf("httpapi: the regulator token must be at least %d characters", MinTokenLength)
	case c.RegulatorToken != "" && c.RegulatorToken == c.OperatorToken:
		return fmt.Errorf("httpapi: the regulator and operator tokens must differ")
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Router is the root handler. Later packages mount their own handlers on
// it with Mount before it starts serving.
type Router struct {
	chi.Router
	cfg Config
}

// New builds the router with health, metrics and the operator API.
func New(cfg Config) (*Router, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	m := newMetrics(cfg.Registry)
	r.Use(middleware.RequestID, accessLog(cfg.Logger), m.middleware, recoverer(cfg.Logger), limitBody(cfg.MaxBody))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Problem{Status: http.StatusNotFound, Type: ProblemType + "not-found", Detail: "no such endpoint"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Problem{Status: http.StatusMethodNotAllowed, Type: ProblemType + "method-not-allowed"})
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", readyHandler(cfg.Store, cfg.Logger))
	r.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	tokens := map[Role]string{RoleOperator: cfg.OperatorToken, RoleRegulator: cfg.RegulatorToken}
	r.Route("/v1/admin", func(r chi.Router) {
		r.Use(requireRole(RoleOperator, tokens, nil, cfg.Logger))
		mountAdmin(r, cfg)
	})
	r.Route("/v1/audit", func(r chi.Router) {
		r.Use(requireRole(RoleRegulator, tokens, cfg.IntrospectToken, cfg.Logger))
		mountAudit(r, cfg)
	})
	return &Router{Router: r, cfg: cfg}, nil
}

// RequireOperator wraps h so that it answers only requests bearing the
// operator token, as /v1/admin does; other packages' operator routes use it.
func (r *Router) RequireOperator(h http.Handler) http.Handler {
	tokens := map[Role]string{RoleOperator: r.cfg.OperatorToken, RoleRegulator: r.cfg.RegulatorToken}
	return requireRole(RoleOperator, tokens, nil, r.cfg.Logger)(h)
}

func readyHandler(s store.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.Ping(ctx); err != nil {
			log.LogAttrs(r.Context(), slog.LevelWarn, "not ready", slog.Any("error", err))
			WriteProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Type: ProblemType + "not-ready", Detail: "the database does not answer"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": s.Backend()})
	}
}

// accessLog logs one line per request.
func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			next.ServeHTTP(ww, r)
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("request_id", middleware.GetReqID(r.Context())),
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", ww.Status()), slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr))
		})
	}
}

// recoverer turns a panic into a 500 problem and an error log line.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.LogAttrs(r.Context(), slog.LevelError, "panic", slog.Any("panic", v),
						slog.String("request_id", middleware.GetReqID(r.Context())))
					WriteProblem(w, r, Problem{Status: http.StatusInternalServerError, Type: ProblemType + "internal"})
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody caps every request body; reads past it fail with MaxBytesError.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				WriteProblem(w, r, Problem{Status: http.StatusRequestEntityTooLarge, Type: ProblemType + "too-large",
					Detail: "the body is larger than " + strconv.FormatInt(n, 10) + " bytes"})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "steward_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "steward_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(ww.Status())).Inc()
		m.duration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}
