package consent

import (
	"context"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// ApproveIn is Approve inside the caller's read-write transaction tx, for
// answers that must commit with other writes (a decoupled request's state
// and the webhook that tells the firm).
func (s *Service) ApproveIn(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID, scope *broker.Scope) (broker.Consent, error) {
	return s.transitionIn(ctx, tx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		sc := c.Requested
		if scope != nil {
			sc = *scope
		}
		return c.Grant(sc, now, "customer:"+string(customer))
	})
}

// LapseIn denies, inside tx, a requested consent whose decoupled request
// expired before the customer answered, so that no consent stays
// requested for ever. The ledger records it as denied by the system.
func (s *Service) LapseIn(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID) (broker.Consent, error) {
	return s.transitionIn(ctx, tx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		return c.Deny(now, "system", "the customer did not answer before the request expired")
	})
}

// RefuseIn is Refuse inside the caller's read-write transaction tx.
func (s *Service) RefuseIn(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID, reason string) (broker.Consent, error) {
	return s.transitionIn(ctx, tx, customer, id, func(c broker.Consent, now time.Time) (broker.Consent, broker.ConsentEvent, error) {
		return c.Deny(now, "customer:"+string(customer), reason)
	})
}
