// Package backendtest runs a test on every store backend: SQLite always,
// PostgreSQL when pgtest can provide a database (see package pgtest for
// DATABASE_URL and -require_db).
package backendtest

import (
	"path/filepath"
	"testing"

	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// Each runs fn as a subtest per backend with a fresh, migrated store.
func Each(t *testing.T, fn func(t *testing.T, s backend.Migrator)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, Open(t, ""))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, Open(t, pgtest.URL(t)))
	})
}

// Open opens a fresh migrated store: PostgreSQL at url, or SQLite in a
// temporary directory when url is empty. It is closed when the test ends.
func Open(t testing.TB, url string) backend.Migrator {
	t.Helper()
	dir := ""
	if url == "" {
		dir = filepath.Join(t.TempDir(), "data")
	}
	s, _, err := backend.Open(t.Context(), url, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
