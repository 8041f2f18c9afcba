package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/dataapi"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/vault"
)

// loadVaultKey reads (creating on first start) the vault master key file.
func loadVaultKey(c config) (vault.Config, error) {
	path := c.MasterKeyFile
	if path == "" {
		path = filepath.Join(c.DataDir, "master.key")
	}
	return vault.LoadOrCreateKeyFile(path)
}

var serveFlags = []string{"addr", "data-dir", "database-url", "operator-token", "regulator-token", "public-url", "log-level", "log-format", "shutdown-timeout", "max-body", "ledger-key-file", "ledger-origin", "witness-keys", "webhook-key-file", "policy-dir", "policy-bundle", "oauth-key-file", "oauth-secret-file", "master-key-file", "access-token-ttl", "client-ip-header", "disclosure-batch"}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs, cf := flagSet("serve", "Run the Steward broker. With --database-url it uses PostgreSQL; otherwise the SQLite file in --data-dir.\nMigrations are applied at start-up.", &c, stderr, serveFlags...)
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	if len(c.OperatorToken) < httpapi.MinTokenLength {
		return fmt.Errorf("set an operator token of at least %d characters with --operator-token or STEWARD_OPERATOR_TOKEN (e.g. `openssl rand -hex 32`)", httpapi.MinTokenLength)
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, c, log, func(string) {})
}

