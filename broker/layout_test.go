package broker_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// mustNotImport is STYLE.md's table of one-way imports: each package (and
// its sub-packages, unless listed itself) must not import the listed
// packages directly. Prefixes ending in "/" match sub-packages.
var mustNotImport = map[string][]string{
	"broker/consent":         {"broker/store/postgres", "broker/store/sqlite", "broker/policy", "broker/ledger", "broker/oauth", "net/http", "github.com/jackc/pgx/", "github.com/open-policy-agent/opa/"},
	"broker/policy":          {"broker/consent", "broker/store/", "broker/oauth", "net/http"},
	"broker/ledger":          {"broker/consent", "broker/oauth", "broker/policy", "github.com/jackc/pgx/"},
	"broker/oauth":           {"broker/store/postgres", "broker/store/sqlite", "broker/policy", "broker/ledger", "web"},
	"broker/httpapi":         {"broker/store/postgres", "broker/store/sqlite", "broker/policy", "github.com/jackc/pgx/"},
	"broker/dataapi":         {"broker/store/postgres", "broker/store/sqlite", "github.com/jackc/pgx/", "web"},
	"broker/firmclient":      {"broker/store/", "broker/oauth", "broker/policy", "broker/ledger", "web"},
	"broker/oauthconsent":    {"broker/store/postgres", "broker/store/sqlite", "broker/policy", "broker/ledger", "net/http", "web"},
	"broker/audit":           {"broker/oauth", "web"},
	"broker/customerapi":     {"broker/store/postgres", "broker/store/sqlite", "broker/policy", "broker/oauth", "web", "github.com/jackc/pgx/"},
	"broker/notify":          {"broker/store/postgres", "broker/store/sqlite", "broker/oauth", "web"},
	"broker/store/postgres":  {"broker/consent", "broker/policy", "broker/oauth", "net/http"},
	"broker/store/sqlite":    {"broker/consent", "broker/policy", "broker/oauth", "net/http"},
	"broker/store/storetest": {"broker/store/postgres", "broker/store/sqlite"},
	"web":                    {"broker/store/", "broker/policy", "broker/ledger", "github.com/jackc/pgx/"},
}

const module = "github.com/stewardhq/steward/"

// TestLayout checks the import arrows of every package in the module.
func TestLayout(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		rules := rulesFor(rel)
		for _, imp := range p.Imports {
			name := strings.TrimPrefix(imp, module)
			for _, banned := range rules {
				if name == strings.TrimSuffix(banned, "/") || (strings.HasSuffix(banned, "/") && strings.HasPrefix(name, banned)) {
					t.Errorf("%s imports %s, which STYLE.md forbids", rel, imp)
				}
			}
		}
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d packages listed", checked)
	}
}

// rulesFor returns the rules of the nearest listed ancestor of pkg.
func rulesFor(pkg string) []string {
	for p := pkg; p != ""; {
		if r, ok := mustNotImport[p]; ok {
			return r
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return nil
}
