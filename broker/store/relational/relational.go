// Package relational is the store.Tx implementation that PostgreSQL and
// SQLite share: the same SQL text (written with $n placeholders) run over
// a small Querier that each backend adapts from its own driver, plus the
// migration runner. Backends supply a Dialect for the few differences.
package relational

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Row is one result row.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs SQL inside one transaction. Backends adapt pgx.Tx and *sql.Tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
}

// Stmt is one statement with its arguments.
type Stmt struct {
	SQL  string
	Args []any
}

// Pipeliner is a Querier that sends statements in PostgreSQL's pipeline,
// so that a transaction spends as few round trips as its reads allow.
type Pipeliner interface {
	// Defer queues a statement whose only result is success: it goes to
	// the database with the transaction's next statement, or with COMMIT,
	// and its error (mapped, wrapped with what, or check's verdict on the
	// rows it affected; check may be nil) fails that statement or the
	// commit. A failed deferred statement fails the transaction.
	Defer(s Stmt, what string, check func(rowsAffected int64) error)
	// QueryEach sends queries (with anything deferred) in one round trip
	// and calls read with each one's rows in order, stopping at the
	// first error, which it returns unmapped unless read returned it.
	QueryEach(ctx context.Context, queries []Stmt, read func(i int, rows Rows) error) error
}

// deferExec runs a statement whose only result is success: deferred to
// the next round trip where the querier pipelines (its error then fails
// that statement or the commit), at once otherwise. what names the
// operation in its error; check, if set, judges the rows it affected.
func (tx *Tx) deferExec(ctx context.Context, s Stmt, what string, check func(int64) error) error {
	if p, ok := tx.Q.(Pipeliner); ok {
		p.Defer(s, what, check)
		return nil
	}
	n, err := tx.Q.Exec(ctx, s.SQL, s.Args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, tx.err(err))
	}
	if check != nil {
		if err := check(n); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// queryEach runs queries, in one round trip where the querier pipelines,
// calling read with each one's rows in order.
func (tx *Tx) queryEach(ctx context.Context, queries []Stmt, read func(i int, rows Rows) error) error {
	if p, ok := tx.Q.(Pipeliner); ok {
		return p.QueryEach(ctx, queries, read)
	}
	for i, q := range queries {
		rows, err := tx.Q.Query(ctx, q.SQL, q.Args...)
		if err != nil {
			return err
		}
		err = read(i, rows)
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Dialect is what differs between backends.
type Dialect struct {
	// Time converts a time argument to what the driver stores.
	Time func(time.Time) any
	// ScanTime returns a scan destination and a func that reads it back
	// (ok false for SQL NULL).
	ScanTime func() (dest any, get func() (t time.Time, ok bool))
	// LockSuffix is appended to a SELECT that must lock its row inside a
	// read-write transaction (" FOR UPDATE"), or "".
	LockSuffix string
	// SkipLockedSuffix is appended to a SELECT that claims work rows, so
	// concurrent workers pass over rows another has locked (" FOR UPDATE
	// SKIP LOCKED"), or "" where writers are serialized anyway.
	SkipLockedSuffix string
	// MapError translates driver errors into broker sentinels (ErrNotFound
	// for no rows, ErrConflict for unique violations, ErrNotFound for a
	// missing foreign key), wrapping the original; it returns nil for nil.
	MapError func(error) error
}

// Tx implements store.Tx over a Querier.
type Tx struct {
	Q        Querier
	D        *Dialect
	Writable bool
}

var _ store.Tx = (*Tx)(nil)

// T normalises a time the way every backend stores it: UTC, microseconds.
func T(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (tx *Tx) t(t time.Time) any { return tx.D.Time(T(t)) }

func (tx *Tx) nt(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return tx.t(t)
}

func (tx *Tx) err(err error) error { return tx.D.MapError(err) }

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// scanner collects destinations for one row, decoding JSON and times after Scan.
type scanner struct {
	d     *Dialect
	dest  []any
	after []func() error
}

func (s *scanner) str(p *string) *scanner  { s.dest = append(s.dest, p); return s }
func (s *scanner) num(p *int) *scanner     { s.dest = append(s.dest, p); return s }
func (s *scanner) num64(p *int64) *scanner { s.dest = append(s.dest, p); return s }
func (s *scanner) blob(p *[]byte) *scanner { s.dest = append(s.dest, p); return s }
func (s *scanner) flag(p *bool) *scanner   { s.dest = append(s.dest, p); return s }

func (s *scanner) time(p *time.Time) *scanner {
	d, get := s.d.ScanTime()
	s.dest = append(s.dest, d)
	s.after = append(s.after, func() error {
		if t, ok := get(); ok {
			*p = t.UTC()
		} else {
			*p = time.Time{}
		}
		return nil
	})
	return s
}

func (s *scanner) json(p any) *scanner {
	var raw *string
	raw = new(string)
	s.dest = append(s.dest, &raw)
	s.after = append(s.after, func() error {
		if raw == nil || *raw == "" || *raw == "null" {
			return nil
		}
		if err := json.Unmarshal([]byte(*raw), p); err != nil {
			return fmt.Errorf("decode stored json: %w", err)
		}
		return nil
	})
	return s
}

func (s *scanner) bytes(p *[]byte) *scanner {
	var raw *string
	raw = new(string)
	s.dest = append(s.dest, &raw)
	s.after = append(s.after, func() error {
		if raw != nil && *raw != "" {
			*p = []byte(*raw)
		}
		return nil
	})
	return s
}

func (s *scanner) from(r Row) error {
	if err := r.Scan(s.dest...); err != nil {
		return s.d.MapError(err)
	}
	for _, f := range s.after {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func newScanner(d *Dialect) *scanner { return &scanner{d: d} }

// queryAll runs a query and calls each for every row with a fresh scanner.
func queryAll(ctx context.Context, tx *Tx, sql string, args []any, each func(*scanner) (*scanner, func())) error {
	rows, err := tx.Q.Query(ctx, sql, args...)
	if err != nil {
		return tx.err(err)
	}
	defer rows.Close()
	for rows.Next() {
		s, keep := each(newScanner(tx.D))
		if err := s.from(rows); err != nil {
			return err
		}
		keep()
	}
	return tx.err(rows.Err())
}

// exec runs a statement and reports broker.ErrNotFound if it touched no row.
func (tx *Tx) execOne(ctx context.Context, sql string, args ...any) error {
	n, err := tx.Q.Exec(ctx, sql, args...)
	if err != nil {
		return tx.err(err)
	}
	if n == 0 {
		return broker.ErrNotFound
	}
	return nil
}

func (tx *Tx) mustWrite(op string) error {
	if !tx.Writable {
		return fmt.Errorf("%s in a read-only transaction: %w", op, errors.ErrUnsupported)
	}
	return nil
}
