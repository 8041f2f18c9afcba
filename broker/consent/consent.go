// Package consent holds the consent use cases: saving a customer's terms,
// deciding a firm's request under them, the customer's answer, revocation
// and expiry. Each runs in one store transaction, so a consent, its history
// row, the decision record that explains it and its ledger entry are
// written together or not at all.
//
// The policy engine is reached through DecideConsent, a func the caller
// supplies (cmd wires policy.Engine.Consent), so this package imports
// neither OPA nor any concrete store.
package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/terms"
)

// DecideConsent asks the policy layer about a firm's request. terms is the
// customer's current version, or the zero value when they have none.
type DecideConsent func(ctx context.Context, c broker.Customer, f broker.Firm, terms broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error)

// Service runs the consent use cases.
type Service struct {
	store  store.Store
	decide DecideConsent
	now    func() time.Time
}

// New returns a Service. now may be nil for time.Now.
func New(s store.Store, decide DecideConsent, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: s, decide: decide, now: now}
}

// SaveTerms validates doc (schema, taxonomy, rules that can never apply)
// and stores its canonical form as the customer's next terms version.
// An invalid document is refused with broker.ErrInvalid and a message
// naming the rule; nothing is stored.
func (s *Service) SaveTerms(ctx context.Context, customer broker.CustomerID, doc []byte) (broker.TermsVersion, error) {
	t, err := terms.Parse(doc)
	if err != nil {
		return broker.TermsVersion{}, err
	}
	canon, err := terms.Canonical(t)
	if err != nil {
		return broker.TermsVersion{}, err
	}
	var tv broker.TermsVersion
	err = s.store.Update(ctx, func(tx store.Tx) (err error) {
		tv, err = tx.AddTerms(ctx, customer, canon, s.now())
		return err
	})
	return tv, err
}

// Outcome is the result of a firm's request: the consent as stored, the
// decision that shaped it, and the hash of its stored decision record.
type Outcome struct {
	Consent      broker.Consent
	Decision     broker.Decision
	DecisionHash string
}

// Request records a firm's request for a customer's data and decides it
// at once under the customer's current terms and the regulatory rules:
//
//   - allow: the consent is granted with the scope the policy allows
//     (never wider than asked);
//   - deny: the consent is denied, the reasons recorded;
//   - ask: the consent stays requested for the customer to answer.
//
// The firm must be approved (broker.ErrForbidden otherwise).
func (s *Service) Request(ctx context.Context, customer broker.CustomerID, firm broker.FirmID, client broker.ClientID, req broker.DataRequest) (Outcome, error) {
	var out Outcome
	err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		out, err = s.RequestIn(ctx, tx, customer, firm, client, req)
		return err
	})
	if err != nil {
		return Outcome{}, err
	}
	return out, nil
}

// RequestIn is Request inside the caller's read-write transaction tx, so
// that what the caller writes besides commits with the consent or not at
// all.
func (s *Service) RequestIn(ctx context.Context, tx store.Tx, customer broker.CustomerID, firm broker.FirmID, client broker.ClientID, req broker.DataRequest) (Outcome, error) {
	var out Outcome
	err := func() error {
		now := s.now().UTC()
		c, err := tx.GetCustomer(ctx, customer)
		if err != nil {
			return err
		}
		if c.Forgotten() {
			return fmt.Errorf("customer %s was forgotten: %w", customer, broker.ErrNotFound)
		}
		f, err := tx.GetFirm(ctx, firm)
		if err != nil {
			return err
		}
		if f.Status != broker.FirmApproved {
			return fmt.Errorf("%w: firm %s is %s", broker.ErrForbidden, f.ID, f.Status)
		}
		con, ev, err := broker.NewConsentRequest(c.ID, f.ID, client, req.Scope, now, "firm:"+string(f.ID))
		if err != nil {
			return err
		}
		tv, err := tx.LatestTerms(ctx, c.ID)
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		req.Scope = con.Requested
		d, err := s.decide(ctx, c, f, tv, req, now)
		if err != nil {
			return err
		}
		if err := tx.CreateConsent(ctx, con, ev); err != nil {
			return err
		}
		hash, err := tx.InsertDecision(ctx, broker.NewDecisionRecord(c.ID, f.ID, con.ID, req, d))
		if err != nil {
			return err
		}
		if err := record(ctx, tx, con, ev, hash, d.TermsHash); err != nil {
			return err
		}
		switch d.Effect {
		case broker.EffectAllow:
			con, ev, err = con.Grant(d.Scope, now, "terms:"+d.TermsHash)
		case broker.EffectDeny:
			con, ev, err = con.Deny(now, "policy", reasonText(d))
		case broker.EffectAsk:
			out = Outcome{Consent: con, Decision: d, DecisionHash: hash}
			return nil
		default:
			return fmt.Errorf("decision effect %q: %w", d.Effect, broker.ErrInvalid)
		}
		if err != nil {
			return err
		}
		if err := tx.UpdateConsent(ctx, con, ev); err != nil {
			return err
		}
		if err := record(ctx, tx, con, ev, hash, d.TermsHash); err != nil {
			return err
		}
		out = Outcome{Consent: con, Decision: d, DecisionHash: hash}
		return nil
	}()
	if err != nil {
		return Outcome{}, fmt.Errorf("consent request from %s to %s: %w", firm, customer, err)
	}
	return out, nil
}

