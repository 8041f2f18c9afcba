package sqlite_test

import (
	"fmt"
	"testing"

	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store/sqlite"
)

// BenchmarkLedgerAppend measures appends/s with group commit: concurrent
// stagers each commit their own transaction while the sequencer and
// integrator run. SQLite serialises writers, so more writers only queue.
func BenchmarkLedgerAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ledgertest.BenchAppend(b, benchStore(b).(*sqlite.Store).Ledger(), writers)
		})
	}
}

// BenchmarkLedgerLogAppend measures end-to-end appends through Log.Stage,
// which group-commits concurrent callers into one staging transaction.
func BenchmarkLedgerLogAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ledgertest.BenchLogAppend(b, benchStore(b).(*sqlite.Store).Ledger(), writers)
		})
	}
}
