package relational

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
)

// MaxSequenceBatch bounds one Sequence call so its statements stay within
// every backend's parameter limit.
const MaxSequenceBatch = 1000

// StageLedgerEntry queues a canonical ledger entry inside the caller's
// transaction: it commits with the state change it records, or not at all.
func (tx *Tx) StageLedgerEntry(ctx context.Context, entry []byte) error {
	if _, err := broker.ParseEntry(entry); err != nil {
		return fmt.Errorf("stage ledger entry: %w", err)
	}
	return tx.stage(ctx, entry)
}

// stage queues entry bytes as they are: the ledger.Storage contract is
// format-agnostic.
func (tx *Tx) stage(ctx context.Context, entry []byte) error {
	if err := checkEntrySize(entry); err != nil {
		return err
	}
	return tx.deferExec(ctx, Stmt{insertStagedSQL + placeholders(1, 1, 1), []any{entry}}, "stage ledger entry", nil)
}

// checkEntrySize refuses an entry no ledger would take.
func checkEntrySize(entry []byte) error {
	if len(entry) == 0 || len(entry) > broker.MaxEntryBytes {
		return fmt.Errorf("stage ledger entry: %w: entries are 1 to %d bytes", broker.ErrInvalid, broker.MaxEntryBytes)
	}
	return nil
}

// Ledger implements ledger.Storage over a backend's transactions.
type Ledger struct {
	// Update and View run fn in a read-write or read-only transaction.
	Update func(ctx context.Context, fn func(*Tx) error) error
	View   func(ctx context.Context, fn func(*Tx) error) error
}

// Stage queues entries in one transaction, with one multi-row INSERT per
// MaxSequenceBatch entries, so a group-committed batch costs one round
// trip rather than one per entry.
func (l *Ledger) Stage(ctx context.Context, entries ...[]byte) error {
	args := make([]any, len(entries))
	for i, e := range entries {
		if err := checkEntrySize(e); err != nil {
			return err
		}
		args[i] = e
	}
	return l.Update(ctx, func(tx *Tx) error {
		if err := tx.insertRows(ctx, insertStagedSQL, 1, args); err != nil {
			return fmt.Errorf("stage %d ledger entries: %w", len(entries), err)
		}
		return nil
	})
}

// insertRows runs prefix + VALUES lists for args taken cols at a time, in
// statements of at most MaxSequenceBatch rows.
func (tx *Tx) insertRows(ctx context.Context, prefix string, cols int, args []any) error {
	for len(args) > 0 {
		n := min(len(args)/cols, MaxSequenceBatch)
		if _, err := tx.Q.Exec(ctx, prefix+placeholders(1, n, cols), args[:n*cols]...); err != nil {
			return tx.err(err)
		}
		args = args[n*cols:]
	}
	return nil
}

func placeholders(from, rows, cols int) string {
	var b strings.Builder
	n := from
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", n)
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}

