// Package customerapi is the customer's own JSON API, mounted at /v1/me,
// that the web portal is built on: their profile, every disclosure of
// their data with its ledger receipt, their consents (and one-click
// revocation), their vault (read, write, import), their sharing terms, and
// their complete export.
//
// # Who is asking
//
// Every request is authenticated by Config.Authenticate, which cmd wires
// to the login session of the authorization server ((*oauth.Provider).Customer),
// so this package does not import oauth. A request without a valid
// session gets 401. State-changing requests (POST, PUT, PATCH, DELETE)
// must also pass Config.CheckCSRF (an Origin equal to Steward's own and
// the session's token in the X-CSRF-Token header; see broker/oauth
// customer.go), or get 403 and change nothing.
//
// Every listing is by the session's customer id, and a consent of another
// customer answers 404 exactly as one that does not exist, so ids of other
// customers' consents cannot be probed (DESIGN.md invariant 7).
//
// # Errors and paging
//
// Errors are RFC 9457 problems from httpapi.WriteError; a refused import
// adds an "errors" member listing each failed row. Listings take
// ?limit= (1–1000, default 100) and ?after=<id of the last item seen> and
// answer {"items": [...], "next": "<id>"}, with next set only when a full
// page came back.
package customerapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/export"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/vault"
)

// Config configures New. Every field but Logger and CSRFToken is required.
type Config struct {
	Store store.Store
	// Authenticate returns the customer whose session came with the
	// request. (*oauth.Provider).Customer is one.
	Authenticate func(*http.Request) (broker.CustomerID, bool)
	// CheckCSRF reports whether a state-changing request is the
	// customer's own. (*oauth.Provider).CheckCustomerCSRF is one.
	CheckCSRF func(*http.Request) bool
	// CSRFToken, if set, gives the session's CSRF token, which GET /v1/me
	// returns so the portal can send it back.
	CSRFToken func(*http.Request) string
	// Consents runs revocation and terms changes.
	Consents *consent.Service
	// Vault reads, writes and imports vault records.
	Vault *vault.Service
	// Export builds the customer's archive.
	Export *export.Service
	// Ledger is read for disclosure receipts and their inclusion proofs.
	Ledger ledger.Reader
	// Logger receives rejections (Debug) and failures (Error). Nil discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil, c.Authenticate == nil, c.CheckCSRF == nil, c.Consents == nil,
		c.Vault == nil, c.Export == nil, c.Ledger == nil:
		return fmt.Errorf("customerapi: %w: Store, Authenticate, CheckCSRF, Consents, Vault, Export and Ledger are required", broker.ErrInvalid)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// api holds the handlers.
type api struct {
	cfg Config
	log *slog.Logger
}

// New returns the API's handler. Its routes are relative: mount it at
// /v1/me (router.Mount("/v1/me", h)).
func New(cfg Config) (http.Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &api{cfg: cfg, log: cfg.Logger}
	r := chi.NewRouter()
	r.Use(noSniff, a.authenticate, a.checkCSRF)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusNotFound, Type: httpapi.ProblemType + "not-found", Detail: "no such endpoint"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusMethodNotAllowed, Type: httpapi.ProblemType + "method-not-allowed"})
	})
	r.Get("/", a.profile)
	r.Get("/disclosures", a.disclosures)
	r.Get("/consents", a.consents)
	r.Get("/consents/{id}", a.consent)
	r.Post("/consents/{id}/revoke", a.revoke)
	r.Get("/vault", a.vault)
	r.Put("/vault/{category}", a.putRecord)
	r.Post("/vault/import", a.importVault)
	r.Get("/terms", a.terms)
	r.Put("/terms", a.saveTerms)
	r.Get("/export", a.export)
	return r, nil
}

type ctxKey struct{}

// customer returns the authenticated customer of the request.
func customer(ctx context.Context) broker.Customer {
	c, _ := ctx.Value(ctxKey{}).(broker.Customer)
	return c
}