// record stages the ledger entry for a consent event in tx, so the entry
// commits with the state change or not at all (DESIGN.md invariant 2). The
// customer appears only as the firm's pairwise pseudonym.
func record(ctx context.Context, tx store.Tx, c broker.Consent, ev broker.ConsentEvent, decisionHash, termsHash string) error {
	psn, err := tx.Pseudonym(ctx, c.CustomerID, c.FirmID)
	if err != nil {
		return err
	}
	e := broker.Entry{Time: ev.At, Firm: c.FirmID, Customer: psn, Consent: c.ID, DecisionHash: decisionHash, TermsHash: termsHash}
	switch {
	case ev.To == broker.ConsentRequested:
		e.Type, e.Categories, e.Purpose = broker.EntryConsentRequested, c.Requested.Categories, c.Requested.Purpose
	case ev.To == broker.ConsentGranted && ev.From == broker.ConsentGranted:
		e.Type, e.Categories, e.Purpose = broker.EntryConsentNarrowed, c.Granted.Categories, c.Granted.Purpose
	case ev.To == broker.ConsentGranted:
		e.Type, e.Categories, e.Purpose = broker.EntryConsentGranted, c.Granted.Categories, c.Granted.Purpose
	case ev.To == broker.ConsentDenied:
		e.Type = broker.EntryConsentDenied
	case ev.To == broker.ConsentRevoked:
		e.Type, e.DecisionHash, e.TermsHash = broker.EntryConsentRevoked, "", ""
	case ev.To == broker.ConsentExpired:
		e.Type, e.DecisionHash, e.TermsHash = broker.EntryConsentExpired, "", ""
	default:
		return fmt.Errorf("no ledger entry for %s → %s: %w", ev.From, ev.To, broker.ErrInvalid)
	}
	b, err := e.CanonicalBytes()
	if err != nil {
		return fmt.Errorf("ledger entry for consent %s: %w", c.ID, err)
	}
	return tx.StageLedgerEntry(ctx, b)
}

// ConsentEnded is the data of the consent.revoked and consent.expired
// webhooks: the firm must stop using, and delete, what it received under
// the consent, and confirm the deletion (recorded as deletion.attested).
type ConsentEnded struct {
	ConsentID  broker.ConsentID `json:"consent_id"`
	Customer   broker.Pseudonym `json:"customer"`
	State      string           `json:"state"`
	Categories []string         `json:"categories"`
	Purpose    string           `json:"purpose"`
	EndedAt    time.Time        `json:"ended_at"`
	Action     string           `json:"action"`
}

// end does, in the transaction that ends a consent, what every end
// requires: the codes and tokens issued under it stop working at once
// (DESIGN.md invariant 1), and the firm is told by webhook.
func end(ctx context.Context, tx store.Tx, c broker.Consent) error {
	if _, err := tx.RevokeConsentTokens(ctx, c.ID); err != nil {
		return err
	}
	return announceEnd(ctx, tx, c)
}

// announceEnd enqueues the webhook telling the firm a consent ended, in
// the same transaction as the change, if the firm takes webhooks.
func announceEnd(ctx context.Context, tx store.Tx, c broker.Consent) error {
	f, err := tx.GetFirm(ctx, c.FirmID)
	if err != nil || f.WebhookURL == "" {
		return err
	}
	psn, err := tx.Pseudonym(ctx, c.CustomerID, c.FirmID)
	if err != nil {
		return err
	}
	data, err := json.Marshal(ConsentEnded{ConsentID: c.ID, Customer: psn, State: string(c.State), Categories: c.Granted.Categories,
		Purpose: c.Granted.Purpose, EndedAt: c.EndedAt, Action: "delete_data"})
	if err != nil {
		return err
	}
	return tx.EnqueueWebhook(ctx, broker.WebhookDelivery{ID: broker.NewWebhookID(), FirmID: f.ID, URL: f.WebhookURL,
		EventType: "consent." + string(c.State), Payload: data, State: broker.WebhookPending, NextAttemptAt: c.EndedAt, CreatedAt: c.EndedAt})
}

// latestDecision returns the hash and terms hash of the newest decision
// record about a consent, for entries that must cite it.
func latestDecision(ctx context.Context, tx store.Tx, id broker.ConsentID) (hash, termsHash string, err error) {
	recs, err := tx.ListDecisions(ctx, store.DecisionFilter{ConsentID: id, Limit: 1})
	if err != nil || len(recs) == 0 {
		return "", "", err
	}
	h, err := recs[0].Hash()
	return h, recs[0].Decision.TermsHash, err
}

