package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stewardhq/steward/broker/store/relational"
)

// pipe is a read-write transaction on one pooled connection that spends
// as few round trips as its reads allow, using PostgreSQL's pipeline
// (pgx batches: every statement up to one Sync in one write):
//
//   - BEGIN goes with the transaction's first statement, not on its own;
//   - statements whose only result is success (relational.Pipeliner's
//     Defer: ledger entries, decision and disclosure rows, DPoP proofs)
//     wait for the next statement, or go with COMMIT;
//   - several reads can go together (QueryEach).
//
// A Data API disclosure is thus two round trips: BEGIN, the proof and its
// reads; then its rows and COMMIT. PostgreSQL runs the statements of a
// pipeline in order and skips the rest after an error, so a failed
// statement fails the transaction as it would one at a time.
type pipe struct {
	conn    *pgxpool.Conn
	begun   bool
	pending []deferredStmt
}

type deferredStmt struct {
	relational.Stmt
	what  string
	check func(int64) error
}

var (
	_ relational.Querier   = (*pipe)(nil)
	_ relational.Pipeliner = (*pipe)(nil)
)

// update runs fn in a pipelined read-write transaction.
func (s *Store) update(ctx context.Context, fn func(*relational.Tx) error) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: acquire: %w", err)
	}
	// Release destroys a connection left in a transaction or broken.
	defer conn.Release()
	p := &pipe{conn: conn}
	defer func() {
		if err != nil && p.begun {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if err := fn(&relational.Tx{Q: p, D: dialect, Writable: true}); err != nil {
		return err
	}
	return p.commit(ctx)
}

func (p *pipe) Defer(s relational.Stmt, what string, check func(int64) error) {
	p.pending = append(p.pending, deferredStmt{s, what, check})
}

// send queues BEGIN (the first time), what is deferred and then stmts in
// one batch, sends it, and reads the results up to stmts, whose results
// the caller reads from the returned batch and then closes it.
func (p *pipe) send(ctx context.Context, stmts []relational.Stmt) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	begin := !p.begun
	if begin {
		b.Queue("BEGIN")
	}
	for _, d := range p.pending {
		b.Queue(d.SQL, d.Args...)
	}
	for _, s := range stmts {
		b.Queue(s.SQL, s.Args...)
	}
	pending := p.pending
	p.pending, p.begun = nil, true
	br := p.conn.SendBatch(ctx, b)
	if begin {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	for _, d := range pending {
		tag, err := br.Exec()
		if err == nil && d.check != nil {
			err = d.check(tag.RowsAffected())
		} else if err != nil {
			err = mapError(err)
		}
		if err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("%s: %w", d.what, err)
		}
	}
	return br, nil
}

// commit sends what is deferred with COMMIT. A transaction that sent
// nothing has nothing to commit.
func (p *pipe) commit(ctx context.Context) error {
	if !p.begun && len(p.pending) == 0 {
		return nil
	}
	br, err := p.send(ctx, []relational.Stmt{{SQL: "COMMIT"}})
	if err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("postgres: commit: %w", mapError(err))
	}
	p.begun = false
	// COMMIT of a transaction that failed answers ROLLBACK, not an error.
	if tag.String() != "COMMIT" {
		return fmt.Errorf("postgres: commit: %w", errRolledBack)
	}
	return nil
}

var errRolledBack = errors.New("the transaction was rolled back")

func (p *pipe) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	br, err := p.send(ctx, []relational.Stmt{{SQL: sql, Args: args}})
	if err != nil {
		return 0, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag.RowsAffected(), err
}

func (p *pipe) QueryRow(ctx context.Context, sql string, args ...any) relational.Row {
	br, err := p.send(ctx, []relational.Stmt{{SQL: sql, Args: args}})
	if err != nil {
		return errRow{err}
	}
	return batchRow{br}
}

// batchRow is the one row of the last query of a batch.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

func (p *pipe) Query(ctx context.Context, sql string, args ...any) (relational.Rows, error) {
	br, err := p.send(ctx, []relational.Stmt{{SQL: sql, Args: args}})
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRows are the rows of the last query of a batch; Close closes both.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (p *pipe) QueryEach(ctx context.Context, queries []relational.Stmt, read func(int, relational.Rows) error) error {
	br, err := p.send(ctx, queries)
	if err != nil {
		return err
	}
	for i := range queries {
		rows, err := br.Query()
		if err == nil {
			err = read(i, rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}
