package relational_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stewardhq/steward/broker/store/relational"
)

func TestLoadMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"0001_a.up.sql": {Data: []byte("CREATE TABLE a (x INT);")},
		"0003_c.up.sql": {Data: []byte("CREATE TABLE c (x INT);")},
		"0002_b.up.sql": {Data: []byte("CREATE TABLE b (x INT);")},
		"0007_g.up.sql": {Data: []byte("CREATE TABLE g (x INT);")},
		"README.md":     {Data: []byte("not a migration")},
	}
	ms, err := relational.LoadMigrations(ok)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != "a,b,c,g" {
		t.Errorf("order %v, want a,b,c,g (gaps allowed, sorted by version)", got)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"duplicate version": {"0001_a.up.sql": {Data: []byte("x")}, "001_b.up.sql": {Data: []byte("y")}},
		"no number":         {"init.up.sql": {Data: []byte("x")}},
		"zero":              {"0000_a.up.sql": {Data: []byte("x")}},
	} {
		if _, err := relational.LoadMigrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
