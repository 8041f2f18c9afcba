package policy_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
)

// benchTaxonomy is the built-in taxonomy padded with synthetic entries to
// 100 categories and 100 purposes, in trees three deep. The synthetic
// names exist only here.
func benchTaxonomy() policy.Taxonomy {
	tax := policy.DefaultTaxonomy()
	tax.Categories = slices.Clone(tax.Categories)
	tax.Purposes = slices.Clone(tax.Purposes)
	for i := 0; len(tax.Categories) < 100; i++ {
		c := broker.Category{Name: fmt.Sprintf("SynthCategory%03d", i), Label: fmt.Sprintf("Synthetic category %d", i)}
		if i%3 != 0 {
			c.Parent = fmt.Sprintf("SynthCategory%03d", i-1)
		}
		tax.Categories = append(tax.Categories, c)
	}
	for i := 0; len(tax.Purposes) < 100; i++ {
		p := broker.Purpose{Name: fmt.Sprintf("SynthPurpose%03d", i), Label: fmt.Sprintf("Synthetic purpose %d", i)}
		if i%3 != 0 {
			p.Parent = fmt.Sprintf("SynthPurpose%03d", i-1)
		}
		tax.Purposes = append(tax.Purposes, p)
	}
	return tax
}

// benchTerms is a customer's 50 rules: mostly about synthetic names and
// other sectors, so a request walks nearly all of them before rule 48
// (an allow for Marketing with limits) decides; rule 49 is a deny of a
// category the request does not touch.
func benchTerms() broker.TermsVersion {
	t := broker.Terms{Format: broker.TermsFormat}
	effects := []broker.Effect{broker.EffectAllow, broker.EffectAsk, broker.EffectDeny}
	for i := range 47 {
		r := broker.TermsRule{Effect: effects[i%3]}
		r.Match.Categories = []string{fmt.Sprintf("SynthCategory%03d", i), fmt.Sprintf("SynthCategory%03d", i+20)}
		r.Match.Purposes = []string{fmt.Sprintf("SynthPurpose%03d", i)}
		if i%2 == 0 {
			r.Match.Sectors = []string{"media", "telecom"}
		}
		if r.Effect != broker.EffectDeny {
			r.Constraints.MaxDuration = broker.Duration{Days: 30 + i}
		}
		t.Rules = append(t.Rules, r)
	}
	t.Rules = append(t.Rules,
		broker.TermsRule{Effect: broker.EffectAllow, Match: broker.TermsMatch{Purposes: []string{"Marketing"}, Sectors: []string{"retail"}},
			Constraints: broker.TermsConstraint{MaxDuration: broker.Duration{Days: 90}, MaxFrequency: broker.Frequency{Max: 10, Per: broker.Duration{Days: 1}},
				ValidUntil: now.AddDate(5, 0, 0)}},
		broker.TermsRule{Effect: broker.EffectDeny, Match: broker.TermsMatch{Categories: []string{"Health", "Location"}}},
		broker.TermsRule{Effect: broker.EffectAsk},
	)
	doc, err := json.Marshal(t)
	if err != nil {
		panic(err)
	}
	return broker.TermsVersion{Document: doc, Hash: broker.HashDocument(doc)}
}

func benchEngine(b *testing.B) *policy.Engine { return benchEngineWith(b, policy.Config{}) }

