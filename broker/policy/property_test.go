package policy_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
)

// randomTerms draws a terms document of up to 8 rules over the built-in
// taxonomy. It is not checked for shadowed rules: the engine must cope
// with any stored document.
func randomTerms(r *rand.Rand) broker.Terms {
	pick := func(names []string, max int) []string {
		var out []string
		for range r.IntN(max + 1) {
			out = append(out, names[r.IntN(len(names))])
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	var cats, purps []string
	for _, c := range broker.Categories {
		cats = append(cats, c.Name)
	}
	for _, p := range broker.Purposes {
		purps = append(purps, p.Name)
	}
	effects := []broker.Effect{broker.EffectAllow, broker.EffectAllow, broker.EffectDeny, broker.EffectAsk}
	durations := []string{"P1D", "P7D", "P30D", "P90D", "P1Y", "PT12H"}
	t := broker.Terms{Format: broker.TermsFormat}
	for range r.IntN(9) {
		rule := broker.TermsRule{Effect: effects[r.IntN(len(effects))]}
		rule.Match.Categories = pick(cats, 2)
		rule.Match.Purposes = pick(purps, 2)
		if r.IntN(4) == 0 {
			rule.Match.Sectors = pick([]string{"retail", "media"}, 1)
		}
		if rule.Effect != broker.EffectDeny {
			if r.IntN(2) == 0 {
				rule.Constraints.MaxDuration = broker.MustParseDuration(durations[r.IntN(len(durations))])
			}
			if r.IntN(3) == 0 {
				rule.Constraints.MaxFrequency = broker.Frequency{Max: 1 + r.IntN(10), Per: broker.MustParseDuration(durations[r.IntN(len(durations))])}
			}
			rule.Constraints.NoOnwardTransfer = r.IntN(5) == 0
		}
		if r.IntN(5) == 0 {
			rule.Constraints.ValidFrom = now.Add(time.Duration(r.IntN(3)-1) * time.Hour)
		}
		t.Rules = append(t.Rules, rule)
	}
	return t
}

func randomRequest(r *rand.Rand) broker.DataRequest {
	var s broker.Scope
	for range 1 + r.IntN(4) {
		s.Categories = append(s.Categories, broker.Categories[r.IntN(len(broker.Categories))].Name)
	}
	s.Purpose = broker.Purposes[r.IntN(len(broker.Purposes))].Name
	s.Duration = broker.Duration{Days: 1 + r.IntN(800)}
	if r.IntN(2) == 0 {
		s.Frequency = broker.Frequency{Max: 1 + r.IntN(50), Per: broker.Duration{Days: 1 + r.IntN(7)}}
	}
	s.Normalize()
	return broker.DataRequest{Scope: s, OnwardTransfer: r.IntN(4) == 0}
}

// oracle is an independent, plain-Go reading of docs/terms.md: what a rule
// says about one category of a request.
func applies(rule broker.TermsRule, firm broker.Firm, purpose, category string, at time.Time) bool {
	c := rule.Constraints
	if (!c.ValidFrom.IsZero() && at.Before(c.ValidFrom)) || (!c.ValidUntil.IsZero() && !at.Before(c.ValidUntil)) {
		return false
	}
	if len(rule.Match.Sectors) > 0 && !slices.Contains(rule.Match.Sectors, firm.Sector) {
		return false
	}
	if len(rule.Match.Firms) > 0 && !slices.Contains(rule.Match.Firms, firm.ID) {
		return false
	}
	if len(rule.Match.Jurisdictions) > 0 && !slices.Contains(rule.Match.Jurisdictions, firm.Jurisdiction) {
		return false
	}
	overlap := rule.Effect != broker.EffectAllow
	match := func(names []string, x string, covers func(string, string) bool) bool {
		if len(names) == 0 {
			return true
		}
		for _, n := range names {
			if covers(n, x) || (overlap && covers(x, n)) {
				return true
			}
		}
		return false
	}
	return match(rule.Match.Categories, category, broker.CategoryCovers) && match(rule.Match.Purposes, purpose, broker.PurposeCovers)
}

// TestGrantNeverWiderThanRequestOrTerms: for random terms and requests, a
// granted scope is never wider than the request, never holds a category a
// deny rule touches, and on allow every category is allowed by the first
// applicable rule, within that rule's duration and frequency limits.
func TestGrantNeverWiderThanRequestOrTerms(t *testing.T) {
	e := newEngine(t)
	iterations := 2000
	if testing.Short() || raceEnabled {
		iterations = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	firms := []broker.Firm{firmA, {ID: "firm_bbbbbbbbbbbbbbbbbbbbbbbbbb", Sector: "media", Jurisdiction: "GB", Status: broker.FirmApproved}}
	counts := map[broker.Effect]int{}
	for i := range iterations {
		tm := randomTerms(r)
		doc, err := json.Marshal(tm)
		if err != nil {
			t.Fatal(err)
		}
		tv := broker.TermsVersion{Document: doc, Hash: broker.HashDocument(doc)}
		req := randomRequest(r)
		firm := firms[r.IntN(len(firms))]
		d, err := e.Consent(t.Context(), policy.ConsentRequest{Customer: customer, Firm: firm, Terms: tv, Request: req, Now: now})
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		counts[d.Effect]++
		if d.Effect == broker.EffectDeny {
			continue
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("iteration %d: terms %s\nrequest %+v\ndecision %+v\n"+format, append([]any{i, doc, req, d}, args...)...)
		}
		if !d.Scope.Within(req.Scope) {
			fail("granted scope is wider than the request")
		}
		if len(d.Scope.Categories) == 0 {
			fail("%s with no categories", d.Effect)
		}
		for _, c := range d.Scope.Categories {
			for n, rule := range tm.Rules {
				if rule.Effect == broker.EffectDeny && applies(rule, firm, req.Scope.Purpose, c, now) {
					fail("category %s is refused by rule %d", c, n+1)
				}
			}
			if d.Effect != broker.EffectAllow {
				continue
			}
			k := slices.IndexFunc(tm.Rules, func(rule broker.TermsRule) bool {
				return rule.Effect != broker.EffectDeny && applies(rule, firm, req.Scope.Purpose, c, now)
			})
			if k < 0 || tm.Rules[k].Effect != broker.EffectAllow {
				fail("category %s is allowed, but the first rule that applies is %d", c, k+1)
				continue
			}
			lim := tm.Rules[k].Constraints
			if !lim.MaxDuration.IsZero() && d.Scope.Duration.Approx() > lim.MaxDuration.Approx() {
				fail("duration longer than rule %d allows", k+1)
			}
			if lim.MaxFrequency.Max > 0 && !(broker.Scope{Purpose: d.Scope.Purpose, Frequency: d.Scope.Frequency}).Within(
				broker.Scope{Purpose: d.Scope.Purpose, Frequency: lim.MaxFrequency, Duration: d.Scope.Duration}) {
				fail("frequency higher than rule %d allows", k+1)
			}
			if lim.NoOnwardTransfer && req.OnwardTransfer {
				fail("allowed onward transfer against rule %d", k+1)
			}
		}
	}
	t.Logf("effects over %d random requests: %v", iterations, counts)
	for _, eff := range []broker.Effect{broker.EffectAllow, broker.EffectAsk, broker.EffectDeny} {
		if counts[eff] == 0 {
			t.Errorf("no %s decisions: the generator does not exercise the policy", eff)
		}
	}
}
