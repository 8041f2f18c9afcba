package postgres

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// TestRandomPageCost: both of a store's pools plan with RandomPageCost,
// unless the database URL sets random_page_cost itself, as a parameter or
// in options.
func TestRandomPageCost(t *testing.T) {
	base := pgtest.URL(t)
	with := func(k, v string) string {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += k + "=" + strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
		return u.String()
	}
	for _, c := range []struct{ name, url, want string }{
		{"default", base, RandomPageCost},
		{"URL parameter", with("random_page_cost", "2"), "2"},
		{"URL options", with("options", "-c random_page_cost=3"), "3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(t.Context(), Config{URL: c.url, MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			for name, pool := range map[string]interface {
				QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
			}{"writes": s.pool, "reads": s.reads} {
				var got string
				if err := pool.QueryRow(t.Context(), "SHOW random_page_cost").Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s pool: random_page_cost = %s, want %s", name, got, c.want)
				}
			}
		})
	}
}

// TestWarnings: the store warns that autovacuum is off exactly when the
// server says so.
func TestWarnings(t *testing.T) {
	s, err := Open(t.Context(), Config{URL: pgtest.URL(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var on string
	if err := s.pool.QueryRow(t.Context(), `SHOW autovacuum`).Scan(&on); err != nil {
		t.Fatal(err)
	}
	got, err := s.Warnings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if warned := slices.Contains(got, WarnAutovacuumOff); warned != (on == "off") {
		t.Errorf("autovacuum %s: warnings %q", on, got)
	}
}
