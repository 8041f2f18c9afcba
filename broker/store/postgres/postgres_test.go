package postgres_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

var _ store.Store = (*postgres.Store)(nil)

func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), postgres.Config{URL: url, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newStore(t *testing.T) store.Store {
	s := open(t, pgtest.URL(t))
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestMigrations(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	applied, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 || applied[0] != 1 {
		t.Fatalf("first Migrate applied %v, want [1 …]", applied)
	}
	// A second run, also from a second pool as another replica would, is a no-op.
	again, err := open(t, url).Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", again)
	}
	recorded, err := s.AppliedMigrations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(applied, recorded); diff != "" {
		t.Errorf("schema_migrations (-applied +recorded):\n%s", diff)
	}
}

func TestConcurrentMigrate(t *testing.T) {
	url := pgtest.URL(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := open(t, url).Migrate(t.Context())
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
}

func benchStore(b *testing.B) store.Store {
	s, err := postgres.Open(b.Context(), postgres.Config{URL: pgtest.URL(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if _, err := s.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkConsentWrite(b *testing.B) { storetest.BenchConsentWrite(b, benchStore(b)) }
func BenchmarkConsentRead(b *testing.B)  { storetest.BenchConsentRead(b, benchStore(b)) }

// TestViewRefusesWrites: View runs outside a transaction, so it must
// refuse any statement but SELECT itself.
func TestViewRefusesWrites(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	c := storetest.NewCustomer("viewer")
	err := s.View(ctx, func(tx store.Tx) error { return tx.CreateCustomer(ctx, c) })
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CreateCustomer in View: %v, want ErrUnsupported", err)
	}
	err = s.View(ctx, func(tx store.Tx) error {
		_, err := tx.GetCustomer(ctx, c.ID)
		return err
	})
	if !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("the refused write left a row, or reads fail: %v", err)
	}
}
