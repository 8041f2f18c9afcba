package policy_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
)

func TestConsentDecision(t *testing.T) {
	e := newEngine(t)
	allowMarketing := `{"effect":"allow","match":{"purposes":["Marketing"],"sectors":["retail"]},"constraints":{"max_duration":"P90D"}}`
	minor := customer
	minor.Minor = true
	suspended := firmA
	suspended.Status = broker.FirmSuspended
	american := firmA
	american.Jurisdiction = "US"
	german := firmA
	german.Jurisdiction = "DE"

	for _, tc := range []struct {
		name     string
		customer broker.Customer
		firm     broker.Firm
		terms    broker.TermsVersion
		request  broker.Scope
		at       time.Time
		effect   broker.Effect
		scope    *broker.Scope // checked when set
		reason   string        // one reason must contain it
	}{
		{
			name: "no terms asks", terms: broker.TermsVersion{},
			request: scope("Marketing", "P30D", "EmailAddress"), effect: broker.EffectAsk,
			reason: "None of your rules covers Email address for marketing by this firm, so you are asked.",
		},
		{
			name: "parent purpose covers child", terms: version(t, 1, allowMarketing),
			request: scope("DirectMarketing", "P1Y", "EmailAddress", "Age"), effect: broker.EffectAllow,
			scope:  &broker.Scope{Categories: []string{"Age", "EmailAddress"}, Purpose: "DirectMarketing", Duration: broker.MustParseDuration("P90D")},
			reason: "Your rule 1 allows sharing any of your data for marketing with retail firms for up to 90 days.",
		},
		{
			name:    "child purpose does not cover parent",
			terms:   version(t, 1, `{"effect":"allow","match":{"purposes":["DirectMarketing"]}}`),
			request: scope("Marketing", "P30D", "EmailAddress"), effect: broker.EffectAsk,
		},
		{
			name: "parent category covers child", terms: version(t, 1, `{"effect":"allow","match":{"categories":["Contact"]}}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress", "TelephoneNumber"), effect: broker.EffectAllow,
		},
		{
			name:    "later deny overrides allow",
			terms:   version(t, 1, allowMarketing, `{"effect":"deny","match":{"categories":["Location"]}}`),
			request: scope("Marketing", "P30D", "Location"), effect: broker.EffectDeny,
			reason: "Your rule 2 refuses sharing your location history for any purpose with any firm.",
		},
		{
			name:    "deny narrows the categories",
			terms:   version(t, 1, allowMarketing, `{"effect":"deny","match":{"categories":["Location"]}}`),
			request: scope("Marketing", "P30D", "Location", "EmailAddress"), effect: broker.EffectAllow,
			scope: &broker.Scope{Categories: []string{"EmailAddress"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P30D")},
		},
		{
			name:    "earlier ask decides before a later allow",
			terms:   version(t, 1, `{"effect":"ask","match":{"purposes":["DirectMarketing"]}}`, allowMarketing),
			request: scope("DirectMarketing", "P30D", "EmailAddress"), effect: broker.EffectAsk,
			reason: "Your rule 1 asks you first about sharing any of your data for direct marketing with any firm.",
		},
		{
			name: "unmatched sector asks", terms: version(t, 1, allowMarketing), firm: func() broker.Firm { f := firmA; f.Sector = "media"; return f }(),
			request: scope("Marketing", "P30D", "EmailAddress"), effect: broker.EffectAsk,
		},
		{
			name: "special category is never a standing allow", terms: version(t, 1, `{"effect":"allow"}`),
			request: scope("ServiceProvision", "P30D", "Health", "EmailAddress"), effect: broker.EffectAsk,
			scope:  &broker.Scope{Categories: []string{"EmailAddress", "Health"}, Purpose: "ServiceProvision", Duration: broker.MustParseDuration("P30D")},
			reason: "Health is a special category of personal data",
		},
		{
			name: "minor cannot share for marketing", customer: minor, terms: version(t, 1, allowMarketing),
			request: scope("PersonalisedAdvertising", "P30D", "Interest"), effect: broker.EffectDeny,
			reason: "The law does not allow sharing data for marketing by someone under the age of digital consent.",
		},
		{
			name: "minor may share for customer care", customer: minor, terms: version(t, 1, `{"effect":"allow","match":{"purposes":["CustomerCare"]}}`),
			request: scope("CustomerCare", "P30D", "EmailAddress"), effect: broker.EffectAllow,
		},
		{
			name: "cross-border outside the free-flow area", firm: american, terms: version(t, 1, `{"effect":"allow"}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectDeny,
			reason: "The law does not allow your data to be sent from GB to a firm in US.",
		},
		{
			name: "cross-border inside the free-flow area", firm: german, terms: version(t, 1, `{"effect":"allow"}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectAllow,
		},
		{
			name: "suspended firm", firm: suspended, terms: version(t, 1, `{"effect":"allow"}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectDeny,
			reason: "This firm is not approved to ask for data at the moment.",
		},
		{
			name:    "rule valid from exactly now applies",
			terms:   version(t, 1, `{"effect":"allow","constraints":{"valid_from":"2026-03-01T12:00:00Z"}}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectAllow,
		},
		{
			name: "rule valid from a moment later does not", at: now.Add(-time.Nanosecond),
			terms:   version(t, 1, `{"effect":"allow","constraints":{"valid_from":"2026-03-01T12:00:00Z"}}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectAsk,
		},
		{
			name:    "rule valid until exactly now no longer applies",
			terms:   version(t, 1, `{"effect":"allow","constraints":{"valid_until":"2026-03-01T12:00:00Z"}}`),
			request: scope("ServiceProvision", "P30D", "EmailAddress"), effect: broker.EffectAsk,
		},
		{
			name: "regulator caps marketing at a year", terms: version(t, 1, `{"effect":"allow","match":{"purposes":["Marketing"]}}`),
			request: scope("Marketing", "P2Y", "EmailAddress"), effect: broker.EffectAllow,
			scope:  &broker.Scope{Categories: []string{"EmailAddress"}, Purpose: "Marketing", Duration: broker.MustParseDuration("P365D")},
			reason: "The law allows consent for marketing to last at most 365 days.",
		},
		{
			name:    "frequency capped by the rule",
			terms:   version(t, 1, `{"effect":"allow","constraints":{"max_frequency":{"max":2,"per":"P1D"}}}`),
			request: broker.Scope{Categories: []string{"Age"}, Purpose: "ServiceProvision", Duration: broker.MustParseDuration("P30D"), Frequency: broker.Frequency{Max: 100, Per: broker.MustParseDuration("P1D")}},
			effect:  broker.EffectAllow,
			scope:   &broker.Scope{Categories: []string{"Age"}, Purpose: "ServiceProvision", Duration: broker.MustParseDuration("P30D"), Frequency: broker.Frequency{Max: 2, Per: broker.MustParseDuration("P1D")}},
			reason:  "Your rule 1 limits how often the firm may fetch your data to twice a day.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := policy.ConsentRequest{Customer: tc.customer, Firm: tc.firm, Terms: tc.terms, Request: broker.DataRequest{Scope: tc.request}, Now: tc.at}
			if q.Customer.Jurisdiction == "" {
				q.Customer = customer
			}
			if q.Firm.ID == "" {
				q.Firm = firmA
			}
			if q.Now.IsZero() {
				q.Now = now
			}
			d, err := e.Consent(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if d.Effect != tc.effect {
				t.Errorf("effect = %s, want %s; reasons %v", d.Effect, tc.effect, d.Reasons)
			}
			if tc.scope != nil {
				if diff := cmp.Diff(*tc.scope, d.Scope); diff != "" {
					t.Errorf("scope (-want +got):\n%s", diff)
				}
			}
			if tc.reason != "" && !hasReason(d, tc.reason) {
				t.Errorf("no reason contains %q: %v", tc.reason, d.Reasons)
			}
			if d.Effect != broker.EffectDeny && !d.Scope.Within(tc.request) {
				t.Errorf("scope %+v is wider than the request %+v", d.Scope, tc.request)
			}
			if d.Kind != broker.DecisionConsent || d.TermsHash != tc.terms.Hash || d.PolicyHash != e.PolicyHash() || !d.DecidedAt.Equal(q.Now) {
				t.Errorf("decision metadata %s %q %q %v", d.Kind, d.TermsHash, d.PolicyHash, d.DecidedAt)
			}
		})
	}
}

func TestConsentConditions(t *testing.T) {
	e := newEngine(t)
	tv := version(t, 1, `{"effect":"allow","constraints":{"max_retention":"P30D","no_onward_transfer":true,"min_compensation":{"currency":"GBP","minor":250}}}`)
	good := broker.DataRequest{Scope: scope("ServiceProvision", "P30D", "Age"), Retention: broker.MustParseDuration("P7D"),
		Compensation: &broker.Money{Currency: "GBP", Minor: 300}}
	for _, tc := range []struct {
		name   string
		change func(*broker.DataRequest)
		effect broker.Effect
		reason string
	}{
		{"all met", func(*broker.DataRequest) {}, broker.EffectAllow, ""},
		{"onward transfer", func(r *broker.DataRequest) { r.OnwardTransfer = true }, broker.EffectAsk,
			"Your rule 1 allows this only if the firm does not pass your data on to others, and this firm wants to."},
		{"retention too long", func(r *broker.DataRequest) { r.Retention = broker.MustParseDuration("P1Y") }, broker.EffectAsk,
			"Your rule 1 allows this only if the firm keeps your data for at most 30 days, and this firm wants to keep it for 1 year."},
		{"retention unsaid", func(r *broker.DataRequest) { r.Retention = broker.Duration{} }, broker.EffectAsk,
			"and this firm does not say how long it keeps it."},
		{"too little", func(r *broker.DataRequest) { r.Compensation = &broker.Money{Currency: "GBP", Minor: 99} }, broker.EffectAsk,
			"Your rule 1 asks for at least 2.50 GBP, and this request offers 0.99 GBP."},
		{"nothing offered", func(r *broker.DataRequest) { r.Compensation = nil }, broker.EffectAsk,
			"Your rule 1 asks for at least 2.50 GBP, and this request offers nothing."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.change(&r)
			d, err := e.Consent(t.Context(), policy.ConsentRequest{Customer: customer, Firm: firmA, Terms: tv, Request: r, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if d.Effect != tc.effect || (tc.reason != "" && !hasReason(d, tc.reason)) {
				t.Errorf("got %s %v, want %s with %q", d.Effect, d.Reasons, tc.effect, tc.reason)
			}
		})
	}
}

func TestConsentRefusesTamperedTerms(t *testing.T) {
	e := newEngine(t)
	tv := version(t, 1, `{"effect":"deny"}`)
	tv.Document = []byte(`{"format":"steward.terms/v1","rules":[{"effect":"allow"}]}`)
	_, err := e.Consent(t.Context(), policy.ConsentRequest{Customer: customer, Firm: firmA, Terms: tv,
		Request: broker.DataRequest{Scope: scope("Marketing", "P1D", "Age")}, Now: now})
	if err == nil {
		t.Fatal("terms whose document does not match their hash were used")
	}
}
