// Package sqlite is the embedded default store: one SQLite file through
// modernc.org/sqlite (pure Go, no cgo), in WAL mode. Writes go through a
// single connection that opens every transaction with BEGIN IMMEDIATE, so
// writers are serialized and never meet SQLITE_BUSY half-way; reads use a
// pool of read-only connections that see the last committed state.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/relational"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Store is a store.Store on one SQLite file.
type Store struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	// mu serializes write transactions inside this process so they queue
	// in Go rather than spin on the database lock.
	mu sync.Mutex
}

// timeLayout is fixed width so that text comparison orders times.
const timeLayout = "2006-01-02T15:04:05.000000Z"

var dialect = &relational.Dialect{
	Time: func(t time.Time) any { return t.UTC().Format(timeLayout) },
	ScanTime: func() (any, func() (time.Time, bool)) {
		var s *string
		return &s, func() (time.Time, bool) {
			if s == nil {
				return time.Time{}, false
			}
			// The driver hands TIMESTAMP columns over as time.Time, which
			// database/sql formats as RFC 3339 with trailing zeros trimmed;
			// computed columns arrive as the stored text; rows written by
			// CURRENT_TIMESTAMP use SQLite's own layout.
			for _, layout := range []string{time.RFC3339Nano, time.DateTime} {
				if t, err := time.Parse(layout, *s); err == nil {
					return t, true
				}
			}
			return time.Time{}, false
		}
	},
	MapError: mapError,
}

func mapError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w (%w)", broker.ErrNotFound, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w (%w)", broker.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: referenced row (%w)", broker.ErrNotFound, err)
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return fmt.Errorf("%w (%w)", broker.ErrInvalid, err)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: database busy (%w)", broker.ErrConflict, err)
		}
	}
	return err
}

// Open opens (creating if needed) the database file at path. It does not
// migrate; call Migrate.
func Open(ctx context.Context, path string) (*Store, error) {
	pragmas := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "busy_timeout(10000)"} {
		pragmas.Add("_pragma", p)
	}
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	// Create the file and switch it to WAL before readers attach.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	pragmas.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	return &Store{path: path, writer: w, reader: r}, nil
}

func (s *Store) Backend() string { return "sqlite" }

// Ledger returns the ledger storage in this file (ledger.Storage).
func (s *Store) Ledger() *relational.Ledger {
	return &relational.Ledger{
		Update: func(ctx context.Context, fn func(*relational.Tx) error) error {
			return s.update(ctx, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
		},
		View: func(ctx context.Context, fn func(*relational.Tx) error) error {
			return run(ctx, s.reader, &sql.TxOptions{ReadOnly: true}, false, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
		},
	}
}

// OAuth returns the OAuth authorization server's storage in this file.
func (s *Store) OAuth() *relational.OAuth {
	return &relational.OAuth{
		Update: func(ctx context.Context, fn func(*relational.Tx) error) error {
			return s.update(ctx, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
		},
		View: func(ctx context.Context, fn func(*relational.Tx) error) error {
			return run(ctx, s.reader, &sql.TxOptions{ReadOnly: true}, false, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
		},
		// Begin holds the writer until commit or rollback, like update.
		Begin: func(ctx context.Context) (*relational.Tx, func() error, func(), error) {
			s.mu.Lock()
			stx, err := s.writer.BeginTx(ctx, nil)
			if err != nil {
				s.mu.Unlock()
				return nil, nil, nil, fmt.Errorf("sqlite: begin: %w", mapError(err))
			}
			var once sync.Once
			release := func() { once.Do(s.mu.Unlock) }
			commit := func() error {
				defer release()
				return mapError(stx.Commit())
			}
			rollback := func() {
				defer release()
				_ = stx.Rollback()
			}
			return &relational.Tx{Q: querier{stx}, D: dialect, Writable: true}, commit, rollback, nil
		},
	}
}

// Exec runs a statement on the writer outside the store's API. Tests use
// it to damage the database the way an attacker with file access could.
func (s *Store) Exec(ctx context.Context, query string, args ...any) error {
	return s.update(ctx, func(_ *relational.Tx, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, rebind(query), args...)
		return err
	})
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.reader.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

func (s *Store) Close() {
	s.reader.Close()
	s.writer.Close()
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
	err = s.update(ctx, func(tx *relational.Tx, stx *sql.Tx) error {
		done, err = relational.Migrate(ctx, tx, ms, func(ctx context.Context, script string) error {
			_, err := stx.ExecContext(ctx, script)
			return err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrate: %w", err)
	}
	return done, nil
}

// AppliedMigrations lists the schema versions recorded in the database.
func (s *Store) AppliedMigrations(ctx context.Context) ([]int, error) {
	var out []int
	err := s.View(ctx, func(t store.Tx) (err error) {
		out, err = relational.AppliedVersions(ctx, t.(*relational.Tx))
		return err
	})
	return out, err
}

func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.update(ctx, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
}

func (s *Store) update(ctx context.Context, fn func(*relational.Tx, *sql.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return run(ctx, s.writer, nil, true, fn)
}

func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return run(ctx, s.reader, &sql.TxOptions{ReadOnly: true}, false, func(tx *relational.Tx, _ *sql.Tx) error { return fn(tx) })
}

func run(ctx context.Context, db *sql.DB, opts *sql.TxOptions, writable bool, fn func(*relational.Tx, *sql.Tx) error) error {
	stx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", mapError(err))
	}
	defer stx.Rollback() //nolint:errcheck // no-op after commit
	if err := fn(&relational.Tx{Q: querier{stx}, D: dialect, Writable: writable}, stx); err != nil {
		return err
	}
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", mapError(err))
	}
	return nil
}

// placeholder matches PostgreSQL-style $n parameters; SQLite spells them ?n.
var placeholder = regexp.MustCompile(`\$(\d+)`)

func rebind(q string) string { return placeholder.ReplaceAllString(q, "?$1") }

// querier adapts *sql.Tx to relational.Querier.
type querier struct{ tx *sql.Tx }

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.tx.ExecContext(ctx, rebind(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) relational.Row {
	return q.tx.QueryRowContext(ctx, rebind(query), args...)
}

func (q querier) Query(ctx context.Context, query string, args ...any) (relational.Rows, error) {
	rows, err := q.tx.QueryContext(ctx, rebind(query), args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
