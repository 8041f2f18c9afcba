package postgres_test

import (
	"context"
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

var _ ledger.Storage = (*postgres.Store)(nil).Ledger()

func TestLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) ledger.Storage {
		s := open(t, pgtest.URL(t))
		if _, err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		return &storetest.LedgerTamperer{Ledger: s.Ledger(), T: t, Exec: func(ctx context.Context, sql string, args ...any) error {
			_, err := s.Pool().Exec(ctx, sql, args...)
			return err
		}}
	})
}