func (l *Ledger) Sequence(ctx context.Context, max int) (int64, error) {
	if max <= 0 || max > MaxSequenceBatch {
		max = MaxSequenceBatch
	}
	var size int64
	err := l.Update(ctx, func(tx *Tx) error {
		if err := newScanner(tx.D).num64(&size).from(tx.Q.QueryRow(ctx, `SELECT size FROM ledger_coord WHERE id = 0`+tx.D.LockSuffix)); err != nil {
			return fmt.Errorf("read sequence coordinator: %w", err)
		}
		var ids []int64
		var entries [][]byte
		err := queryAll(ctx, tx, `SELECT id, entry FROM ledger_staged ORDER BY id LIMIT $1`, []any{max}, func(s *scanner) (*scanner, func()) {
			var id int64
			var e []byte
			return s.num64(&id).blob(&e), func() { ids, entries = append(ids, id), append(entries, e) }
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		args := make([]any, 0, 3*len(ids))
		for i, e := range entries {
			h := tlog.RecordHash(e)
			args = append(args, size+int64(i), e, h[:])
		}
		if _, err := tx.Q.Exec(ctx, `INSERT INTO ledger_leaves (idx, entry, hash) VALUES `+placeholders(1, len(ids), 3), args...); err != nil {
			return fmt.Errorf("insert leaves at %d: %w", size, tx.err(err))
		}
		idArgs := make([]any, len(ids))
		for i, id := range ids {
			idArgs[i] = id
		}
		in := strings.Trim(placeholders(1, 1, len(ids)), "()")
		if n, err := tx.Q.Exec(ctx, `DELETE FROM ledger_staged WHERE id IN (`+in+`)`, idArgs...); err != nil || n != int64(len(ids)) {
			return fmt.Errorf("unstage %d entries (deleted %d): %w", len(ids), n, tx.err(err))
		}
		if err := tx.indexEntries(ctx, size, entries); err != nil {
			return err
		}
		size += int64(len(ids))
		return tx.execOne(ctx, `UPDATE ledger_coord SET size = $1 WHERE id = 0`, size)
	})
	if err != nil {
		return 0, fmt.Errorf("sequence: %w", err)
	}
	return size, nil
}

func (l *Ledger) Size(ctx context.Context) (int64, error) {
	var size int64
	err := l.View(ctx, func(tx *Tx) error {
		return newScanner(tx.D).num64(&size).from(tx.Q.QueryRow(ctx, `SELECT size FROM ledger_coord WHERE id = 0`))
	})
	return size, err
}

func (l *Ledger) ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	err := l.View(ctx, func(tx *Tx) error {
		next := start
		err := queryAll(ctx, tx, `SELECT idx, entry FROM ledger_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx`, []any{start, start + int64(n)},
			func(s *scanner) (*scanner, func()) {
				var idx int64
				var e []byte
				return s.num64(&idx).blob(&e), func() {
					if idx == next {
						out = append(out, e)
						next++
					}
				}
			})
		if err != nil {
			return err
		}
		if len(out) != n {
			return fmt.Errorf("leaves [%d, %d): only %d stored contiguously: %w", start, start+int64(n), len(out), broker.ErrNotFound)
		}
		return nil
	})
	return out, err
}

func (l *Ledger) FindLeaf(ctx context.Context, h tlog.Hash) (int64, error) {
	var idx int64
	err := l.View(ctx, func(tx *Tx) error {
		return newScanner(tx.D).num64(&idx).from(tx.Q.QueryRow(ctx, `SELECT MIN(idx) FROM ledger_leaves WHERE hash = $1 HAVING COUNT(*) > 0`, h[:]))
	})
	if err != nil {
		return 0, fmt.Errorf("find leaf: %w", err)
	}
	return idx, nil
}

func (tx *Tx) readHashes(ctx context.Context, from, to int64) (map[int64]tlog.Hash, error) {
	got := map[int64]tlog.Hash{}
	err := queryAll(ctx, tx, `SELECT idx, hash FROM ledger_hashes WHERE idx >= $1 AND idx < $2`, []any{from, to},
		func(s *scanner) (*scanner, func()) {
			var idx int64
			var b []byte
			return s.num64(&idx).blob(&b), func() {
				var h tlog.Hash
				copy(h[:], b)
				got[idx] = h
			}
		})
	return got, err
}

func (l *Ledger) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	if len(indexes) == 0 {
		return out, nil
	}
	lo, hi := indexes[0], indexes[0]
	for _, i := range indexes {
		lo, hi = min(lo, i), max(hi, i)
	}
	err := l.View(ctx, func(tx *Tx) error {
		var got map[int64]tlog.Hash
		var err error
		if hi-lo < 4*int64(len(indexes))+64 {
			// Dense (integration, tiles): one range scan.
			got, err = tx.readHashes(ctx, lo, hi+1)
		} else {
			// Scattered (proofs): one query naming them all.
			got, err = tx.readHashList(ctx, indexes)
		}
		if err != nil {
			return err
		}
		for k, i := range indexes {
			h, ok := got[i]
			if !ok {
				return fmt.Errorf("stored hash %d: %w", i, broker.ErrNotFound)
			}
			out[k] = h
		}
		return nil
	})
	return out, err
}

