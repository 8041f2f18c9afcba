package policies_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/stewardhq/steward/policies"
)

// MinCoverage is the share of policy lines the Rego tests must reach.
const MinCoverage = 90.0

// TestRego runs every test_ rule in policies/*_test.rego, as `opa test
// policies/ -v --coverage` would, and fails on any failing Rego test or on
// coverage below MinCoverage.
func TestRego(t *testing.T) {
	ctx := context.Background()
	modules := map[string]*ast.Module{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return err
		}
		src, err := policies.FS.ReadFile(p)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(p, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return err
		}
		modules[p] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := policies.FS.ReadFile("taxonomy/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var taxonomy map[string]any
	if err := json.Unmarshal(raw, &taxonomy); err != nil {
		t.Fatal(err)
	}
	store := inmem.NewFromObject(map[string]any{"taxonomy": taxonomy})

	cov := cover.New()
	ch, err := tester.NewRunner().
		SetStore(store).
		SetModules(modules).
		SetDefaultRegoVersion(ast.RegoV1).
		SetCoverageQueryTracer(cov).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		SetTimeout(2*time.Minute). // the default 5s is too short under -race on a busy machine
		Run(ctx, modules)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s.%s: FAIL (%s)%s", r.Package, r.Name, r.Location, r.Output)
		case r.Skip:
			t.Logf("%s.%s: skipped", r.Package, r.Name)
		}
	}
	if n == 0 {
		t.Fatal("no Rego tests ran")
	}
	policy := map[string]*ast.Module{}
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			policy[name] = m
		}
	}
	report := cov.Report(policy)
	t.Logf("%d Rego tests; coverage %.1f%%", n, report.Coverage)
	for name, f := range report.Files {
		for _, r := range f.NotCovered {
			t.Logf("not covered: %s:%d-%d", name, r.Start.Row, r.End.Row)
		}
	}
	if report.Coverage < MinCoverage {
		t.Errorf("Rego coverage %.1f%% is below %.0f%%", report.Coverage, MinCoverage)
	}
}
