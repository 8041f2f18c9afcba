package dataapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/vault"
)

// ConsentView is a consent as its firm sees it: the customer only by
// pseudonym, and what the firm may still fetch under it right now.
type ConsentView struct {
	ID broker.ConsentID `json:"id"`
	// Customer is the firm's pseudonym for the customer; empty, with
	// CustomerErased set, once the customer was forgotten.
	Customer       broker.Pseudonym    `json:"customer,omitempty"`
	CustomerErased bool                `json:"customer_erased,omitempty"`
	ClientID       broker.ClientID     `json:"client_id,omitempty"`
	State          broker.ConsentState `json:"state"`
	Requested      broker.Scope        `json:"requested"`
	Granted        broker.Scope        `json:"granted"`
	RequestedAt    time.Time           `json:"requested_at"`
	DecidedAt      time.Time           `json:"decided_at,omitzero"`
	ExpiresAt      time.Time           `json:"expires_at,omitzero"`
	EndedAt        time.Time           `json:"ended_at,omitzero"`
	// MayFetch is set on a single consent's view (not in listings).
	MayFetch *MayFetch `json:"may_fetch,omitempty"`
	// Deletion is the firm's deletion attestation, once made.
	Deletion *broker.DeletionAttestation `json:"deletion,omitempty"`
}

// MayFetch says what a fetch of the whole granted scope would get now.
// It is the access decision's answer, asked without disclosing anything;
// the next real fetch is decided afresh.
type MayFetch struct {
	Allowed    bool                `json:"allowed"`
	Categories []string            `json:"categories"`
	Fields     map[string][]string `json:"fields,omitempty"`
	Reasons    []broker.Reason     `json:"reasons"`
	// Used counts disclosures in the current frequency window, of Limit.
	Used   int             `json:"used,omitempty"`
	Limit  int             `json:"limit,omitempty"`
	Window broker.Duration `json:"window,omitzero"`
}

// pseudonym is the firm's pseudonym for the consent's customer, or ""
// when the customer was forgotten (the mapping is destroyed then, and a
// new one is never made for them).
func pseudonym(ctx context.Context, tx store.Tx, c broker.Consent) (broker.Pseudonym, error) {
	psn, err := tx.LookupPseudonym(ctx, c.CustomerID, c.FirmID)
	if errors.Is(err, broker.ErrNotFound) {
		return "", nil
	}
	return psn, err
}

// view is c as its firm sees it; psn is the customer's pseudonym when the
// caller has read it already ("": look it up).
func (a *API) view(ctx context.Context, tx store.Tx, c broker.Consent, psn broker.Pseudonym) (ConsentView, error) {
	if psn == "" {
		var err error
		if psn, err = pseudonym(ctx, tx, c); err != nil {
			return ConsentView{}, err
		}
	}
	v := ConsentView{ID: c.ID, Customer: psn, CustomerErased: psn == "", ClientID: c.ClientID, State: c.State, Requested: c.Requested, Granted: c.Granted,
		RequestedAt: c.RequestedAt, DecidedAt: c.DecidedAt, ExpiresAt: c.ExpiresAt, EndedAt: c.EndedAt}
	if del, err := tx.GetDeletionAttestation(ctx, c.ID); err == nil {
		v.Deletion = &del
	} else if !errors.Is(err, broker.ErrNotFound) {
		return ConsentView{}, err
	}
	return v, nil
}