// helpOK turns a -h request into success.
func helpOK(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// serve opens the store, builds the handlers and serves until ctx ends,
// then drains in-flight requests for up to c.ShutdownTimeout. ready is
// called with the base URL once the listener is open.
func serve(ctx context.Context, c config, log *slog.Logger, ready func(baseURL string)) error {
	tuneGC()
	s, applied, err := backend.Open(ctx, c.DatabaseURL, c.DataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	log.LogAttrs(ctx, slog.LevelInfo, "store open", slog.String("backend", s.Backend()), slog.Any("migrations_applied", applied))
	if err := logStoreWarnings(ctx, s, log); err != nil {
		return err
	}

	pol, err := startPolicy(ctx, c, s, log)
	if err != nil {
		return fmt.Errorf("start policy: %w", err)
	}
	pol.reloadOnHangup(ctx)
	log.LogAttrs(ctx, slog.LevelInfo, "policy in force", slog.String("policy_hash", pol.engine.PolicyHash()))

	sender, stopWork, err := startWorkers(context.WithoutCancel(ctx), c, s, pol.engine, log)
	if err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	defer stopWork()

	vcfg, err := loadVaultKey(c)
	if err != nil {
		return err
	}
	vlt, err := vault.New(s, vcfg)
	if err != nil {
		return err
	}
	log.LogAttrs(ctx, slog.LevelInfo, "vault ready", slog.Int("master_key_version", vcfg.KeyVersion))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The authorization server starts once the listener gives the issuer;
	// until then (and when it is off) no access token is active.
	var op *oauth.Provider
	introspect := func(ctx context.Context, token string) ([]string, bool, error) {
		if op == nil {
			return nil, false, nil
		}
		info, err := op.IntrospectAccessToken(ctx, token)
		if errors.Is(err, oauth.ErrInactive) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if info.Session != nil && info.Session.JKT != "" {
			// These APIs take Bearer tokens and check no proof, so a
			// DPoP-bound token is no good here (RFC 9449 §7.2).
			return nil, false, nil
		}
		return info.Scopes, true, nil
	}
	router, err := httpapi.New(httpapi.Config{Store: s, Logger: log, Registry: reg, OperatorToken: c.OperatorToken, IntrospectToken: introspect,
		RegulatorToken: c.RegulatorToken, MaxBody: c.MaxBody, ReloadPolicy: pol.Reload, PolicyHash: pol.engine.PolicyHash})
	if err != nil {
		return err
	}
	lg, err := startLedger(ctx, c, s, log)
	if err != nil {
		return fmt.Errorf("start ledger: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		defer cancel()
		if err := lg.shutdown(sctx); err != nil {
			log.LogAttrs(sctx, slog.LevelError, "ledger shutdown", slog.Any("error", err))
		}
	}()
	if lg.cosignatures != nil {
		router.Post("/ledger/cosignature", lg.cosignatures.ServeHTTP)
	}
	router.Handle("/ledger/*", lg.handler)
	me, err := customerAPI(s, pol.engine, vlt, &op, log)
	if err != nil {
		return err
	}
	router.Mount(oauth.CustomerAPIPath, me)
	router.Get("/webhooks/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_ = json.NewEncoder(w).Encode(sender.JWKS())
	})
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	base := "http://" + ln.Addr().String()
	issuer := strings.TrimSuffix(c.PublicURL, "/")
	if issuer == "" {
		issuer = base
	}
	var stopOAuth func()
	op, stopOAuth, err = startOAuth(ctx, c, s, pol.engine, issuer, log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start oauth: %w", err)
	}
	defer stopOAuth()
	if op != nil {
		mountOAuth(router, op)
		if err := mountDataAPI(router, s, pol.engine, vlt, op, issuer, lg.kick, c, reg, log); err != nil {
			ln.Close()
			return fmt.Errorf("start data api: %w", err)
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "listening", slog.String("url", base))
	ready(base)
	return serveHTTP(ctx, ln, router, log, c.ShutdownTimeout)
}

// mountOAuth serves the authorization server's public endpoints and,
// behind the operator token, its client administration at /v1/admin/oauth.
func mountOAuth(router *httpapi.Router, p *oauth.Provider) {
	h := p.Handler()
	for _, path := range []string{oauth.PathMetadata, oauth.PathOpenIDConfig, oauth.PathJWKS} {
		router.Handle(path, h)
	}
	router.Handle("/oauth/*", h)
	router.Handle(oauth.PathCustomerSession, p.CustomerSession())
	router.Handle("/v1/admin/oauth/*", router.RequireOperator(http.StripPrefix("/v1/admin/oauth", p.Operator())))
}

// DefaultGCPercent is the garbage collector's target when GOGC is not set.
// Every request allocates briefly (policy evaluation, JSON, database
// rows) and keeps little, so a higher target than Go's 100 trades a few
// tens of megabytes for fewer collections and a shorter latency tail.
// GOGC and GOMEMLIMIT still override it.
const DefaultGCPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}

// mountDataAPI serves the firms' Data API (broker/dataapi) on the
// authorization server's tokens and DPoP validator.
func mountDataAPI(router *httpapi.Router, s store.Store, eng *policy.Engine, v *vault.Service, op *oauth.Provider,
	publicURL string, kick func(), c config, reg prometheus.Registerer, log *slog.Logger) error {
	introspect := func(ctx context.Context, token string) (dataapi.Token, error) {
		info, err := op.IntrospectAccessToken(ctx, token)
		if errors.Is(err, oauth.ErrInactive) {
			return dataapi.Token{}, dataapi.ErrInactive
		}
		if err != nil {
			return dataapi.Token{}, err
		}
		t := dataapi.Token{ClientID: broker.ClientID(info.ClientID), Scopes: info.Scopes, Signature: info.Signature}
		if info.Session != nil {
			t.FirmID, t.ConsentID, t.JKT = info.Session.FirmID, info.Session.ConsentID, info.Session.JKT
		}
		return t, nil
	}
	api, err := dataapi.New(dataapi.Config{Store: s, Policy: eng, Vault: v, Introspect: introspect, DPoP: op.DPoPValidator(),
		PublicURL: publicURL, Kick: kick, MaxBatch: c.DisclosureBatch, Batches: c.DisclosureTransactions, Metrics: reg, Logger: log})
	if err != nil {
		return err
	}
	for _, p := range dataapi.Routes {
		router.Handle(p, api)
	}
	return nil
}

// Server timeouts.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
)

// serveHTTP serves h on ln until ctx is done, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish (up to grace), and
// returns nil on a clean drain.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "shutting down", slog.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "stopped")
	return nil
}

// logStoreWarnings logs what the database's configuration will cost in
// service (postgres.Store.Warnings), once at start.
func logStoreWarnings(ctx context.Context, s store.Store, log *slog.Logger) error {
	w, ok := s.(interface {
		Warnings(context.Context) ([]string, error)
	})
	if !ok {
		return nil
	}
	warnings, err := w.Warnings(ctx)
	if err != nil {
		return err
	}
	for _, m := range warnings {
		log.LogAttrs(ctx, slog.LevelWarn, m, slog.String("backend", s.Backend()))
	}
	return nil
}

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs, cf := flagSet("migrate", "Apply pending database migrations and exit. Safe to run while other replicas start.", &c, stderr, "data-dir", "database-url")
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	s, applied, err := backend.Open(ctx, c.DatabaseURL, c.DataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "%s schema is up to date\n", s.Backend())
		return nil
	}
	fmt.Fprintf(stdout, "%s: applied migrations %v\n", s.Backend(), applied)
	return nil
}
