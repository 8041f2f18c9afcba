package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/sqlite"
	"github.com/stewardhq/steward/broker/store/storetest"
)

var _ store.Store = (*sqlite.Store)(nil)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newStore(t *testing.T) store.Store {
	s := open(t, filepath.Join(t.TempDir(), "steward.db"))
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "steward.db")
	s := open(t, path)
	applied, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 || applied[0] != 1 {
		t.Fatalf("first Migrate applied %v, want [1 …]", applied)
	}
	s.Close()
	// Reopen the file, as a restart would: nothing left to apply.
	s = open(t, path)
	again, err := s.Migrate(t.Context())
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

func benchStore(b *testing.B) store.Store {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "steward.db"))
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