// consent serves GET /v1/consents/{id}.
func (a *API) consent(w http.ResponseWriter, r *http.Request, tok Token) {
	ctx := r.Context()
	var v ConsentView
	err := a.update(ctx, tok, func(tx store.Tx) error {
		now := a.now()
		ac, err := a.accessContext(ctx, tx, r, tok, true, now)
		if err != nil {
			return err
		}
		c := ac.Consent
		if v, err = a.view(ctx, tx, c, ac.Pseudonym); err != nil {
			return err
		}
		v.MayFetch = &MayFetch{Categories: []string{}, Reasons: []broker.Reason{}}
		if c.State != broker.ConsentGranted {
			v.MayFetch.Reasons = []broker.Reason{{Source: broker.ReasonConsent, Text: fmt.Sprintf("The consent is %s.", c.State)}}
			return nil
		}
		in := ac.in
		q := fetchRequest{}.complete(c.Granted)
		in.Categories, in.Fields, in.Purpose = q.Categories, q.Fields, c.Granted.Purpose
		d, err := a.cfg.Policy.Access(ctx, in)
		if err != nil {
			a.cfg.Logger.ErrorContext(ctx, "access decision failed", "consent", string(c.ID), "error", err)
		}
		m := v.MayFetch
		m.Allowed, m.Reasons = d.Allowed(), d.Reasons
		if d.Allowed() {
			m.Categories, m.Fields = d.Scope.Categories, d.Scope.Fields
		}
		if f := c.Granted.Frequency; f.Max > 0 && !f.Per.IsZero() {
			m.Used, m.Limit, m.Window = in.Counts[f.Per], f.Max, f.Per
		}
		return nil
	})
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// ConsentList is a page of a firm's consents.
type ConsentList struct {
	Consents []ConsentView `json:"consents"`
	// Next is the value of "after" for the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

// listConsents serves GET /v1/firm/consents?state=granted&after=con_…&limit=100.
func (a *API) listConsents(w http.ResponseWriter, r *http.Request, tok Token) {
	if tok.ConsentID != "" || !hasScope(tok, ScopeFirm) {
		a.writeError(w, r, tok, fmt.Errorf("listing consents needs a firm token: %w", broker.ErrForbidden))
		return
	}
	f := store.ConsentFilter{FirmID: tok.FirmID}
	qv := r.URL.Query()
	for k := range qv {
		if k != "state" && k != "after" && k != "limit" {
			a.writeError(w, r, tok, fmt.Errorf("%w: unknown query parameter %q", broker.ErrInvalid, k))
			return
		}
	}
	if s := qv.Get("state"); s != "" {
		f.State = broker.ConsentState(s)
		if !slices.Contains(consentStates, f.State) {
			a.writeError(w, r, tok, fmt.Errorf("%w: unknown consent state %q", broker.ErrInvalid, s))
			return
		}
	}
	pg, err := httpapi.PageParams(r)
	if err == nil && pg.After != "" {
		_, err = broker.ParseConsentID(pg.After)
	}
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	f.Page = pg
	out := ConsentList{Consents: []ConsentView{}}
	err = a.update(r.Context(), tok, func(tx store.Tx) error {
		cs, err := tx.ListConsents(r.Context(), f)
		if err != nil {
			return err
		}
		for _, c := range cs {
			v, err := a.view(r.Context(), tx, c, "")
			if err != nil {
				return err
			}
			out.Consents = append(out.Consents, v)
		}
		if len(cs) == f.Page.N() {
			out.Next = string(cs[len(cs)-1].ID)
		}
		return nil
	})
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// DeletionRequest is the body of POST /v1/consents/{id}/deletion.
type DeletionRequest struct {
	// Categories deleted; empty means every category granted.
	Categories []string `json:"categories,omitempty"`
}

// Attested answers a deletion attestation.
type Attested struct {
	broker.DeletionAttestation
	Receipt *Pending `json:"receipt"`
}

// attestDeletion serves POST /v1/consents/{id}/deletion: after a consent
// ended, its firm confirms it deleted the data (deletion.attested).
func (a *API) attestDeletion(w http.ResponseWriter, r *http.Request, tok Token) {
	var req DeletionRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	var out Attested
	err := a.update(r.Context(), tok, func(tx store.Tx) error {
		ctx := r.Context()
		c, err := a.consentFor(ctx, tx, r, tok, true)
		if err != nil {
			return err
		}
		if c.State != broker.ConsentRevoked && c.State != broker.ConsentExpired {
			return fmt.Errorf("%w: consent %s is %s; deletion is attested once it is revoked or expired", broker.ErrTransition, c.ID, c.State)
		}
		cats := req.Categories
		if len(cats) == 0 {
			cats = c.Granted.Categories
		}
		cats = slices.Sorted(slices.Values(cats))
		cats = slices.Compact(cats)
		for _, cat := range cats {
			if !slices.Contains(c.Granted.Categories, cat) {
				return fmt.Errorf("%w: category %q was not granted under consent %s", broker.ErrInvalid, cat, c.ID)
			}
		}
		now := a.now()
		att := broker.DeletionAttestation{ConsentID: c.ID, FirmID: c.FirmID, Categories: cats, At: now}
		if err := tx.AttestDeletion(ctx, att); err != nil {
			return err
		}
		// A forgotten customer's entry names no pseudonym: the consent id
		// links it to the consent's earlier entries.
		psn, err := pseudonym(ctx, tx, c)
		if err != nil {
			return err
		}
		rc, err := a.stage(ctx, tx, broker.Entry{Type: broker.EntryDeletionAttested, Time: now, Firm: c.FirmID,
			Customer: psn, Consent: c.ID, Categories: cats})
		if err != nil {
			return err
		}
		out = Attested{DeletionAttestation: att, Receipt: rc}
		return nil
	})
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	a.cfg.Kick()
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

// ReturnRequest is the body of POST /v1/consents/{id}/returned-data: one
// vault record the firm gives back to the customer.
type ReturnRequest struct {
	Category string          `json:"category"`
	Value    json.RawMessage `json:"value"`
}

// Returned answers a data return.
type Returned struct {
	Category string `json:"category"`
	// Value is the value as stored: Commit(Salt, Value) is Commitment.
	Value      json.RawMessage `json:"value"`
	At         time.Time       `json:"returned_at"`
	Commitment string          `json:"commitment"`
	Salt       []byte          `json:"salt"`
	Receipt    *Pending        `json:"receipt"`
}

// returnData serves POST /v1/consents/{id}/returned-data: under a live
// consent, the firm writes refined data back into the customer's vault
// (data.returned). It may write a category of the consent's granted scope
// that the customer holds no record of, or one this firm returned before;
// it never overwrites what the customer or another firm put there.
func (a *API) returnData(w http.ResponseWriter, r *http.Request, tok Token) {
	var req ReturnRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	if tok.ConsentID == "" {
		a.writeError(w, r, tok, fmt.Errorf("returning data needs the consent's token: %w", broker.ErrForbidden))
		return
	}
	var out Returned
	err := a.update(r.Context(), tok, func(tx store.Tx) error {
		ctx := r.Context()
		c, err := a.consentFor(ctx, tx, r, tok, false)
		if err != nil {
			return err
		}
		now := a.now()
		if c.State != broker.ConsentGranted || !now.Before(c.ExpiresAt) {
			return fmt.Errorf("%w: consent %s is not live", broker.ErrTransition, c.ID)
		}
		f, err := tx.GetFirm(ctx, c.FirmID)
		if err != nil {
			return err
		}
		if f.Status != broker.FirmApproved {
			return fmt.Errorf("firm %s is %s: %w", f.ID, f.Status, broker.ErrForbidden)
		}
		if !slices.Contains(c.Granted.Categories, req.Category) {
			return fmt.Errorf("%w: category %q is not granted under consent %s", broker.ErrInvalid, req.Category, c.ID)
		}
		// The commitment covers the value as the vault stores it (checked
		// and normalised by its category's schema), which the answer
		// returns, so the firm can open it.
		value, err := vault.CheckRecord(req.Category, req.Value)
		if err != nil {
			return fmt.Errorf("%w: %w", broker.ErrInvalid, err)
		}
		rec := broker.Record{CustomerID: c.CustomerID, Category: req.Category, Value: value, Source: string(c.FirmID), UpdatedAt: now}
		if err := rec.Validate(); err != nil {
			return err
		}
		old, err := a.cfg.Vault.RecordsTx(ctx, tx, c.CustomerID, req.Category)
		if err != nil {
			return err
		}
		if len(old) > 0 && old[0].Source != string(c.FirmID) {
			return fmt.Errorf("%w: the customer's %s record was not written by this firm", broker.ErrConflict, req.Category)
		}
		if err := a.cfg.Vault.PutTx(ctx, tx, rec); err != nil {
			return err
		}
		psn, err := tx.Pseudonym(ctx, c.CustomerID, c.FirmID)
		if err != nil {
			return err
		}
		salt := broker.NewSalt()
		commit := broker.Commit(salt, value)
		rc, err := a.stage(ctx, tx, broker.Entry{Type: broker.EntryDataReturned, Time: now, Firm: c.FirmID, Customer: psn,
			Consent: c.ID, Categories: []string{req.Category}, Commitment: commit})
		if err != nil {
			return err
		}
		out = Returned{Category: req.Category, Value: value, At: now, Commitment: commit, Salt: salt, Receipt: rc}
		return nil
	})
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	a.cfg.Kick()
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

var consentStates = []broker.ConsentState{broker.ConsentRequested, broker.ConsentGranted, broker.ConsentDenied,
	broker.ConsentRevoked, broker.ConsentExpired}
