// Package httpapi holds Steward's JSON APIs: the router and middleware
// (request ids, structured access logs, metrics, panics, body limits),
// health endpoints, the operator API under /v1/admin, strict request
// decoding, and the one function that maps errors to RFC 9457
// application/problem+json responses.
package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/stewardhq/steward/broker"
)

// ProblemType is the base of the problem type URIs Steward uses.
const ProblemType = "https://steward.example/problems/"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// RequestID lets an operator find the request in the logs.
	RequestID string `json:"request_id,omitempty"`
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	p.RequestID = middleware.GetReqID(r.Context())
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// requestError is a client mistake found while reading the request. Its
// detail is safe to show the client.
type requestError struct {
	status int
	kind   string
	detail string
}

func (e *requestError) Error() string { return e.detail }

func badRequest(kind, detail string) error {
	return &requestError{status: http.StatusBadRequest, kind: kind, detail: detail}
}

// WriteError maps err to a problem response: this is the only place API
// errors become HTTP statuses. Details of our own failures go to the log,
// never to the client; validation messages (broker.ErrInvalid) are meant
// for the client and are shown.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := Problem{Status: http.StatusInternalServerError, Title: "Internal error", Type: ProblemType + "internal"}
	lvl := slog.LevelError
	var re *requestError
	switch {
	case errors.As(err, &re):
		p = Problem{Status: re.status, Type: ProblemType + re.kind, Detail: re.detail}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrInvalid), errors.Is(err, broker.ErrScopeWidened):
		p = Problem{Status: http.StatusBadRequest, Type: ProblemType + "invalid", Title: "Invalid request", Detail: err.Error()}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrNotFound):
		p = Problem{Status: http.StatusNotFound, Type: ProblemType + "not-found", Title: "Not found"}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrTransition):
		p = Problem{Status: http.StatusConflict, Type: ProblemType + "transition", Title: "Not allowed in the current state", Detail: err.Error()}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrConflict):
		p = Problem{Status: http.StatusConflict, Type: ProblemType + "conflict", Title: "Conflict", Detail: "it already exists or was changed concurrently"}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="steward"`)
		p = Problem{Status: http.StatusUnauthorized, Type: ProblemType + "unauthenticated", Title: "Authentication required"}
		lvl = slog.LevelDebug
	case errors.Is(err, broker.ErrForbidden):
		p = Problem{Status: http.StatusForbidden, Type: ProblemType + "forbidden", Title: "Forbidden"}
		lvl = slog.LevelInfo
	}
	log.LogAttrs(r.Context(), lvl, "request failed", slog.Int("status", p.Status),
		slog.String("request_id", middleware.GetReqID(r.Context())), slog.Any("error", err))
	WriteProblem(w, r, p)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
