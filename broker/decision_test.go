package broker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
)

func record() broker.DecisionRecord {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	req := broker.DataRequest{Scope: broker.Scope{Categories: []string{"EmailAddress", "Age"}, Purpose: "Marketing",
		Duration: broker.MustParseDuration("P1Y"), Fields: map[string][]string{"EmailAddress": {"primary", "work"}}}}
	d := broker.Decision{Kind: broker.DecisionConsent, Effect: broker.EffectAllow,
		Scope:     broker.Scope{Categories: []string{"EmailAddress"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P90D")},
		Reasons:   []broker.Reason{{Source: broker.ReasonTerms, Rule: 2, Text: "Your rule 2 allows it."}},
		TermsHash: "sha256:t", PolicyHash: "sha256:p", DecidedAt: at}
	return broker.NewDecisionRecord("cus_x", "firm_x", "", req, d)
}

func TestDecisionRecordHashIsStable(t *testing.T) {
	r := record()
	h, err := r.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Fatalf("hash %q", h)
	}
	// A record read back from a store: JSON round trip, microsecond
	// precision, UTC, lists in another order, empty lists as nil.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back broker.DecisionRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	back.Decision.DecidedAt = back.Decision.DecidedAt.UTC().Truncate(time.Microsecond)
	back.Request.Scope.Categories = []string{"Age", "EmailAddress"}
	back.Request.Scope.Fields["EmailAddress"] = []string{"work", "primary"}
	if got, err := back.Hash(); err != nil || got != h {
		t.Errorf("hash after a store round trip = %s, %v; want %s", got, err, h)
	}
	// The hash does not change the record it hashes.
	if r.Request.Scope.Categories[0] != "EmailAddress" {
		t.Error("Hash sorted the caller's slice")
	}
}

func TestDecisionRecordHashCoversEveryField(t *testing.T) {
	base, err := record().Hash()
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*broker.DecisionRecord){
		"effect":      func(r *broker.DecisionRecord) { r.Decision.Effect = broker.EffectDeny },
		"reason":      func(r *broker.DecisionRecord) { r.Decision.Reasons[0].Text = "Changed." },
		"terms hash":  func(r *broker.DecisionRecord) { r.Decision.TermsHash = "sha256:u" },
		"policy hash": func(r *broker.DecisionRecord) { r.Decision.PolicyHash = "sha256:q" },
		"time":        func(r *broker.DecisionRecord) { r.Decision.DecidedAt = r.Decision.DecidedAt.Add(time.Second) },
		"scope":       func(r *broker.DecisionRecord) { r.Decision.Scope.Duration = broker.MustParseDuration("P30D") },
		"request":     func(r *broker.DecisionRecord) { r.Request.OnwardTransfer = true },
		"firm":        func(r *broker.DecisionRecord) { r.FirmID = "firm_y" },
		"consent":     func(r *broker.DecisionRecord) { r.ConsentID = "con_y" },
	} {
		r := record()
		r.Decision.Reasons = append([]broker.Reason(nil), r.Decision.Reasons...)
		change(&r)
		if h, err := r.Hash(); err != nil || h == base {
			t.Errorf("changing the %s left the hash at %s (%v)", name, h, err)
		}
	}
}

func TestSealDecision(t *testing.T) {
	r := record()
	sealed, err := broker.SealDecision(r)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if string(sealed.Canonical()) != string(raw) || sealed.Hash() != h || sealed.Hash() != broker.HashDocument(sealed.Canonical()) {
		t.Errorf("sealed %s as %s; the record is %s, hashed %s", sealed.Canonical(), sealed.Hash(), raw, h)
	}
	if diff := cmp.Diff(r, sealed.Record()); diff != "" {
		t.Errorf("sealed record (-want +got):\n%s", diff)
	}
	// The zero value seals nothing: a store refuses it.
	if zero := (broker.SealedDecision{}); len(zero.Canonical()) != 0 || zero.Hash() != "" {
		t.Errorf("the zero SealedDecision has %q hashed %q", zero.Canonical(), zero.Hash())
	}
}

// BenchmarkSealDecision is what each Data API fetch spends sealing its
// access decision record (once; before SealDecision, twice).
func BenchmarkSealDecision(b *testing.B) {
	r := record()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := broker.SealDecision(r); err != nil {
			b.Fatal(err)
		}
	}
}
