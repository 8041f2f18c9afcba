package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// TestDisclosureSeqBackfill: migration 0012 numbers the disclosures
// already stored in time order, per consent.
func TestDisclosureSeqBackfill(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "steward.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.migrateTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	storetest.DisclosureSeqBackfill(t, s, func(d broker.Disclosure) error {
		_, err := s.writer.ExecContext(ctx, `INSERT INTO disclosures (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id)
VALUES (?, ?, ?, ?, '["Contact"]', '{}', ?, 'r')`, string(d.ID), string(d.ConsentID), string(d.FirmID), string(d.CustomerID), dialect.Time(d.At))
		return err
	}, func() ([]int, error) { return s.Migrate(ctx) })
}