// readHashList reads the stored hashes at the given indexes with one IN
// query per MaxSequenceBatch of them.
func (tx *Tx) readHashList(ctx context.Context, indexes []int64) (map[int64]tlog.Hash, error) {
	got := make(map[int64]tlog.Hash, len(indexes))
	for len(indexes) > 0 {
		n := min(len(indexes), MaxSequenceBatch)
		args := make([]any, n)
		for i, idx := range indexes[:n] {
			args[i] = idx
		}
		in := strings.Trim(placeholders(1, 1, n), "()")
		err := queryAll(ctx, tx, `SELECT idx, hash FROM ledger_hashes WHERE idx IN (`+in+`)`, args, func(s *scanner) (*scanner, func()) {
			var idx int64
			var b []byte
			return s.num64(&idx).blob(&b), func() {
				var h tlog.Hash
				copy(h[:], b)
				got[idx] = h
			}
		})
		if err != nil {
			return nil, err
		}
		indexes = indexes[n:]
	}
	return got, nil
}

func (l *Ledger) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	return l.Update(ctx, func(tx *Tx) error {
		have, err := tx.readHashes(ctx, start, start+int64(len(hashes)))
		if err != nil {
			return err
		}
		var args []any
		for i, h := range hashes {
			idx := start + int64(i)
			if old, ok := have[idx]; ok {
				if old != h {
					return fmt.Errorf("stored hash %d differs: %w", idx, broker.ErrConflict)
				}
				continue
			}
			args = append(args, idx, bytes.Clone(h[:]))
		}
		return tx.insertRows(ctx, `INSERT INTO ledger_hashes (idx, hash) VALUES `, 2, args)
	})
}

func (l *Ledger) ReadCheckpoint(ctx context.Context) (int64, []byte, error) {
	var size int64
	var note []byte
	err := l.View(ctx, func(tx *Tx) error {
		return newScanner(tx.D).num64(&size).blob(&note).from(tx.Q.QueryRow(ctx, `SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1`))
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return size, note, nil
}

func (l *Ledger) WriteCheckpoint(ctx context.Context, old, size int64, note []byte) error {
	err := l.Update(ctx, func(tx *Tx) error {
		if size < old {
			return fmt.Errorf("checkpoint size %d below %d: %w", size, old, broker.ErrConflict)
		}
		err := tx.execOne(ctx, `UPDATE ledger_coord SET size = $1 WHERE id = 1 AND size = $2`, size, old)
		if errors.Is(err, broker.ErrNotFound) {
			return fmt.Errorf("latest checkpoint is not size %d: %w", old, broker.ErrConflict)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Q.Exec(ctx, `INSERT INTO ledger_checkpoints (size, note) VALUES ($1, $2)`, size, note); err != nil {
			return tx.err(err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write checkpoint %d: %w", size, err)
	}
	return nil
}

const upsertCosignatureSQL = `INSERT INTO ledger_cosignatures (size, witness, line) VALUES ($1, $2, $3)
ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line`

func (l *Ledger) AddCosignature(ctx context.Context, size int64, witness string, line []byte) error {
	return l.Update(ctx, func(tx *Tx) error {
		_, err := tx.Q.Exec(ctx, upsertCosignatureSQL, size, witness, line)
		return tx.err(err)
	})
}

func (l *Ledger) ReadCosignatures(ctx context.Context, size int64) ([][]byte, error) {
	var out [][]byte
	err := l.View(ctx, func(tx *Tx) error {
		return queryAll(ctx, tx, `SELECT line FROM ledger_cosignatures WHERE size = $1 ORDER BY witness`, []any{size},
			func(s *scanner) (*scanner, func()) {
				var b []byte
				return s.blob(&b), func() { out = append(out, b) }
			})
	})
	return out, err
}
