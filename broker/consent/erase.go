package consent

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// ErasureReason is the reason recorded on consents ended because the
// customer asked Steward to erase them.
const ErasureReason = "the customer asked Steward to erase their data"

// EndAll ends every open consent of a customer inside the caller's
// transaction, as erasing the customer requires: granted consents are
// revoked and requested ones refused, each with its history row, a
// decision record for a refusal, and its ledger entry (which, like every
// consent entry, names the customer only by the firm's pseudonym); the
// codes and tokens issued under each stop working in the same
// transaction. Final consents are left as they are. It returns how many
// consents it ended.
//
// Call it before the customer's pseudonyms are deleted: the entries it
// stages cite them.
func EndAll(ctx context.Context, tx store.Tx, customer broker.CustomerID, at time.Time, reason string) (int, error) {
	var open []broker.Consent
	p := store.Page{Limit: store.MaxLimit}
	for {
		page, err := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: customer, Page: p})
		if err != nil {
			return 0, err
		}
		for _, c := range page {
			if c.State == broker.ConsentGranted || c.State == broker.ConsentRequested {
				open = append(open, c)
			}
		}
		if len(page) < p.N() {
			break
		}
		p.After = string(page[len(page)-1].ID)
	}
	actor := "customer:" + string(customer)
	for _, listed := range open {
		c, err := tx.GetConsent(ctx, listed.ID) // locks it
		if err != nil {
			return 0, err
		}
		var (
			next broker.Consent
			ev   broker.ConsentEvent
			hash string
		)
		switch c.State {
		case broker.ConsentGranted:
			next, ev, err = c.Revoke(at, actor, reason)
		case broker.ConsentRequested:
			next, ev, err = c.Deny(at, actor, reason)
			if err == nil {
				d := broker.Decision{Kind: broker.DecisionConsent, Effect: broker.EffectDeny, DecidedAt: at.UTC(),
					Reasons: []broker.Reason{{Source: broker.ReasonConsent, Text: "Refused because " + reason + "."}}}
				hash, err = tx.InsertDecision(ctx, broker.NewDecisionRecord(c.CustomerID, c.FirmID, c.ID, broker.DataRequest{Scope: c.Requested}, d))
			}
		default:
			continue // ended meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("end consent %s: %w", c.ID, err)
		}
		if err := tx.UpdateConsent(ctx, next, ev); err != nil {
			return 0, fmt.Errorf("end consent %s: %w", c.ID, err)
		}
		if err := record(ctx, tx, next, ev, hash, ""); err != nil {
			return 0, fmt.Errorf("end consent %s: %w", c.ID, err)
		}
		if _, err := tx.RevokeConsentTokens(ctx, c.ID); err != nil {
			return 0, fmt.Errorf("end consent %s: %w", c.ID, err)
		}
	}
	return len(open), nil
}