func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// authenticate admits requests with a valid session of a customer who
// still exists and was not forgotten.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := a.cfg.Authenticate(r)
		var c broker.Customer
		if ok {
			err := a.cfg.Store.View(r.Context(), func(tx store.Tx) (err error) {
				c, err = tx.GetCustomer(r.Context(), id)
				return err
			})
			switch {
			case errors.Is(err, broker.ErrNotFound):
				ok = false
			case err != nil:
				httpapi.WriteError(w, r, a.log, err)
				return
			case c.Forgotten():
				ok = false
			}
		}
		if !ok {
			a.log.LogAttrs(r.Context(), slog.LevelDebug, "customer api: no session", slog.String("request_id", middleware.GetReqID(r.Context())))
			httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusUnauthorized, Type: httpapi.ProblemType + "unauthenticated",
				Title: "Authentication required", Detail: "sign in to Steward first"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// checkCSRF refuses state-changing requests that fail Config.CheckCSRF.
func (a *api) checkCSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !a.cfg.CheckCSRF(r) {
				a.log.LogAttrs(r.Context(), slog.LevelDebug, "customer api: csrf check failed", slog.String("request_id", middleware.GetReqID(r.Context())))
				httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusForbidden, Type: httpapi.ProblemType + "csrf",
					Title: "Forbidden", Detail: "state-changing requests need Steward's Origin and the X-CSRF-Token header"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// list is a page of a listing.
type list[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func newList[T any](items []T, p store.Page, last func(T) string) list[T] {
	l := list[T]{Items: items}
	if l.Items == nil {
		l.Items = []T{}
	}
	if len(items) == p.N() {
		l.Next = last(items[len(items)-1])
	}
	return l
}

// Profile is the customer as they see themselves.
type Profile struct {
	broker.Customer
	// CSRFToken is sent back in X-CSRF-Token on state-changing requests.
	CSRFToken string `json:"csrf_token,omitempty"`
}

func (a *api) profile(w http.ResponseWriter, r *http.Request) {
	p := Profile{Customer: customer(r.Context())}
	if a.cfg.CSRFToken != nil {
		p.CSRFToken = a.cfg.CSRFToken(r)
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}

// FirmRef names a firm.
type FirmRef struct {
	ID   broker.FirmID `json:"id"`
	Name string        `json:"name"`
}

// firms caches firm names within one request.
type firms map[broker.FirmID]FirmRef

func (f firms) get(ctx context.Context, tx store.Tx, id broker.FirmID) (FirmRef, error) {
	if ref, ok := f[id]; ok {
		return ref, nil
	}
	firm, err := tx.GetFirm(ctx, id)
	if err != nil {
		return FirmRef{}, err
	}
	f[id] = FirmRef{ID: firm.ID, Name: firm.LegalName}
	return f[id], nil
}

// Disclosure is one disclosure of the customer's data, with the receipt
// that proves its ledger entry is in the public ledger.
type Disclosure struct {
	ID         broker.DisclosureID `json:"id"`
	Firm       FirmRef             `json:"firm"`
	ConsentID  broker.ConsentID    `json:"consent_id"`
	Purpose    string              `json:"purpose"`
	Categories []string            `json:"categories"`
	Fields     map[string][]string `json:"fields,omitempty"`
	At         time.Time           `json:"at"`
	// Commitment is the ledger entry's commitment to the data disclosed;
	// Salt opens it: broker.Commit(Salt, data) == Commitment.
	Commitment string `json:"commitment,omitempty"`
	Salt       []byte `json:"salt,omitempty"`
	// Receipt is set once the entry is sequenced; it carries a checkpoint
	// and an inclusion proof once the entry is integrated.
	Receipt *broker.Receipt `json:"receipt,omitempty"`
	// Entry is the ledger entry's canonical bytes (base64), exactly as logged, so
	// the receipt can be checked with ledger.VerifyReceipt and the log key.
	Entry []byte `json:"entry,omitempty"`
	// ReceiptStatus is "integrated", "sequenced" or "pending".
	ReceiptStatus string `json:"receipt_status"`

	leaf string // Disclosure.ReceiptID: the base64 leaf hash of the entry
}

func (a *api) disclosures(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	p, err := httpapi.PageParams(r)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	var out []Disclosure
	err = a.cfg.Store.View(ctx, func(tx store.Tx) error {
		ds, err := tx.ListDisclosures(ctx, me.ID, p)
		if err != nil {
			return err
		}
		fs, purposes := firms{}, map[broker.ConsentID]string{}
		for _, d := range ds {
			if d.CustomerID != me.ID {
				continue // never another customer's, whatever the store did
			}
			f, err := fs.get(ctx, tx, d.FirmID)
			if err != nil {
				return err
			}
			purpose := d.Purpose
			if purpose == "" { // recorded before disclosures kept their purpose
				if purpose, err = consentPurpose(ctx, tx, purposes, d.ConsentID); err != nil {
					return err
				}
			}
			out = append(out, Disclosure{ID: d.ID, Firm: f, ConsentID: d.ConsentID, Purpose: purpose, Categories: d.Categories,
				Fields: d.Fields, At: d.At.UTC(), Commitment: d.Commitment, Salt: d.Salt, leaf: d.ReceiptID})
		}
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	// Receipts are read from the ledger after the transaction, one each.
	for i := range out {
		if err := a.receipt(ctx, &out[i]); err != nil {
			httpapi.WriteError(w, r, a.log, err)
			return
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, newList(out, p, func(d Disclosure) string { return string(d.ID) }))
}

// consentPurpose returns the purpose of a consent, cached in seen.
func consentPurpose(ctx context.Context, tx store.Tx, seen map[broker.ConsentID]string, id broker.ConsentID) (string, error) {
	if p, ok := seen[id]; ok {
		return p, nil
	}
	c, err := tx.GetConsent(ctx, id)
	if err != nil {
		return "", err
	}
	seen[id] = c.Granted.Purpose
	if seen[id] == "" {
		seen[id] = c.Requested.Purpose
	}
	return seen[id], nil
}

// receipt fills d's receipt from its leaf hash.
func (a *api) receipt(ctx context.Context, d *Disclosure) error {
	d.ReceiptStatus = "pending"
	b, err := base64.StdEncoding.Strict().DecodeString(d.leaf)
	if err != nil || len(b) != 32 {
		// Not a leaf hash: a disclosure recorded before receipts existed.
		return nil
	}
	rc, err := ledger.NewReceipt(ctx, a.cfg.Ledger, [32]byte(b))
	if errors.Is(err, broker.ErrNotFound) {
		return nil // staged, not yet sequenced
	}
	if err != nil {
		return err
	}
	leaves, err := a.cfg.Ledger.ReadLeaves(ctx, rc.Index, 1)
	if err != nil {
		return err
	}
	d.Receipt, d.Entry, d.ReceiptStatus = &rc, leaves[0], "sequenced"
	if rc.Integrated() {
		d.ReceiptStatus = "integrated"
	}
	return nil
}
