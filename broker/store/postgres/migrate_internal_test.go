package postgres

import (
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// TestDisclosureSeqBackfill: migration 0012 numbers the disclosures
// already stored in time order, per consent.
func TestDisclosureSeqBackfill(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Config{URL: pgtest.URL(t), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.migrateTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	storetest.DisclosureSeqBackfill(t, s, func(d broker.Disclosure) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO disclosures (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id)
VALUES ($1, $2, $3, $4, '["Contact"]', '{}', $5, 'r')`, string(d.ID), string(d.ConsentID), string(d.FirmID), string(d.CustomerID), d.At)
		return err
	}, func() ([]int, error) { return s.Migrate(ctx) })
}
