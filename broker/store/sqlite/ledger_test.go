package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store/sqlite"
	"github.com/stewardhq/steward/broker/store/storetest"
)

var _ ledger.Storage = (*sqlite.Store)(nil).Ledger()

func TestLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) ledger.Storage {
		s := open(t, filepath.Join(t.TempDir(), "steward.db"))
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return &storetest.LedgerTamperer{Ledger: s.Ledger(), T: t, Exec: s.Exec}
	})
}
