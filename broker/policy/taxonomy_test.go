package policy

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite policies/taxonomy/data.json from the Go taxonomy")

// TestTaxonomyDataFile keeps policies/taxonomy/data.json, which `opa test
// policies/` reads, in step with broker.Categories and broker.Purposes.
// Run `go test ./broker/policy -run TaxonomyDataFile -update` after
// changing the taxonomy.
func TestTaxonomyDataFile(t *testing.T) {
	const file = "../../policies/taxonomy/data.json"
	want, err := TaxonomyJSON(DefaultTaxonomy())
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s is stale; run with -update (-want +got):\n%s", file, diff)
	}
}
