package policy

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/stewardhq/steward/broker"
)

// TestInputAST keeps the hand-built Rego values in step with the JSON of
// the versioned input structs, which is the documented contract.
func TestInputAST(t *testing.T) {
	tax := DefaultTaxonomy()
	data, err := tax.data()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	terms := newTermsInput("sha256:x", broker.Terms{Format: broker.TermsFormat, Rules: []broker.TermsRule{
		{Effect: broker.EffectDeny, Match: broker.TermsMatch{Categories: []string{"Health"}}},
		{Effect: broker.EffectAllow, Match: broker.TermsMatch{Purposes: []string{"Marketing"}, Sectors: []string{"retail"},
			Firms: []broker.FirmID{"firm_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Jurisdictions: []string{"GB"}, Categories: []string{"Contact"}},
			Constraints: broker.TermsConstraint{MaxDuration: broker.Duration{Days: 90}, MaxRetention: broker.Duration{Years: 1},
				MaxFrequency: broker.Frequency{Max: 3, Per: broker.Duration{Days: 1}}, NoOnwardTransfer: true,
				MinCompensation: &broker.Money{Currency: "GBP", Minor: 250}, ValidFrom: now, ValidUntil: now.AddDate(1, 0, 0)}},
		{Effect: broker.EffectAsk, Match: broker.TermsMatch{Purposes: []string{"DirectMarketing"}}},
	}}, &data)
	req := requestInput{Categories: []string{"EmailAddress"}, Fields: map[string][]string{"EmailAddress": {"primary"}}, Purpose: "Marketing",
		Duration: newDuration(broker.Duration{Days: 30}), Frequency: newFrequency(broker.Frequency{Max: 2, Per: broker.Duration{Weeks: 1}}),
		Retention: newDuration(broker.Duration{Months: 6}), OnwardTransfer: true, Compensation: newMoney(&broker.Money{Currency: "EUR", Minor: 99})}
	customer := customerInput{Jurisdiction: "GB", Minor: true}
	firm := firmInput{ID: "firm_x", Sector: "retail", Jurisdiction: "DE", Status: "approved"}
	for name, in := range map[string]interface{ ast() ast.Value }{
		"consent": consentInput{Version: InputVersion, NowNS: now.UnixNano(), Customer: customer, Firm: firm, Request: req, Terms: terms},
		"access": accessInput{Version: InputVersion, NowNS: now.UnixNano(), Customer: customer, Firm: firm, Request: req, Terms: terms,
			Consent: consentState{ID: "con_x", FirmID: "firm_x", State: "granted", Explicit: true,
				Scope:       grantedScope{Categories: []string{"Contact"}, Fields: map[string][]string{}, Purpose: "Marketing", Frequency: newFrequency(broker.Frequency{})},
				DecidedAtNS: 1, ExpiresAtNS: 2, DecidedText: "a", ExpiresText: "b", ScopeText: "c"},
			Counts: map[string]int{"P1D": 3}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if got := in.ast(); got.Compare(want) != 0 {
				t.Errorf("ast() differs from the struct's JSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestImports holds the package to its place in the layout: no store, no
// oauth, no HTTP (see STYLE.md).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{"net/http", "github.com/stewardhq/steward/broker/store", "github.com/stewardhq/steward/broker/oauth",
		"github.com/stewardhq/steward/broker/consent"}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, b := range banned {
				if path == b || strings.HasPrefix(path, b+"/") {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
