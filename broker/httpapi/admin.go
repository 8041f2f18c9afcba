package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Role is who a bearer token belongs to.
type Role string

const (
	RoleOperator  Role = "operator"
	RoleRegulator Role = "regulator"
)

// tokenHash is a token's SHA-256, compared in constant time so neither the
// token nor its length leaks through timing.
type tokenHash [sha256.Size]byte

// Introspector checks an OAuth access token: whether it is active and the
// scopes it was granted. The authorization server provides it.
type Introspector func(ctx context.Context, token string) (scopes []string, active bool, err error)

// ScopeAudit is the OAuth scope that makes an access token a regulator's.
const ScopeAudit = "audit:read"

// requireRole admits requests whose bearer token belongs to role: no or an
// unknown token is 401, another role's token is 403. For the regulator
// role an OAuth access token granted ScopeAudit also admits (checked with
// introspect when it is not nil); any other live access token — a firm's —
// is 403.
func requireRole(role Role, tokens map[Role]string, introspect Introspector, log *slog.Logger) func(http.Handler) http.Handler {
	known := map[Role]tokenHash{}
	for r, t := range tokens {
		if t != "" {
			known[r] = sha256.Sum256([]byte(t))
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
			ok = ok && strings.EqualFold(scheme, "Bearer") && got != ""
			sum := tokenHash(sha256.Sum256([]byte(got)))
			var who Role
			for candidate, h := range known {
				if subtle.ConstantTimeCompare(sum[:], h[:]) == 1 {
					who = candidate
				}
			}
			if ok && who == "" && role == RoleRegulator && introspect != nil {
				scopes, active, err := introspect(r.Context(), got)
				switch {
				case err != nil:
					WriteError(w, r, log, fmt.Errorf("introspect: %w", err))
					return
				case active && slices.Contains(scopes, ScopeAudit):
					who = RoleRegulator
				case active:
					WriteError(w, r, log, fmt.Errorf("%w: an access token without %s on a regulator route", broker.ErrForbidden, ScopeAudit))
					return
				}
			}
			switch {
			case !ok || who == "":
				WriteError(w, r, log, broker.ErrUnauthenticated)
			case who != role:
				WriteError(w, r, log, fmt.Errorf("%w: a %s token on a %s route", broker.ErrForbidden, who, role))
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// page reads ?after= and ?limit= (1..store.MaxLimit).
func page(r *http.Request) (store.Page, error) {
	p := store.Page{After: r.URL.Query().Get("after")}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxLimit {
			return p, badRequest("invalid-query", "limit must be an integer from 1 to "+strconv.Itoa(store.MaxLimit))
		}
		p.Limit = n
	}
	return p, nil
}

// listResponse is a page of items; Next is the ?after= value for the next
// page, empty on the last.
type listResponse[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func newList[T any](items []T, p store.Page, id func(T) string) listResponse[T] {
	out := listResponse[T]{Items: items}
	if out.Items == nil {
		out.Items = []T{}
	}
	if len(items) == p.N() {
		out.Next = id(items[len(items)-1])
	}
	return out
}

type admin struct{ cfg Config }

func mountAdmin(r chi.Router, cfg Config) {
	a := admin{cfg}
	r.Get("/firms", a.listFirms)
	r.Post("/firms", a.createFirm)
	r.Get("/firms/{id}", a.getFirm)
	r.Post("/firms/{id}/approve", a.setFirmStatus(broker.FirmApproved))
	r.Post("/firms/{id}/suspend", a.setFirmStatus(broker.FirmSuspended))
	r.Put("/firms/{id}/webhook", a.setFirmWebhook)
	r.Get("/webhooks", a.listWebhooks)
	r.Get("/customers", a.listCustomers)
	r.Post("/customers", a.createCustomer)
	r.Get("/customers/{id}", a.getCustomer)
	if cfg.PolicyHash != nil {
		r.Get("/policy", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"policy_hash": cfg.PolicyHash()})
		})
	}
	if cfg.ReloadPolicy != nil {
		r.Post("/policy/reload", a.reloadPolicy)
	}
}

// reloadPolicy puts the operator's current regulatory rules in force. A
// broken policy is refused with 400 and the running version stays.
func (a admin) reloadPolicy(w http.ResponseWriter, r *http.Request) {
	hash, err := a.cfg.ReloadPolicy(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"policy_hash": hash})
}

func (a admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, a.cfg.Logger, err)
}

// NewFirmRequest is the body of POST /v1/admin/firms.
type NewFirmRequest struct {
	LegalName    string `json:"legal_name"`
	Sector       string `json:"sector"`
	Jurisdiction string `json:"jurisdiction"`
}

