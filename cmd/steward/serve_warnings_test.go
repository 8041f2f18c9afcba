package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stewardhq/steward/broker/store/postgres"
)

// TestServeWarnsOfAutovacuumOff: serve logs, once at start, that the
// database's autovacuum is off when it is (on this development machine's
// PostgreSQL it is), and says nothing of it on SQLite or when it is on.
func TestServeWarnsOfAutovacuumOff(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.db(t)
			off := false
			if url != "" {
				conn, err := pgx.Connect(t.Context(), url)
				if err != nil {
					t.Fatal(err)
				}
				var on string
				err = conn.QueryRow(t.Context(), `SHOW autovacuum`).Scan(&on)
				conn.Close(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				off = on == "off"
			}
			var logs syncBuffer
			srv := startServeLogged(t, config{DataDir: t.TempDir(), DatabaseURL: url}, slog.New(slog.NewTextHandler(&logs, nil)))
			srv.stop()
			warned := strings.Count(logs.String(), "level=WARN msg=\""+postgres.WarnAutovacuumOff)
			if want := map[bool]int{true: 1, false: 0}[off]; warned != want {
				t.Errorf("autovacuum off %v: warned %d times, want %d; log:\n%s", off, warned, want, logs.String())
			}
		})
	}
}
