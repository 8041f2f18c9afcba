// Package pgtest gives tests a fresh PostgreSQL database each.
//
// The server comes from DATABASE_URL (any database on it; the test creates
// and drops its own). Without DATABASE_URL the test is skipped with a loud
// message, unless the test binary runs with -require_db, which makes a
// missing database a failure: CI passes it so PostgreSQL tests never
// silently vanish (STEWARD_TEST_REQUIRE_DB=1 does the same for every
// package at once, which is how .ci/test sets it). `go test -short` skips
// them too, unless required.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var requireDB = flag.Bool("require_db", os.Getenv("STEWARD_TEST_REQUIRE_DB") == "1",
	"fail, rather than skip, PostgreSQL tests when DATABASE_URL is unset (default from STEWARD_TEST_REQUIRE_DB=1)")

// URL returns a connection string for a new empty database that is dropped
// when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DATABASE_URL")
	switch {
	case base == "" && *requireDB:
		t.Fatal("DATABASE_URL is not set and -require_db was given")
	case base == "":
		t.Skip("SKIPPING PostgreSQL test: DATABASE_URL is not set (make test starts a throwaway server when it can)")
	case testing.Short() && !*requireDB:
		t.Skip("skipping PostgreSQL test in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "steward_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("DATABASE_URL must be a postgres:// URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Describe says which server the tests use, for test logs.
func Describe() string {
	if os.Getenv("DATABASE_URL") == "" {
		return "no DATABASE_URL"
	}
	u, err := url.Parse(os.Getenv("DATABASE_URL"))
	if err != nil {
		return "unparseable DATABASE_URL"
	}
	return fmt.Sprintf("postgres at %s", u.Host)
}
