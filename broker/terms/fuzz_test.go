package terms_test

import (
	"errors"
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/terms"
)

// FuzzParseTerms checks that Parse never panics, refuses only with
// ErrInvalid, and that what it accepts has a canonical form that parses
// back to the same terms and hash. The seed corpus is in
// testdata/fuzz/FuzzParseTerms.
//
//	go test ./broker/terms -run '^$' -fuzz FuzzParseTerms -fuzztime 2m
func FuzzParseTerms(f *testing.F) {
	f.Add([]byte(`{"format":"steward.terms/v1","rules":[]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		tm, err := terms.Parse(doc)
		if err != nil {
			if !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		canon, err := terms.Canonical(tm)
		if err != nil {
			t.Fatalf("Canonical of accepted terms: %v", err)
		}
		again, err := terms.Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %s refused: %v", canon, err)
		}
		canon2, err := terms.Canonical(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(canon) != string(canon2) {
			t.Fatalf("canonical form is not stable:\n%s\n%s", canon, canon2)
		}
		if _, err := terms.Decode(canon); err != nil {
			t.Fatalf("Decode of canonical form: %v", err)
		}
		if _, err := terms.ODRL(tm, "urn:x", "urn:y"); err != nil {
			t.Fatalf("ODRL: %v", err)
		}
	})
}
