package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/store"
)

// Forget erases a customer by crypto-shredding, in one transaction:
//
//   - it ends their open consents (consent.EndAll: granted ones revoked,
//     requested ones refused, each with its usual ledger entry);
//   - it deletes their data key, so every value sealed under it can no
//     longer be decrypted wherever a copy survives, and their records,
//     terms versions and pseudonym mappings;
//   - it replaces their handle with a tombstone and clears their name,
//     email and password.
//
// It stages nothing personal on the ledger: the ledger only ever names the
// customer by pairwise pseudonyms, and with the mappings gone nobody can
// link those to them. Consents, decision records and disclosures stay,
// naming only the anonymised row, so firms and regulators can still
// account for what happened.
//
// Forgetting a forgotten customer does nothing; an unknown one is
// broker.ErrNotFound.
func (s *Service) Forget(ctx context.Context, customer broker.CustomerID) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		c, err := tx.GetCustomer(ctx, customer)
		if err != nil {
			return err
		}
		if c.Forgotten() {
			return nil
		}
		if _, err := consent.EndAll(ctx, tx, customer, s.now(), consent.ErasureReason); err != nil {
			return err
		}
		return tx.ForgetCustomer(ctx, customer, broker.NewTombstone())
	})
	if err != nil {
		return fmt.Errorf("forget customer %s: %w", customer, err)
	}
	return nil
}

// Rewrap moves every data key wrapped by an older master key version to
// the current one, a page at a time, and returns how many it rewrapped.
// It is safe to run on several replicas at once and to resume after a
// failure: a key another replica moved meanwhile is skipped.
func (s *Service) Rewrap(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		var page []broker.CustomerKey
		err := s.store.Update(ctx, func(tx store.Tx) (err error) {
			page, err = tx.ListCustomerKeys(ctx, store.Page{After: after, Limit: store.MaxLimit})
			if err != nil {
				return err
			}
			for _, k := range page {
				if k.KeyVersion == s.version {
					continue
				}
				raw, err := s.unwrap(k)
				if err != nil {
					return err
				}
				next := s.wrap(k.CustomerID, raw)
				next.CreatedAt = k.CreatedAt
				switch err := tx.RewrapCustomerKey(ctx, next, k.KeyVersion); {
				case err == nil:
					n++
				case errors.Is(err, broker.ErrConflict):
				default:
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("rewrap data keys: %w", err)
		}
		if len(page) < store.MaxLimit {
			return n, nil
		}
		after = string(page[len(page)-1].CustomerID)
	}
}
