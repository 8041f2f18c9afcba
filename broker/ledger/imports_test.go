package ledger_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the dependency arrows of STYLE.md: the ledger
// packages must not import consent, oauth, policy, the stores or pgx, and
// package broker itself only the standard library. (depguard in
// .golangci.yml says the same for the whole tree.)
func TestImports(t *testing.T) {
	const mod = "github.com/stewardhq/steward/"
	banned := []string{mod + "broker/consent", mod + "broker/oauth", mod + "broker/policy", mod + "broker/store", mod + "cmd", "github.com/jackc/pgx"}
	check := func(dir string, ok func(path string) bool) int {
		files := 0
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || (p != dir && dir == "..")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			files++
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if !ok(path) {
					t.Errorf("%s imports %s", p, path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	n := check(".", func(path string) bool {
		for _, b := range banned {
			if path == b || strings.HasPrefix(path, b+"/") {
				return false
			}
		}
		return true
	})
	// Package broker (the directory above, not its sub-packages).
	m := check("..", func(path string) bool {
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	})
	if n < 15 || m < 8 {
		t.Errorf("checked only %d ledger and %d broker files", n, m)
	}
}