func reasonText(d broker.Decision) string {
	if len(d.Reasons) == 0 {
		return string(d.Effect)
	}
	return d.Reasons[0].Text
}

// load returns the consent for update, refusing (as not found, so as not
// to reveal it exists) one that belongs to another customer.
func load(ctx context.Context, tx store.Tx, id broker.ConsentID, customer broker.CustomerID) (broker.Consent, error) {
	c, err := tx.GetConsent(ctx, id)
	if err != nil {
		return c, err
	}
	if c.CustomerID != customer {
		return broker.Consent{}, fmt.Errorf("consent %s: %w", id, broker.ErrNotFound)
	}
	return c, nil
}

// Approve grants a requested consent the customer answered yes to. scope
// may narrow the request (fewer categories, shorter, less often); nil
// grants what was asked.
func (s *Service) Approve(ctx context.Context, customer broker.CustomerID, id broker.ConsentID, scope *broker.Scope) (broker.Consent, error) {
	return s.transition(ctx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		sc := c.Requested
		if scope != nil {
			sc = *scope
		}
		return c.Grant(sc, now, "customer:"+string(customer))
	})
}

// Refuse denies a requested consent.
func (s *Service) Refuse(ctx context.Context, customer broker.CustomerID, id broker.ConsentID, reason string) (broker.Consent, error) {
	return s.transition(ctx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		return c.Deny(now, "customer:"+string(customer), reason)
	})
}

// Narrow replaces a granted consent's scope with a narrower one.
func (s *Service) Narrow(ctx context.Context, customer broker.CustomerID, id broker.ConsentID, scope broker.Scope) (broker.Consent, error) {
	return s.transition(ctx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		return c.Narrow(scope, now, "customer:"+string(customer))
	})
}

// Revoke ends a granted consent at once.
func (s *Service) Revoke(ctx context.Context, customer broker.CustomerID, id broker.ConsentID, reason string) (broker.Consent, error) {
	return s.transition(ctx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		return c.Revoke(now, "customer:"+string(customer), reason)
	})
}

func (s *Service) transition(ctx context.Context, customer broker.CustomerID, id broker.ConsentID,
	move func(broker.Consent, time.Time) (broker.Consent, broker.ConsentEvent, error)) (broker.Consent, error) {
	var out broker.Consent
	err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		out, err = s.transitionIn(ctx, tx, customer, id, move)
		return err
	})
	if err != nil {
		return broker.Consent{}, err
	}
	return out, nil
}

func (s *Service) transitionIn(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID,
	move func(broker.Consent, time.Time) (broker.Consent, broker.ConsentEvent, error)) (broker.Consent, error) {
	var out broker.Consent
	err := func() error {
		c, err := load(ctx, tx, id, customer)
		if err != nil {
			return err
		}
		next, ev, err := move(c, s.now())
		if err != nil {
			return err
		}
		out = next
		if err := tx.UpdateConsent(ctx, next, ev); err != nil {
			return err
		}
		hash, terms, err := latestDecision(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := record(ctx, tx, next, ev, hash, terms); err != nil {
			return err
		}
		if next.State == broker.ConsentRevoked {
			return end(ctx, tx, next)
		}
		return nil
	}()
	if err != nil {
		return broker.Consent{}, fmt.Errorf("consent %s: %w", id, err)
	}
	return out, nil
}

// ExpireDue expires up to limit granted consents whose time is up and
// returns how many it expired. Safe to run on several replicas at once:
// each consent moves under its row lock and version check, and a consent
// another replica already expired is skipped.
func (s *Service) ExpireDue(ctx context.Context, limit int) (int, error) {
	now := s.now()
	var due []broker.Consent
	if err := s.store.View(ctx, func(tx store.Tx) (err error) {
		due, err = tx.ListConsents(ctx, store.ConsentFilter{ExpiringBy: now, Page: store.Page{Limit: limit}})
		return err
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		err := s.store.Update(ctx, func(tx store.Tx) error {
			c, err := tx.GetConsent(ctx, d.ID)
			if err != nil {
				return err
			}
			next, ev, err := c.Expire(now)
			if err != nil {
				return err
			}
			if err := tx.UpdateConsent(ctx, next, ev); err != nil {
				return err
			}
			if err := record(ctx, tx, next, ev, "", ""); err != nil {
				return err
			}
			return end(ctx, tx, next)
		})
		switch {
		case err == nil:
			n++
		case errors.Is(err, broker.ErrTransition), errors.Is(err, broker.ErrConflict):
			// Revoked or expired meanwhile, perhaps by another replica.
		default:
			return n, fmt.Errorf("expire consent %s: %w", d.ID, err)
		}
	}
	return n, nil
}
