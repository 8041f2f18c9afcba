// Package postgres is the production store: PostgreSQL through pgx/v5 and
// pgxpool. Schema migrations are embedded (migrations/*.up.sql) and
// applied by Migrate under an advisory lock, so several replicas may start
// at once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/relational"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// migrationLockID is the pg_advisory_xact_lock key that serializes migrations.
const migrationLockID = 0x5374657761726400 // "Steward\0"

// Store is a store.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	// reads serves View: its sessions are default_transaction_read_only.
	reads *pgxpool.Pool
}

var dialect = &relational.Dialect{
	Time: func(t time.Time) any { return t },
	ScanTime: func() (any, func() (time.Time, bool)) {
		var t *time.Time
		return &t, func() (time.Time, bool) {
			if t == nil {
				return time.Time{}, false
			}
			return *t, true
		}
	},
	LockSuffix:       " FOR UPDATE",
	SkipLockedSuffix: " FOR UPDATE SKIP LOCKED",
	MapError:         mapError,
}

func mapError(err error) error {
	if err == nil || errors.Is(err, broker.ErrNotFound) || errors.Is(err, broker.ErrConflict) || errors.Is(err, broker.ErrInvalid) {
		return err // nil, or mapped already
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (%w)", broker.ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgerrcode.UniqueViolation:
			return fmt.Errorf("%w: %s (%w)", broker.ErrConflict, pgErr.ConstraintName, err)
		case pgerrcode.ForeignKeyViolation:
			return fmt.Errorf("%w: referenced row (%s) (%w)", broker.ErrNotFound, pgErr.ConstraintName, err)
		case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected, pgerrcode.LockNotAvailable:
			return fmt.Errorf("%w: %s (%w)", broker.ErrConflict, pgErr.Code, err)
		case pgerrcode.CheckViolation, pgerrcode.NotNullViolation, pgerrcode.InvalidTextRepresentation,
			pgerrcode.CharacterNotInRepertoire, pgerrcode.UntranslatableCharacter:
			return fmt.Errorf("%w: %s (%w)", broker.ErrInvalid, pgErr.Message, err)
		}
	}
	return err
}

// Config configures Open.
type Config struct {
	// URL is a PostgreSQL connection string (postgres://user@host:port/db?...).
	URL string
	// MaxConns bounds the pool; 0 means DefaultMaxConns.
	MaxConns int32
}

// DefaultMaxConns is the pool size when Config.MaxConns is 0.
const DefaultMaxConns = 16

// RandomPageCost is the planner's random_page_cost in Steward's sessions,
// unless the database URL sets it (as a parameter of its own or in
// options). Steward's requests are point lookups by key in indexes that
// stay cached, on storage that is solid state today. At PostgreSQL's
// default (4, a spinning disk's seek) the planner reads a small table
// whole instead: a Data API request's access context and token check
// hashed every firm and every OAuth client, 100 rows each in the
// benchmark, to join one. At 1.1, the usual value for SSDs, they are
// index lookups, and the two statements took 97 and 21 µs of execution
// per fetch instead of 122 and 43 (docs/data-api.md, Speed).
const RandomPageCost = "1.1"

// planForCachedData sets RandomPageCost in params unless they set
// random_page_cost already.
func planForCachedData(params map[string]string) {
	if _, ok := params["random_page_cost"]; ok || strings.Contains(params["options"], "random_page_cost") {
		return
	}
	params["random_page_cost"] = RandomPageCost
}

// Open connects, checks the server answers, and returns the store.
// It does not migrate; call Migrate.
func Open(ctx context.Context, c Config) (*Store, error) {
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	pc.MaxConns = c.MaxConns
	if pc.MaxConns == 0 {
		pc.MaxConns = DefaultMaxConns
	}
	planForCachedData(pc.ConnConfig.RuntimeParams)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	// View's connections are read-only in the database itself: whatever a
	// statement is, it cannot write outside a transaction.
	rc := pc.Copy()
	rc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	reads, err := pgxpool.NewWithConfig(ctx, rc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, reads: reads}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ledger returns the ledger storage on this database (ledger.Storage).
func (s *Store) Ledger() *relational.Ledger {
	return &relational.Ledger{
		Update: s.update,
		View:   s.read,
	}
}

// OAuth returns the OAuth authorization server's storage on this database.
func (s *Store) OAuth() *relational.OAuth {
	return &relational.OAuth{
		Update: s.update,
		View:   s.read,
		Begin: func(ctx context.Context) (*relational.Tx, func() error, func(), error) {
			ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("postgres: begin: %w", err)
			}
			commit := func() error { return mapError(ptx.Commit(ctx)) }
			rollback := func() { _ = ptx.Rollback(context.WithoutCancel(ctx)) }
			return &relational.Tx{Q: querier{ptx}, D: dialect, Writable: true}, commit, rollback, nil
		},
	}
}

// Pool exposes the pgx pool for packages that add their own tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) Backend() string { return "postgres" }

// WarnAutovacuumOff is the warning Warnings gives when the server's
// autovacuum is off.
const WarnAutovacuumOff = "PostgreSQL's autovacuum is off: run ANALYZE on Steward's database regularly " +
	"(docs/operations.md, PostgreSQL planner); a statement planned while a table was small " +
	"(disclosures, the ledger's index) keeps scanning that table whole as it grows"

