// Package backend opens the store an operator configured: PostgreSQL when
// a database URL is given, otherwise the embedded SQLite file in the data
// directory. It migrates before returning, so callers get a store whose
// schema is current.
package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/relational"
	"github.com/stewardhq/steward/broker/store/sqlite"
)

// SQLiteFile is the database file name inside the data directory.
const SQLiteFile = "steward.db"

// Migrator is a store that can bring its schema up to date.
type Migrator interface {
	store.Store
	Migrate(ctx context.Context) ([]int, error)
	// Ledger is the ledger storage in the same database.
	Ledger() *relational.Ledger
	// OAuth is the OAuth authorization server's storage in the same database.
	OAuth() *relational.OAuth
}

// Open opens and migrates the configured store. It returns the versions
// the migration applied (none when the schema was current).
func Open(ctx context.Context, databaseURL, dataDir string) (Migrator, []int, error) {
	var s Migrator
	if databaseURL != "" {
		pg, err := postgres.Open(ctx, postgres.Config{URL: databaseURL})
		if err != nil {
			return nil, nil, err
		}
		s = pg
	} else {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create data directory: %w", err)
		}
		lite, err := sqlite.Open(ctx, filepath.Join(dataDir, SQLiteFile))
		if err != nil {
			return nil, nil, err
		}
		s = lite
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, applied, nil
}
