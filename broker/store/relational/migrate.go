package relational

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/stewardhq/steward/broker"
)

// Migration is one numbered schema change, from a file named
// NNNN_name.up.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// UpTo is the migrations of ms up to version last, all of them when last
// is 0 (a store's migrateTo, for tests that start from an older schema).
func UpTo(ms []Migration, last int) []Migration {
	if last <= 0 {
		return ms
	}
	return slices.DeleteFunc(ms, func(m Migration) bool { return m.Version > last })
}

// LoadMigrations reads *.up.sql files from fsys, ordered by version.
// Versions must be unique and positive. Gaps are allowed, so work on
// several branches can reserve numbers; each version is applied once, and
// one that appears later with a lower number is still applied (Migrate
// records versions, not a high-water mark).
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.up.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, n := range names {
		num, rest, ok := strings.Cut(n, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.up.sql", n)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(rest, ".up.sql"), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", path.Base(ms[i-1].Name), path.Base(ms[i].Name), ms[i].Version)
		}
	}
	return ms, nil
}

const createMigrationsTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL
)`

// Migrate applies the migrations not yet recorded in schema_migrations, in
// order, then upserts the taxonomy. The caller runs it inside one
// transaction that it has already made exclusive (an advisory lock on
// PostgreSQL, BEGIN IMMEDIATE on SQLite), so concurrent starts are safe
// and a failed migration leaves nothing half-applied. It returns the
// versions it applied; none on a second run.
func Migrate(ctx context.Context, tx *Tx, ms []Migration, exec func(ctx context.Context, script string) error) ([]int, error) {
	if _, err := tx.Q.Exec(ctx, createMigrationsTableSQL); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	err := queryAll(ctx, tx, `SELECT version FROM schema_migrations`, nil, func(s *scanner) (*scanner, func()) {
		var v int
		return s.num(&v), func() { applied[v] = true }
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	var done []int
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if err := exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Q.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, CURRENT_TIMESTAMP)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		done = append(done, m.Version)
	}
	if err := seedTaxonomy(ctx, tx); err != nil {
		return nil, err
	}
	return done, nil
}

// AppliedVersions lists the recorded migration versions in order.
func AppliedVersions(ctx context.Context, tx *Tx) ([]int, error) {
	var out []int
	err := queryAll(ctx, tx, `SELECT version FROM schema_migrations ORDER BY version`, nil, func(s *scanner) (*scanner, func()) {
		var v int
		return s.num(&v), func() { out = append(out, v) }
	})
	return out, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// seedTaxonomy upserts broker.Categories and broker.Purposes (parents
// first, as the slices are ordered).
func seedTaxonomy(ctx context.Context, tx *Tx) error {
	for _, c := range broker.Categories {
		_, err := tx.Q.Exec(ctx, `INSERT INTO categories (name, label, parent, special) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET label = excluded.label, parent = excluded.parent, special = excluded.special`,
			c.Name, c.Label, nullable(c.Parent), c.Special)
		if err != nil {
			return fmt.Errorf("seed category %s: %w", c.Name, err)
		}
	}
	for _, p := range broker.Purposes {
		_, err := tx.Q.Exec(ctx, `INSERT INTO purposes (name, label, parent) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET label = excluded.label, parent = excluded.parent`, p.Name, p.Label, nullable(p.Parent))
		if err != nil {
			return fmt.Errorf("seed purpose %s: %w", p.Name, err)
		}
	}
	return nil
}
