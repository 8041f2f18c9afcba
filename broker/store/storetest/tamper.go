package storetest

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store/relational"
)

// LedgerTamperer is a SQL ledger storage that tests can damage with raw
// SQL, as someone with write access to the database could. It implements
// ledgertest.Tamperer so the ledger conformance suite's tamper-detection
// cases run against the real tables.
type LedgerTamperer struct {
	*relational.Ledger
	// Exec runs one statement ($n placeholders) outside the store's API.
	Exec func(ctx context.Context, sql string, args ...any) error
	T    testing.TB
}

var _ ledgertest.Tamperer = (*LedgerTamperer)(nil)

func (l *LedgerTamperer) exec(sql string, args ...any) {
	l.T.Helper()
	if err := l.Exec(context.Background(), sql, args...); err != nil {
		l.T.Fatalf("tamper: %s: %v", sql, err)
	}
}

func (l *LedgerTamperer) TamperSetLeaf(i int64, data []byte) {
	h := tlog.RecordHash(data)
	l.exec(`UPDATE ledger_leaves SET entry = $1, hash = $2 WHERE idx = $3`, data, h[:], i)
}

func (l *LedgerTamperer) TamperDeleteLeaf(i int64) {
	l.exec(`DELETE FROM ledger_leaves WHERE idx = $1`, i)
	// Two steps so no intermediate row collides on the primary key.
	l.exec(`UPDATE ledger_leaves SET idx = -idx WHERE idx > $1`, i)
	l.exec(`UPDATE ledger_leaves SET idx = -idx - 1 WHERE idx < 0`)
	l.exec(`UPDATE ledger_coord SET size = size - 1 WHERE id = 0`)
}

func (l *LedgerTamperer) TamperSwapLeaves(i, j int64) {
	l.exec(`UPDATE ledger_leaves SET idx = -1 WHERE idx = $1`, i)
	l.exec(`UPDATE ledger_leaves SET idx = $1 WHERE idx = $2`, i, j)
	l.exec(`UPDATE ledger_leaves SET idx = $1 WHERE idx = -1`, j)
}

func (l *LedgerTamperer) TamperTruncate(n int64) {
	l.exec(`DELETE FROM ledger_index_categories WHERE idx >= $1`, n)
	l.exec(`DELETE FROM ledger_index WHERE idx >= $1`, n)
	l.exec(`DELETE FROM ledger_leaves WHERE idx >= $1`, n)
	l.exec(`UPDATE ledger_coord SET size = $1 WHERE id = 0`, n)
}

func (l *LedgerTamperer) TamperCheckpoint(note []byte) {
	l.exec(`UPDATE ledger_checkpoints SET note = $1 WHERE size = (SELECT MAX(size) FROM ledger_checkpoints)`, note)
}

func (l *LedgerTamperer) TamperRewrite(leaves [][]byte) {
	for _, table := range []string{"ledger_index_categories", "ledger_index", "ledger_leaves", "ledger_hashes", "ledger_checkpoints", "ledger_cosignatures", "ledger_staged"} {
		l.exec(`DELETE FROM ` + table)
	}
	for i, e := range leaves {
		h := tlog.RecordHash(e)
		l.exec(`INSERT INTO ledger_leaves (idx, entry, hash) VALUES ($1, $2, $3)`, int64(i), e, h[:])
	}
	l.exec(`UPDATE ledger_coord SET size = $1 WHERE id = 0`, int64(len(leaves)))
	l.exec(`UPDATE ledger_coord SET size = 0 WHERE id = 1`)
}