func benchEngineWith(b *testing.B, cfg policy.Config) *policy.Engine {
	tax := benchTaxonomy()
	cfg.Taxonomy = &tax
	e, err := policy.New(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// latencies records, per decision, its wall time and the CPU time of the
// thread that made it, and reports p50 and p99 of both (µs) and decisions
// per second of wall time and of CPU time.
type latencies struct {
	wall, cpu []time.Duration
	ok        bool
}

func newLatencies(b *testing.B) *latencies {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	_, ok := threadCPU()
	return &latencies{ok: ok}
}

// measure runs one decision and records its latencies.
func (l *latencies) measure(decide func()) {
	c0, _ := threadCPU()
	start := time.Now()
	decide()
	l.wall = append(l.wall, time.Since(start))
	c1, _ := threadCPU()
	l.cpu = append(l.cpu, c1-c0)
}

// calibrate reports how long SHA-256 of 1 KiB takes on this thread right
// now (about 0.5 µs on an idle modern core with SHA extensions), so that
// figures from a shared, busy machine can be read in proportion.
func calibrate(b *testing.B) {
	buf := make([]byte, 1024)
	c0, ok := threadCPU()
	start := time.Now()
	const n = 2000
	for range n {
		sha256.Sum256(buf)
	}
	wall := time.Since(start)
	if c1, _ := threadCPU(); ok {
		wall = c1 - c0
	}
	b.ReportMetric(float64(wall.Nanoseconds())/n, "sha256-1KiB-ns")
}

func (l *latencies) report(b *testing.B) {
	report := func(d []time.Duration, unit string) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		var total time.Duration
		for _, x := range d {
			total += x
		}
		at := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / 1e3 }
		b.ReportMetric(at(0.50), "p50-"+unit+"-µs")
		b.ReportMetric(at(0.99), "p99-"+unit+"-µs")
		b.ReportMetric(float64(len(d))/total.Seconds(), "decisions/"+unit+"-s")
	}
	calibrate(b)
	report(l.wall, "wall")
	if l.ok {
		report(l.cpu, "cpu")
	}
}

func BenchmarkConsentDecision(b *testing.B) {
	e := benchEngine(b)
	q := policy.ConsentRequest{Customer: customer, Firm: firmA, Terms: benchTerms(), Now: now,
		Request: broker.DataRequest{Scope: broker.Scope{Categories: []string{"EmailAddress", "PurchasesAndSpendingHabit", "SynthCategory050"},
			Purpose: "DirectMarketing", Duration: broker.Duration{Years: 1}, Frequency: broker.Frequency{Max: 100, Per: broker.Duration{Days: 1}}}}}
	d, err := e.Consent(b.Context(), q)
	if err != nil {
		b.Fatal(err)
	}
	if d.Effect != broker.EffectAllow || len(d.Scope.Categories) != 3 {
		b.Fatalf("benchmark decision is %s %v %v", d.Effect, d.Scope, d.Reasons)
	}
	lat := newLatencies(b)
	b.ReportAllocs()
	for b.Loop() {
		lat.measure(func() {
			if _, err := e.Consent(b.Context(), q); err != nil {
				b.Fatal(err)
			}
		})
	}
	lat.report(b)
}

func BenchmarkAccessDecision(b *testing.B) { benchmarkAccess(b, policy.Config{}, false) }

// BenchmarkAccessDecisionPlanMiss is the first request for some data under
// a consent (or the first in a new rule window, or under new terms): the
// access plan is not cached, so every decision makes it. Two consents
// alternate over a cache of one.
func BenchmarkAccessDecisionPlanMiss(b *testing.B) {
	benchmarkAccess(b, policy.Config{PlanCacheSize: 1}, true)
}

func benchmarkAccess(b *testing.B, cfg policy.Config, miss bool) {
	e := benchEngineWith(b, cfg)
	tv := benchTerms()
	granted := broker.Scope{Categories: []string{"Contact", "PurchasesAndSpendingHabit"}, Purpose: "Marketing",
		Duration: broker.Duration{Days: 90}, Frequency: broker.Frequency{Max: 10, Per: broker.Duration{Days: 1}}}
	c := grant(b, firmA, granted, now.Add(-24*time.Hour))
	other := grant(b, firmA, granted, now.Add(-24*time.Hour))
	q := policy.AccessRequest{Customer: customer, Firm: firmA, Consent: c, Explicit: true, Terms: tv,
		Categories: []string{"EmailAddress", "PurchasesAndSpendingHabit"}, Purpose: "DirectMarketing",
		Counts: map[broker.Duration]int{{Days: 1}: 4}, Now: now}
	d, err := e.Access(b.Context(), q)
	if err != nil {
		b.Fatal(err)
	}
	if d.Effect != broker.EffectAllow {
		b.Fatalf("benchmark decision is %s %v", d.Effect, d.Reasons)
	}
	qs := []policy.AccessRequest{q, q}
	if miss {
		qs[1].Consent = other
	}
	lat := newLatencies(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := qs[i%2]
		i++
		lat.measure(func() {
			if _, err := e.Access(b.Context(), q); err != nil {
				b.Fatal(err)
			}
		})
	}
	lat.report(b)
}
