package postgres_test

import (
	"fmt"
	"testing"

	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// BenchmarkLedgerAppend measures appends/s with group commit: concurrent
// stagers each commit their own transaction (synchronous_commit as the
// server has it, on by default) while the sequencer and integrator run.
func BenchmarkLedgerAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := postgres.Open(b.Context(), postgres.Config{URL: pgtest.URL(b), MaxConns: int32(writers + 4)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			if _, err := s.Migrate(b.Context()); err != nil {
				b.Fatal(err)
			}
			ledgertest.BenchAppend(b, s.Ledger(), writers)
		})
	}
}

// BenchmarkLedgerLogAppend measures end-to-end appends through Log.Stage,
// which group-commits concurrent callers into one staging transaction.
func BenchmarkLedgerLogAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := postgres.Open(b.Context(), postgres.Config{URL: pgtest.URL(b), MaxConns: int32(writers + 4)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			if _, err := s.Migrate(b.Context()); err != nil {
				b.Fatal(err)
			}
			ledgertest.BenchLogAppend(b, s.Ledger(), writers)
		})
	}
}
