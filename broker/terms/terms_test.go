package terms_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/terms"
)

const firmA = "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa"

func doc(rules ...string) []byte {
	return []byte(`{"format":"steward.terms/v1","rules":[` + strings.Join(rules, ",") + `]}`)
}

func TestParseAccepts(t *testing.T) {
	got, err := terms.Parse(doc(
		`{"effect":"deny","match":{"categories":["Health","Biometric"]}}`,
		`{"effect":"ask","match":{"purposes":["DirectMarketing"],"firms":["`+firmA+`"]}}`,
		`{"effect":"allow","note":"retail offers","match":{"sectors":["retail"],"purposes":["Marketing"],"jurisdictions":["GB"]},
		  "constraints":{"max_duration":"P90D","max_retention":"P1Y","max_frequency":{"max":10,"per":"P1D"},
		  "no_onward_transfer":true,"min_compensation":{"currency":"GBP","minor":250},
		  "valid_from":"2026-01-01T01:00:00+01:00","valid_until":"2027-01-01T00:00:00Z"}}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Terms{Format: broker.TermsFormat, Rules: []broker.TermsRule{
		{Effect: broker.EffectDeny, Match: broker.TermsMatch{Categories: []string{"Biometric", "Health"}}},
		{Effect: broker.EffectAsk, Match: broker.TermsMatch{Purposes: []string{"DirectMarketing"}, Firms: []broker.FirmID{firmA}}},
		{Effect: broker.EffectAllow, Note: "retail offers",
			Match: broker.TermsMatch{Sectors: []string{"retail"}, Purposes: []string{"Marketing"}, Jurisdictions: []string{"GB"}},
			Constraints: broker.TermsConstraint{
				MaxDuration: broker.MustParseDuration("P90D"), MaxRetention: broker.MustParseDuration("P1Y"),
				MaxFrequency:     broker.Frequency{Max: 10, Per: broker.MustParseDuration("P1D")},
				NoOnwardTransfer: true, MinCompensation: &broker.Money{Currency: "GBP", Minor: 250},
				ValidFrom:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				ValidUntil: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
			}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  []byte
		want string // substring of the error
	}{
		{"not json", []byte(`{`), "not JSON"},
		{"not utf8", []byte("{\"format\":\"\xff\"}"), "not valid UTF-8"},
		{"too large", []byte(`{"format":"` + strings.Repeat("x", terms.MaxDocumentBytes) + `"}`), "larger than"},
		{"wrong format", []byte(`{"format":"steward.terms/v9","rules":[]}`), "format"},
		{"no rules", []byte(`{"format":"steward.terms/v1"}`), "rules"},
		{"unknown top field", []byte(`{"format":"steward.terms/v1","rules":[],"extra":1}`), "extra"},
		{"unknown rule field", doc(`{"effect":"allow"}`, `{"effect":"allow","colour":"red"}`), "rule 2: "},
		{"bad effect", doc(`{"effect":"maybe"}`), "rule 1: effect: "},
		{"unknown category", doc(`{"effect":"deny"}`, `{"effect":"allow","match":{"categories":["Contact","Shoes"]}}`), `rule 2: unknown category "Shoes"`},
		{"unknown purpose", doc(`{"effect":"ask","match":{"purposes":["Mischief"]}}`), `rule 1: unknown purpose "Mischief"`},
		{"bad sector", doc(`{"effect":"ask","match":{"sectors":["piracy"]}}`), "rule 1: match.sectors[0]: "},
		{"bad firm id", doc(`{"effect":"ask","match":{"firms":["acme"]}}`), "rule 1: match.firms[0]: "},
		{"bad duration", doc(`{"effect":"allow","constraints":{"max_duration":"90 days"}}`), "rule 1: constraints.max_duration: must be an ISO 8601 duration"},
		{"empty duration", doc(`{"effect":"allow","constraints":{"max_duration":"P"}}`), "rule 1"},
		{"bad frequency", doc(`{"effect":"allow","constraints":{"max_frequency":{"max":0,"per":"P1D"}}}`), "rule 1: constraints.max_frequency.max: "},
		{"bad date", doc(`{"effect":"allow","constraints":{"valid_from":"yesterday"}}`), "rule 1: constraints.valid_from: "},
		{"window backwards", doc(`{"effect":"allow","constraints":{"valid_from":"2027-01-01T00:00:00Z","valid_until":"2026-01-01T00:00:00Z"}}`), "rule 1: valid_from must be before valid_until"},
		{"deny with constraint", doc(`{"effect":"deny","constraints":{"max_duration":"P1D"}}`), "rule 1: a deny rule refuses outright"},
		{"duplicate list items", doc(`{"effect":"ask","match":{"purposes":["Marketing","Marketing"]}}`), "rule 1: match.purposes: "},
		{"trailing data", append(doc(`{"effect":"ask"}`), []byte(` {}`)...), "not JSON"},
		{"allow shadowed by later deny", doc(
			`{"effect":"allow","match":{"purposes":["DirectMarketing"],"categories":["EmailAddress"]}}`,
			`{"effect":"deny","match":{"purposes":["Marketing"]}}`),
			"rule 1: this allow never takes effect, because rule 2 refuses everything it covers"},
		{"allow shadowed by earlier deny", doc(
			`{"effect":"deny","match":{"categories":["Contact"]}}`,
			`{"effect":"allow","match":{"categories":["EmailAddress"],"sectors":["retail"]}}`),
			"rule 2: this allow never takes effect, because rule 1 refuses everything it covers"},
		{"ask shadowed by earlier allow", doc(
			`{"effect":"allow","match":{"sectors":["retail"]}}`,
			`{"effect":"ask","match":{"sectors":["retail"],"purposes":["Marketing"]}}`),
			"rule 2: this ask never takes effect, because rule 1 comes first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := terms.Parse(tc.doc)
			if !errors.Is(err, broker.ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// Rules that look alike but are not shadowed must be accepted.
func TestParseAcceptsPartialOverlaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  []byte
	}{
		{"deny narrower than allow", doc(
			`{"effect":"allow","match":{"categories":["Contact"]}}`,
			`{"effect":"deny","match":{"categories":["EmailAddress"]}}`)},
		{"deny for one sector", doc(
			`{"effect":"deny","match":{"sectors":["media"]}}`,
			`{"effect":"allow"}`)},
		{"deny for a while", doc(
			`{"effect":"deny","constraints":{"valid_until":"2027-01-01T00:00:00Z"}}`,
			`{"effect":"allow"}`)},
		{"specific allow before general ask", doc(
			`{"effect":"allow","match":{"purposes":["DirectMarketing"]}}`,
			`{"effect":"ask","match":{"purposes":["Marketing"]}}`)},
		// A request for Marketing reaches the ask but not the allow.
		{"ask of child after allow of child", doc(
			`{"effect":"allow","match":{"purposes":["DirectMarketing"]}}`,
			`{"effect":"ask","match":{"purposes":["DirectMarketing"],"categories":["Age"]}}`)},
		{"firm-specific and sector rules", doc(
			`{"effect":"allow","match":{"firms":["`+firmA+`"]}}`,
			`{"effect":"ask","match":{"sectors":["retail"]}}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := terms.Parse(tc.doc); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestCanonicalAndHash(t *testing.T) {
	a, err := terms.NewVersion("cus_x", 1, doc(`{"effect":"allow","match":{"purposes":["Marketing","AcademicResearch"]},"constraints":{"valid_from":"2026-01-01T01:00:00+01:00"}}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := terms.NewVersion("cus_x", 2, []byte(` {"rules":[{"constraints":{"valid_from":"2026-01-01T00:00:00Z"},"match":{"purposes":["AcademicResearch","Marketing"]},"effect":"allow"}],
		"format":"steward.terms/v1"}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash || string(a.Document) != string(b.Document) {
		t.Errorf("same terms, different canonical forms:\n%s %s\n%s %s", a.Document, a.Hash, b.Document, b.Hash)
	}
	const want = `{"format":"steward.terms/v1","rules":[{"effect":"allow","match":{"purposes":["AcademicResearch","Marketing"]},"constraints":{"valid_from":"2026-01-01T00:00:00Z"}}]}`
	if string(a.Document) != want {
		t.Errorf("canonical form\n got %s\nwant %s", a.Document, want)
	}
	if a.Hash != broker.HashDocument([]byte(want)) {
		t.Errorf("hash %s is not the hash of the canonical form", a.Hash)
	}
	// The canonical form parses back to itself.
	again, err := terms.NewVersion("cus_x", 3, a.Document, time.Now())
	if err != nil || again.Hash != a.Hash {
		t.Errorf("canonical form does not round-trip: %v %s", err, again.Hash)
	}
	c, err := terms.NewVersion("cus_x", 3, doc(`{"effect":"allow","match":{"purposes":["Marketing"]}}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash == a.Hash {
		t.Error("different terms, same hash")
	}
}

func TestDecode(t *testing.T) {
	v, err := terms.NewVersion("cus_x", 1, doc(`{"effect":"ask","match":{"categories":["Age"]}}`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := terms.Decode(v.Document); err != nil {
		t.Errorf("Decode(canonical) = %v", err)
	}
	for _, bad := range []string{`{"format":"steward.terms/v1","rules":[],"x":1}`, `{"format":"x","rules":[]}`, `{"format":"steward.terms/v1","rules":[]}{}`} {
		if _, err := terms.Decode([]byte(bad)); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("Decode(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestODRL(t *testing.T) {
	tm, err := terms.Parse(doc(
		`{"effect":"deny","match":{"categories":["Health"]}}`,
		`{"effect":"ask","match":{"categories":["Contact","Age"],"purposes":["DirectMarketing"]}}`,
		`{"effect":"allow","match":{"sectors":["retail"],"purposes":["Marketing"],"jurisdictions":["GB"],"firms":["`+firmA+`"]},
		  "constraints":{"max_duration":"P90D","max_retention":"P1Y","max_frequency":{"max":10,"per":"P1D"},
		  "no_onward_transfer":true,"min_compensation":{"currency":"GBP","minor":250},
		  "valid_from":"2026-01-01T00:00:00Z","valid_until":"2027-01-01T00:00:00Z"}}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	out, err := terms.ODRL(tm, "urn:steward:terms:sha256:abc", "urn:steward:customer:psn_x")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Context    []any  `json:"@context"`
		Type       string `json:"@type"`
		UID        string `json:"uid"`
		Permission []struct {
			UID, Target, Action string
			Constraint          []struct{ LeftOperand, Operator string }
			Duty                []struct{ Action string }
		} `json:"permission"`
		Prohibition []struct{ UID, Target, Action string } `json:"prohibition"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Context[0] != "http://www.w3.org/ns/odrl.jsonld" || got.Type != "Set" {
		t.Errorf("context %v type %s", got.Context, got.Type)
	}
	type rule struct{ UID, Target, Action string }
	var prohibitions []rule
	for _, p := range got.Prohibition {
		prohibitions = append(prohibitions, rule(p))
	}
	wantProhibitions := []rule{
		{"urn:steward:terms:sha256:abc#rule-1", "pd:Health", "use"},
		{"urn:steward:terms:sha256:abc#rule-3-onward", "steward:AllPersonalData", "distribute"},
	}
	if diff := cmp.Diff(wantProhibitions, prohibitions); diff != "" {
		t.Errorf("prohibitions (-want +got):\n%s", diff)
	}
	if len(got.Permission) != 3 {
		t.Fatalf("%d permissions, want 3 (two targets of rule 2, one of rule 3)", len(got.Permission))
	}
	if p := got.Permission[0]; p.Target != "pd:Age" || p.Duty[0].Action != "obtainConsent" {
		t.Errorf("ask rule as %+v", p)
	}
	p := got.Permission[2]
	var ops, duties []string
	for _, c := range p.Constraint {
		ops = append(ops, c.LeftOperand+" "+c.Operator)
	}
	for _, d := range p.Duty {
		duties = append(duties, d.Action)
	}
	wantOps := []string{"purpose isAnyOf", "recipient isAnyOf", "steward:sector isAnyOf", "spatial isAnyOf",
		"elapsedTime lteq", "count lteq", "timeInterval eq", "dateTime gteq", "dateTime lt"}
	if diff := cmp.Diff(wantOps, ops); diff != "" {
		t.Errorf("constraints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"delete", "compensate"}, duties); diff != "" {
		t.Errorf("duties (-want +got):\n%s", diff)
	}
}

func TestSchemaCompiles(t *testing.T) {
	if _, err := terms.Schema(); err != nil {
		t.Fatal(err)
	}
}