func (a admin) createFirm(w http.ResponseWriter, r *http.Request) {
	var req NewFirmRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.cfg.Now().UTC()
	f := broker.Firm{ID: broker.NewFirmID(), LegalName: req.LegalName, Sector: req.Sector, Jurisdiction: req.Jurisdiction,
		Status: broker.FirmPending, CreatedAt: now, UpdatedAt: now}
	if err := f.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	err := a.cfg.Store.Update(r.Context(), func(tx store.Tx) error {
		if err := tx.CreateFirm(r.Context(), f); err != nil {
			return err
		}
		return stageFirmEntry(r.Context(), tx, broker.EntryFirmRegistered, f)
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/admin/firms/"+string(f.ID))
	writeJSON(w, http.StatusCreated, f)
}

func (a admin) listFirms(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var firms []broker.Firm
	if err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) { firms, err = tx.ListFirms(r.Context(), p); return err }); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(firms, p, func(f broker.Firm) string { return string(f.ID) }))
}

func (a admin) getFirm(w http.ResponseWriter, r *http.Request) {
	id, err := broker.ParseFirmID(chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, broker.ErrNotFound)
		return
	}
	var f broker.Firm
	if err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) { f, err = tx.GetFirm(r.Context(), id); return err }); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a admin) setFirmStatus(to broker.FirmStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := broker.ParseFirmID(chi.URLParam(r, "id"))
		if err != nil {
			a.fail(w, r, broker.ErrNotFound)
			return
		}
		var f broker.Firm
		err = a.cfg.Store.Update(r.Context(), func(tx store.Tx) (err error) {
			f, err = tx.SetFirmStatus(r.Context(), id, to, a.cfg.Now())
			if err != nil || to != broker.FirmSuspended {
				return err
			}
			return stageFirmEntry(r.Context(), tx, broker.EntryFirmSuspended, f)
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	}
}

// stageFirmEntry writes the ledger entry for a firm's registration or
// suspension in the same transaction as the change.
func stageFirmEntry(ctx context.Context, tx store.Tx, typ broker.EntryType, f broker.Firm) error {
	b, err := broker.Entry{Type: typ, Time: f.UpdatedAt, Firm: f.ID}.CanonicalBytes()
	if err != nil {
		return err
	}
	return tx.StageLedgerEntry(ctx, b)
}

// WebhookRequest is the body of PUT /v1/admin/firms/{id}/webhook.
type WebhookRequest struct {
	URL string `json:"url"`
}

func (a admin) setFirmWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := broker.ParseFirmID(chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, broker.ErrNotFound)
		return
	}
	var req WebhookRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	var f broker.Firm
	err = a.cfg.Store.Update(r.Context(), func(tx store.Tx) (err error) {
		f, err = tx.SetFirmWebhook(r.Context(), id, req.URL, a.cfg.Now())
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// listWebhooks lists webhook deliveries; ?state=dead is the dead-letter list.
func (a admin) listWebhooks(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	state := broker.WebhookState(r.URL.Query().Get("state"))
	switch state {
	case "", broker.WebhookPending, broker.WebhookDelivered, broker.WebhookDead:
	default:
		a.fail(w, r, badRequest("invalid-query", "state must be pending, delivered or dead"))
		return
	}
	var ds []broker.WebhookDelivery
	if err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) { ds, err = tx.ListWebhooks(r.Context(), state, p); return err }); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(ds, p, func(d broker.WebhookDelivery) string { return d.ID }))
}

// NewCustomerRequest is the body of POST /v1/admin/customers.
type NewCustomerRequest struct {
	Handle       string `json:"handle"`
	DisplayName  string `json:"display_name"`
	Email        string `json:"email"`
	Jurisdiction string `json:"jurisdiction"`
	Minor        bool   `json:"minor"`
}

func (a admin) createCustomer(w http.ResponseWriter, r *http.Request) {
	var req NewCustomerRequest
	if err := decodeJSON(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	c := broker.Customer{ID: broker.NewCustomerID(), Handle: req.Handle, DisplayName: req.DisplayName, Email: req.Email,
		Jurisdiction: req.Jurisdiction, Minor: req.Minor, CreatedAt: a.cfg.Now().UTC()}
	if err := c.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.cfg.Store.Update(r.Context(), func(tx store.Tx) error { return tx.CreateCustomer(r.Context(), c) }); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/admin/customers/"+string(c.ID))
	writeJSON(w, http.StatusCreated, c)
}

func (a admin) listCustomers(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var cs []broker.Customer
	if err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) { cs, err = tx.ListCustomers(r.Context(), p); return err }); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(cs, p, func(c broker.Customer) string { return string(c.ID) }))
}

func (a admin) getCustomer(w http.ResponseWriter, r *http.Request) {
	id, err := broker.ParseCustomerID(chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, broker.ErrNotFound)
		return
	}
	var c broker.Customer
	if err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) { c, err = tx.GetCustomer(r.Context(), id); return err }); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}