// Warnings are what the server's configuration will cost Steward in
// service. Steward's sessions cache their statements' plans, and
// PostgreSQL plans them again only when a table's statistics change: with
// autovacuum off, nothing analyses a table that was empty when Steward
// started (a new deployment's disclosures and ledger index), and its
// lookups keep the sequential scans planned then.
func (s *Store) Warnings(ctx context.Context) ([]string, error) {
	var on string
	if err := s.pool.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = 'autovacuum'`).Scan(&on); err != nil {
		return nil, fmt.Errorf("postgres: read settings: %w", err)
	}
	if on != "on" {
		return []string{WarnAutovacuumOff}, nil
	}
	return nil, nil
}

func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

func (s *Store) Close() {
	s.pool.Close()
	s.reads.Close()
}

// Migrate applies pending migrations and seeds the taxonomy, returning the
// versions applied (none when the schema is current).
func (s *Store) Migrate(ctx context.Context) ([]int, error) { return s.migrateTo(ctx, 0) }

// migrateTo applies the migrations up to version last (all when 0).
func (s *Store) migrateTo(ctx context.Context, last int) ([]int, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	ms, err := relational.LoadMigrations(sub)
	if err != nil {
		return nil, err
	}
	ms = relational.UpTo(ms, last)
	var done []int
	err = s.run(ctx, pgx.TxOptions{}, true, func(tx *relational.Tx, ptx pgx.Tx) error {
		if _, err := ptx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
			return err
		}
		done, err = relational.Migrate(ctx, tx, ms, func(ctx context.Context, script string) error {
			_, err := ptx.Exec(ctx, script)
			return err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	return done, nil
}

// AppliedMigrations lists the schema versions recorded in the database.
func (s *Store) AppliedMigrations(ctx context.Context) ([]int, error) {
	var out []int
	err := s.run(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}, false, func(tx *relational.Tx, _ pgx.Tx) (err error) {
		out, err = relational.AppliedVersions(ctx, tx)
		return err
	})
	return out, err
}

// Update runs fn in a read-write transaction, pipelined (see pipe). A
// transaction PostgreSQL
// aborts to break a deadlock (or a serialization failure) is run again,
// from the start, up to updateAttempts times in all: two transactions
// that lock the same rows in opposite orders (a revocation and a token
// exchange racing on one consent) then both complete instead of one
// failing. fn must not have effects outside the transaction.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	var err error
	for range updateAttempts {
		err = s.update(ctx, func(tx *relational.Tx) error { return fn(tx) })
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// updateAttempts bounds how often Update runs a transaction PostgreSQL aborted.
const updateAttempts = 3

// retryable reports whether err is a deadlock or serialization failure.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.DeadlockDetected || pgErr.Code == pgerrcode.SerializationFailure)
}

// View runs fn's reads on one pooled connection, each statement on its
// own. Under PostgreSQL's READ COMMITTED isolation, which Update uses too,
// a read-only transaction would give fn the same view (every statement
// sees what was committed before it began) at the cost of two more round
// trips, BEGIN and COMMIT, on every read path (token introspection, client
// lookups, receipts). fn cannot write: relational.Tx refuses writes
// unless Writable.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.read(ctx, func(tx *relational.Tx) error { return fn(tx) })
}

func (s *Store) read(ctx context.Context, fn func(*relational.Tx) error) error {
	conn, err := s.reads.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: acquire: %w", err)
	}
	defer conn.Release()
	return fn(&relational.Tx{Q: connQuerier{conn}, D: dialect, Writable: false})
}

// connQuerier adapts a pooled connection to relational.Querier for View.
// Its sessions are read-only (default_transaction_read_only), and it runs
// SELECT statements only and refuses anything else before they reach the
// database.
type connQuerier struct{ c *pgxpool.Conn }

// errReadOnly is what a write attempted in View returns.
var errReadOnly = fmt.Errorf("postgres: write in a read-only view: %w", errors.ErrUnsupported)

func selectOnly(sql string) bool {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	return len(sql) >= 6 && strings.EqualFold(sql[:6], "SELECT")
}

func (q connQuerier) Exec(context.Context, string, ...any) (int64, error) { return 0, errReadOnly }

func (q connQuerier) QueryRow(ctx context.Context, sql string, args ...any) relational.Row {
	if !selectOnly(sql) {
		return errRow{errReadOnly}
	}
	return q.c.QueryRow(ctx, sql, args...)
}

func (q connQuerier) Query(ctx context.Context, sql string, args ...any) (relational.Rows, error) {
	if !selectOnly(sql) {
		return nil, errReadOnly
	}
	return q.c.Query(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (s *Store) run(ctx context.Context, opts pgx.TxOptions, writable bool, fn func(*relational.Tx, pgx.Tx) error) error {
	ptx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if err := fn(&relational.Tx{Q: querier{ptx}, D: dialect, Writable: writable}, ptx); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", mapError(err))
	}
	return nil
}

// querier adapts pgx.Tx to relational.Querier.
type querier struct{ tx pgx.Tx }

func (q querier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (q querier) QueryRow(ctx context.Context, sql string, args ...any) relational.Row {
	return q.tx.QueryRow(ctx, sql, args...)
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (relational.Rows, error) {
	return q.tx.Query(ctx, sql, args...)
}
