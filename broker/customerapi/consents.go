package customerapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
)

// Consent is one of the customer's consents: its state, the scope
// requested and the scope granted, and the firm it is with.
type Consent struct {
	broker.Consent
	Firm FirmRef `json:"firm"`
}

// ConsentDetail is a consent with its history and the decisions, with
// their reasons, that shaped it.
type ConsentDetail struct {
	Consent
	History   []broker.ConsentEvent `json:"history"`
	Decisions []Decision            `json:"decisions"`
	// Deletion is the firm's attestation that it deleted what it received
	// under the consent, once the consent ended and the firm said so.
	Deletion *broker.DeletionAttestation `json:"deletion,omitempty"`
}

// Decision is a policy decision about a consent, newest first.
type Decision struct {
	// Hash is the content hash of the stored decision record, as the
	// ledger entries cite it.
	Hash       string          `json:"hash"`
	Effect     broker.Effect   `json:"effect"`
	Scope      broker.Scope    `json:"scope"`
	Reasons    []broker.Reason `json:"reasons"`
	TermsHash  string          `json:"terms_hash,omitempty"`
	PolicyHash string          `json:"policy_hash,omitempty"`
	DecidedAt  time.Time       `json:"decided_at"`
}

// maxDecisions bounds the decisions shown with one consent.
const maxDecisions = 50

func (a *api) consents(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	p, err := httpapi.PageParams(r)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	state := broker.ConsentState(r.URL.Query().Get("state"))
	switch state {
	case "", broker.ConsentRequested, broker.ConsentGranted, broker.ConsentDenied, broker.ConsentRevoked, broker.ConsentExpired:
	default:
		httpapi.WriteError(w, r, a.log, fmt.Errorf("%w: state must be requested, granted, denied, revoked or expired", broker.ErrInvalid))
		return
	}
	var out []Consent
	err = a.cfg.Store.View(ctx, func(tx store.Tx) error {
		cs, err := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: me.ID, State: state, Page: p})
		if err != nil {
			return err
		}
		fs := firms{}
		for _, c := range cs {
			if c.CustomerID != me.ID {
				continue
			}
			f, err := fs.get(ctx, tx, c.FirmID)
			if err != nil {
				return err
			}
			out = append(out, Consent{Consent: c, Firm: f})
		}
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, newList(out, p, func(c Consent) string { return string(c.ID) }))
}

// ownConsent returns the customer's consent named by the path, or
// broker.ErrNotFound, the same for a malformed id, an unknown one and
// another customer's.
func ownConsent(ctx context.Context, tx store.Tx, me broker.CustomerID, raw string) (broker.Consent, error) {
	id, err := broker.ParseConsentID(raw)
	if err != nil {
		return broker.Consent{}, fmt.Errorf("consent id: %w", broker.ErrNotFound)
	}
	c, err := tx.GetConsent(ctx, id)
	if err != nil {
		return broker.Consent{}, err
	}
	if c.CustomerID != me {
		return broker.Consent{}, fmt.Errorf("consent %s of another customer: %w", id, broker.ErrNotFound)
	}
	return c, nil
}

func (a *api) consent(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	var out ConsentDetail
	err := a.cfg.Store.View(ctx, func(tx store.Tx) error {
		c, err := ownConsent(ctx, tx, me.ID, chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		f, err := firms{}.get(ctx, tx, c.FirmID)
		if err != nil {
			return err
		}
		out.Consent = Consent{Consent: c, Firm: f}
		if out.History, err = tx.ConsentHistory(ctx, c.ID); err != nil {
			return err
		}
		recs, err := tx.ListDecisions(ctx, store.DecisionFilter{ConsentID: c.ID, Limit: maxDecisions})
		if err != nil {
			return err
		}
		switch da, err := tx.GetDeletionAttestation(ctx, c.ID); {
		case err == nil:
			out.Deletion = &da
		case !errors.Is(err, broker.ErrNotFound):
			return err
		}
		out.Decisions = []Decision{}
		for _, rec := range recs {
			if rec.CustomerID != me.ID {
				continue
			}
			h, err := rec.Hash()
			if err != nil {
				return err
			}
			d := rec.Decision
			out.Decisions = append(out.Decisions, Decision{Hash: h, Effect: d.Effect, Scope: d.Scope, Reasons: d.Reasons,
				TermsHash: d.TermsHash, PolicyHash: d.PolicyHash, DecidedAt: d.DecidedAt})
		}
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	if out.History == nil {
		out.History = []broker.ConsentEvent{}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// RevokeRequest is the optional body of a revocation.
type RevokeRequest struct {
	// Reason is the customer's own words, kept in the consent's history.
	Reason string `json:"reason,omitempty"`
}

// DefaultRevokeReason is recorded when the customer gives none.
const DefaultRevokeReason = "revoked by the customer"

// maxReason bounds a revocation reason, in characters.
const maxReason = 500

func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	var req RevokeRequest
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := httpapi.DecodeJSON(r, &req); err != nil {
			httpapi.WriteError(w, r, a.log, err)
			return
		}
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if utf8.RuneCountInString(req.Reason) > maxReason || strings.ContainsFunc(req.Reason, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		httpapi.WriteError(w, r, a.log, fmt.Errorf("%w: reason must be at most %d characters without control characters", broker.ErrInvalid, maxReason))
		return
	}
	if req.Reason == "" {
		req.Reason = DefaultRevokeReason
	}
	// Check ownership first so a malformed id is a 404 like any other.
	if err := a.cfg.Store.View(ctx, func(tx store.Tx) error {
		_, err := ownConsent(ctx, tx, me.ID, chi.URLParam(r, "id"))
		return err
	}); err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	// The service checks ownership again under the row lock, ends the
	// consent, stages its ledger entry and queues the firm's webhook, in
	// one transaction.
	c, err := a.cfg.Consents.Revoke(ctx, me.ID, broker.ConsentID(chi.URLParam(r, "id")), req.Reason)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	var f FirmRef
	if err := a.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		f, err = firms{}.get(ctx, tx, c.FirmID)
		return err
	}); err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, Consent{Consent: c, Firm: f})
}
