package sqlite

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// TestDisclosureSeqBackfill: migration 0012 numbers the disclosures
// already stored in time order, per consent, so the frequency counts of
// a database migrated with disclosures in it are right, and the next
// disclosure follows on.
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
	c, f := storetest.Fixture(t, s)
	cons := []broker.Consent{storetest.NewRequest(t, s, c.ID, f.ID), storetest.NewRequest(t, s, c.ID, f.ID)}
	now := storetest.Now
	// Stored out of time order, interleaved between two consents, in the
	// table as migration 0011 left it (no seq).
	for i, h := range []int{2, 0, 1, 5} {
		_, err := s.writer.ExecContext(ctx, `INSERT INTO disclosures (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id)
VALUES (?, ?, ?, ?, '["Contact"]', '{}', ?, 'r')`, string(broker.NewDisclosureID()), string(cons[i%2].ID), string(f.ID), string(c.ID),
			dialect.Time(now.Add(time.Duration(h)*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := s.Migrate(ctx); err != nil || !slices.Contains(applied, 12) {
		t.Fatalf("Migrate applied %v, %v; want 12 among them", applied, err)
	}
	since := []time.Time{now.Add(-time.Hour), now.Add(90 * time.Minute), now.Add(3 * time.Hour)}
	counts := func(con broker.ConsentID) (n []int) {
		t.Helper()
		if err := s.Update(ctx, func(tx store.Tx) (err error) {
			n, err = tx.CountDisclosuresSince(ctx, con, since)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// cons[0]: at 2h and 1h; cons[1]: at 0h and 5h.
	if got := counts(cons[0].ID); !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("counts of the first consent after the migration = %v, want [2 1 0]", got)
	}
	if got := counts(cons[1].ID); !slices.Equal(got, []int{2, 1, 1}) {
		t.Errorf("counts of the second consent after the migration = %v, want [2 1 1]", got)
	}
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: cons[1].ID, FirmID: f.ID,
			CustomerID: c.ID, Categories: []string{"Contact"}, At: now.Add(6 * time.Hour), ReceiptID: "r"})
	}); err != nil {
		t.Fatal(err)
	}
	if got := counts(cons[1].ID); !slices.Equal(got, []int{3, 2, 2}) {
		t.Errorf("counts of the second consent after one more = %v, want [3 2 2]", got)
	}
}
