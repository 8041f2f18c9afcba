package policy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
)

func TestAccessDecision(t *testing.T) {
	e := newEngine(t)
	v1 := version(t, 1, `{"effect":"allow","match":{"purposes":["Marketing"]}}`)
	granted := broker.Scope{Categories: []string{"Contact", "PurchasesAndSpendingHabit"}, Fields: map[string][]string{"PurchasesAndSpendingHabit": {"merchant", "total"}},
		Purpose: "Marketing", Duration: broker.MustParseDuration("P30D"), Frequency: broker.Frequency{Max: 3, Per: broker.MustParseDuration("P1D")}}
	decided := now.Add(-24 * time.Hour)
	live := grant(t, firmA, granted, decided)
	revoked, _, err := live.Revoke(now.Add(-time.Hour), "customer", "changed my mind")
	if err != nil {
		t.Fatal(err)
	}
	suspended := firmA
	suspended.Status = broker.FirmSuspended
	american := firmA
	american.Jurisdiction = "US"
	minor := customer
	minor.Minor = true
	day := broker.MustParseDuration("P1D")

	for _, tc := range []struct {
		name     string
		customer broker.Customer
		firm     broker.Firm
		consent  broker.Consent
		explicit bool
		terms    broker.TermsVersion
		cats     []string
		fields   map[string][]string
		purpose  string
		counts   map[broker.Duration]int
		at       time.Time
		effect   broker.Effect
		reason   string
	}{
		{name: "live consent", effect: broker.EffectAllow, reason: "You agreed on 28 February 2026 at 12:00 UTC to share Contact details, Purchase history for marketing with this firm until 30 March 2026 at 12:00 UTC."},
		{name: "child of a granted category", cats: []string{"EmailAddress"}, purpose: "DirectMarketing", effect: broker.EffectAllow},
		{name: "revoked", consent: revoked, effect: broker.EffectDeny, reason: "This consent is revoked, so nothing may be shared under it."},
		{name: "expires exactly now", at: live.ExpiresAt, effect: broker.EffectDeny, reason: "This consent expired on 30 March 2026 at 12:00 UTC."},
		{name: "a nanosecond before expiry", at: live.ExpiresAt.Add(-time.Nanosecond), effect: broker.EffectAllow},
		{name: "category outside scope", cats: []string{"Location"}, effect: broker.EffectDeny, reason: "You did not agree to share Location history with this firm."},
		{name: "fields within scope", cats: []string{"PurchasesAndSpendingHabit"}, fields: map[string][]string{"PurchasesAndSpendingHabit": {"total"}}, effect: broker.EffectAllow},
		{name: "field outside scope", cats: []string{"PurchasesAndSpendingHabit"}, fields: map[string][]string{"PurchasesAndSpendingHabit": {"total", "items"}},
			effect: broker.EffectDeny, reason: "You agreed to share only merchant, total of your purchase history, not items."},
		{name: "other purpose", purpose: "CommercialResearch", effect: broker.EffectDeny, reason: "You agreed to share for marketing, not for commercial research."},
		{name: "frequency limit reached", counts: map[broker.Duration]int{day: 3}, effect: broker.EffectDeny, reason: "This firm has reached the limit you agreed to: at most 3 times a day."},
		{name: "frequency count missing", counts: map[broker.Duration]int{}, effect: broker.EffectDeny, reason: "Steward could not count"},
		{name: "suspended firm", firm: suspended, effect: broker.EffectDeny, reason: "This firm's account is suspended"},
		{name: "cross-border", firm: american, effect: broker.EffectDeny, reason: "from GB to a firm in US"},
		{name: "minor", customer: minor, effect: broker.EffectDeny, reason: "under the age of digital consent"},
		{name: "stricter later terms win", terms: version(t, 2, `{"effect":"allow","match":{"purposes":["Marketing"]}}`, `{"effect":"deny","match":{"categories":["PurchasesAndSpendingHabit"]}}`),
			cats: []string{"PurchasesAndSpendingHabit"}, fields: map[string][]string{"PurchasesAndSpendingHabit": {"total"}},
			effect: broker.EffectDeny, reason: "Your current rule 2 refuses sharing your purchase history for any purpose with any firm."},
		{name: "later terms shorten the consent", terms: version(t, 2, `{"effect":"allow","constraints":{"max_duration":"PT12H"}}`),
			effect: broker.EffectDeny, reason: "Your current rule 1 allows this for at most 12 hours, and this consent is older than that."},
		{name: "later terms limit frequency", terms: version(t, 2, `{"effect":"allow","constraints":{"max_frequency":{"max":1,"per":"PT1H"}}}`),
			counts: map[broker.Duration]int{day: 1, broker.MustParseDuration("PT1H"): 1},
			effect: broker.EffectDeny, reason: "Your rule 1 lets a firm fetch your data at most once an hour, and this firm has reached that."},
		{name: "later terms ask, consent was automatic", terms: version(t, 2), explicit: false, effect: broker.EffectDeny,
			reason: "this consent was given automatically, so the firm must ask again"},
		{name: "later terms ask, customer answered", terms: version(t, 2), explicit: true, effect: broker.EffectAllow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := policy.AccessRequest{Customer: tc.customer, Firm: tc.firm, Consent: tc.consent, Explicit: tc.explicit, Terms: tc.terms,
				Categories: tc.cats, Fields: tc.fields, Purpose: tc.purpose, Counts: tc.counts, Now: tc.at}
			if q.Customer.Jurisdiction == "" {
				q.Customer = customer
			}
			if q.Firm.ID == "" {
				q.Firm = firmA
			}
			if q.Consent.ID == "" {
				q.Consent = live
			}
			if q.Terms.Hash == "" {
				q.Terms = v1
			}
			if q.Categories == nil {
				q.Categories = []string{"Contact"}
			}
			if q.Purpose == "" {
				q.Purpose = "Marketing"
			}
			if q.Counts == nil {
				q.Counts = map[broker.Duration]int{day: 0}
			}
			if q.Now.IsZero() {
				q.Now = now
			}
			d, err := e.Access(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if d.Effect != tc.effect {
				t.Errorf("effect = %s, want %s; reasons %v", d.Effect, tc.effect, d.Reasons)
			}
			if tc.reason != "" && !hasReason(d, tc.reason) {
				t.Errorf("no reason contains %q: %v", tc.reason, d.Reasons)
			}
			if d.Effect == broker.EffectAllow && !slices.Equal(d.Scope.Categories, q.Categories) {
				t.Errorf("allowed scope %v, want the request's %v", d.Scope.Categories, q.Categories)
			}
			if d.Kind != broker.DecisionAccess || d.TermsHash != q.Terms.Hash {
				t.Errorf("decision metadata %s %q", d.Kind, d.TermsHash)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	e := newEngine(t)
	c := grant(t, firmA, broker.Scope{Categories: []string{"Age"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P30D"),
		Frequency: broker.Frequency{Max: 3, Per: broker.MustParseDuration("P1D")}}, now)
	tv := version(t, 1, `{"effect":"allow","match":{"sectors":["media"]},"constraints":{"max_frequency":{"max":1,"per":"PT1H"}}}`,
		`{"effect":"allow","constraints":{"max_frequency":{"max":5,"per":"P1D"}}}`)
	got, err := e.Windows(c, tv)
	if err != nil {
		t.Fatal(err)
	}
	want := []broker.Duration{broker.MustParseDuration("P1D"), broker.MustParseDuration("PT1H")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Windows (-want +got):\n%s", diff)
	}
}

// The access plan is cached, so repeat one request on one engine and
// change one thing at a time: each change takes effect on the very next
// request, and undoing it restores the allow.
func TestAccessCacheNeverOutlivesAChange(t *testing.T) {
	e := newEngine(t)
	v1 := version(t, 1, `{"effect":"allow","match":{"purposes":["Marketing"]}}`)
	v2 := version(t, 2, `{"effect":"allow","match":{"purposes":["Marketing"]}}`, `{"effect":"deny","match":{"categories":["EmailAddress"]}}`)
	windowed := version(t, 3, `{"effect":"allow","match":{"purposes":["Marketing"]},"constraints":{"valid_until":"2026-03-01T13:00:00Z"}}`)
	granted := broker.Scope{Categories: []string{"Contact"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P30D")}
	live := grant(t, firmA, granted, now.Add(-24*time.Hour))
	revoked, _, err := live.Revoke(now.Add(-time.Minute), "customer", "no")
	if err != nil {
		t.Fatal(err)
	}
	base := policy.AccessRequest{Customer: customer, Firm: firmA, Consent: live, Explicit: false, Terms: v1,
		Categories: []string{"EmailAddress"}, Purpose: "DirectMarketing", Now: now}
	suspended := firmA
	suspended.Status = broker.FirmSuspended
	steps := []struct {
		name   string
		change func(q *policy.AccessRequest)
		effect broker.Effect
	}{
		{"allowed", func(*policy.AccessRequest) {}, broker.EffectAllow},
		{"revoked", func(q *policy.AccessRequest) { q.Consent = revoked }, broker.EffectDeny},
		{"allowed again", func(*policy.AccessRequest) {}, broker.EffectAllow},
		{"firm suspended", func(q *policy.AccessRequest) { q.Firm = suspended }, broker.EffectDeny},
		{"expired", func(q *policy.AccessRequest) { q.Now = live.ExpiresAt }, broker.EffectDeny},
		{"stricter terms", func(q *policy.AccessRequest) { q.Terms = v2 }, broker.EffectDeny},
		{"back to the first terms", func(*policy.AccessRequest) {}, broker.EffectAllow},
		{"rule in force", func(q *policy.AccessRequest) { q.Terms = windowed }, broker.EffectAllow},
		{"rule lapsed", func(q *policy.AccessRequest) { q.Terms, q.Now = windowed, now.Add(time.Hour) }, broker.EffectDeny},
	}
	for _, s := range steps {
		q := base
		s.change(&q)
		d, err := e.Access(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if d.Effect != s.effect || d.TermsHash != q.Terms.Hash || d.PolicyHash != e.PolicyHash() {
			t.Errorf("%s: %s under terms %s policy %s, want %s; reasons %v", s.name, d.Effect, d.TermsHash, d.PolicyHash, s.effect, d.Reasons)
		}
	}
	// A reload takes effect on the next request too.
	if err := e.Reload(t.Context(), policy.Modules{"shut.rego": []byte("package regulatory.v1\n\ndeny contains {\"text\": \"The regulator has stopped all sharing.\"} if input.firm.sector == \"retail\"\n")}); err != nil {
		t.Fatal(err)
	}
	if d, err := e.Access(t.Context(), base); err != nil || d.Effect != broker.EffectDeny || !hasReason(d, "stopped all sharing") {
		t.Errorf("after reload: %v %s %v", err, d.Effect, d.Reasons)
	}
	if err := e.Reload(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if d, err := e.Access(t.Context(), base); err != nil || d.Effect != broker.EffectAllow {
		t.Errorf("after reloading the built-in policy: %v %s %v", err, d.Effect, d.Reasons)
	}
}
