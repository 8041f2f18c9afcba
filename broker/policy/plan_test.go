package policy

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/stewardhq/steward/broker"
)

var planNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const unconfirmedText = "Steward could not confirm that this disclosure is allowed, so it refuses to be safe."

func TestBuiltinPlanIsStable(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cur.Load().planErr; err != nil {
		t.Fatalf("the built-in access plan cannot be cached: %v", err)
	}
}

// An operator module that reads a volatile field (or calls a builtin whose
// answer changes) makes the plan uncacheable, and the decision is then
// made whole, every time.
func TestPlanIsStableRefusesVolatileReads(t *testing.T) {
	for name, src := range map[string]string{
		"time":         "deny contains {\"text\": \"closed\"} if input.now_ns > 0",
		"counts":       "deny contains {\"text\": \"busy\"} if input.counts.P1D > 100",
		"firm status":  "deny contains {\"text\": \"x\"} if input.firm.status == \"pending\"",
		"state":        "deny contains {\"text\": \"x\"} if input.consent.state == \"revoked\"",
		"whole input":  "deny contains {\"text\": \"x\"} if count(input) > 100",
		"dynamic":      "deny contains {\"text\": \"x\"} if { some k; input[k] == 1 }",
		"via variable": "deny contains {\"text\": \"x\"} if { f := input.firm; f.status == \"x\" }",
		"clock":        "deny contains {\"text\": \"x\"} if time.now_ns() < 0",
		"via function": "deny contains {\"text\": \"x\"} if late(1)\n\nlate(x) if input.now_ns > x",
	} {
		t.Run(name, func(t *testing.T) {
			e, err := New(t.Context(), Config{Overlay: Modules{"extra.rego": []byte("package regulatory.v1\n\n" + src + "\n")}})
			if err != nil {
				t.Fatal(err)
			}
			if e.cur.Load().planErr == nil {
				t.Error("plan reads a volatile field but was found stable")
			}
		})
	}
	e, err := New(t.Context(), Config{Overlay: Modules{"extra.rego": []byte("package regulatory.v1\n\ndeny contains {\"text\": \"x\"} if input.firm.sector == \"x\"\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cur.Load().planErr; err != nil {
		t.Errorf("an overlay reading only stable fields: %v", err)
	}
}

func TestWindowStart(t *testing.T) {
	ti := &termsInput{bounds: ruleBounds([]ruleInput{
		{FromNS: math.MinInt64, UntilNS: 20}, {FromNS: 10, UntilNS: math.MaxInt64}, {FromNS: 10, UntilNS: 30},
	})}
	if diff := cmp.Diff([]int64{10, 20, 30}, ti.bounds); diff != "" {
		t.Errorf("bounds (-want +got):\n%s", diff)
	}
	for now, want := range map[int64]int64{math.MinInt64: math.MinInt64, 9: math.MinInt64, 10: 10, 19: 10, 20: 20, 29: 20, 30: 30, math.MaxInt64: 30} {
		if got := ti.windowStart(now); got != want {
			t.Errorf("windowStart(%d) = %d, want %d", now, got, want)
		}
	}
}

// TestPlanInputAST keeps planInput.ast in step with its JSON.
func TestPlanInputAST(t *testing.T) {
	tax := DefaultTaxonomy()
	data, err := tax.data()
	if err != nil {
		t.Fatal(err)
	}
	ti := newTermsInput("sha256:x", broker.Terms{Format: broker.TermsFormat, Rules: []broker.TermsRule{{Effect: broker.EffectAllow}}}, &data)
	p := planInput{Version: InputVersion, NowNS: 5, Customer: customerInput{Jurisdiction: "GB", Minor: true},
		Firm:    partyInput{ID: "firm_x", Sector: "retail", Jurisdiction: "DE"},
		Request: requestInput{Categories: []string{"Contact"}, Fields: map[string][]string{"Contact": {"email"}}, Purpose: "Marketing"},
		Consent: scopeInput{ID: "con_x", FirmID: "firm_x", Explicit: true, Scope: grantedScope{Categories: []string{"Contact"}, Fields: map[string][]string{},
			Purpose: "Marketing", Frequency: newFrequency(broker.Frequency{Max: 2, Per: broker.Duration{Days: 1}})},
			DecidedAtNS: 1, ExpiresAtNS: 2, DecidedText: "a", ExpiresText: "b", ScopeText: "c"}}
	b, err := json.Marshal(struct {
		planInput
		Terms *termsInput `json:"terms"`
	}{p, ti})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ast.ValueFromReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ast(ti); got.Compare(want) != 0 {
		t.Errorf("ast() differs from the struct's JSON:\n got %s\nwant %s", got, want)
	}

	// Every field is in the key.
	key := planKey("sha256:x", &p)
	for name, change := range map[string]func(*planInput){
		"now":          func(p *planInput) { p.NowNS++ },
		"minor":        func(p *planInput) { p.Customer.Minor = false },
		"jurisdiction": func(p *planInput) { p.Firm.Jurisdiction = "GB" },
		"category":     func(p *planInput) { p.Request.Categories = []string{"Contact", "Age"} },
		"field":        func(p *planInput) { p.Request.Fields = map[string][]string{"Contact": {"phone"}} },
		"compensation": func(p *planInput) { p.Request.Compensation = &moneyInput{} },
		"explicit":     func(p *planInput) { p.Consent.Explicit = false },
		"frequency":    func(p *planInput) { p.Consent.Scope.Frequency.Max = 3 },
		"decided":      func(p *planInput) { p.Consent.DecidedAtNS = 0 },
		"text":         func(p *planInput) { p.Consent.ScopeText = "c " },
		"shifted":      func(p *planInput) { p.Consent.DecidedText, p.Consent.ExpiresText = "ab", "" },
	} {
		q := p
		q.Request.Categories = append([]string(nil), p.Request.Categories...)
		change(&q)
		if planKey("sha256:x", &q) == key {
			t.Errorf("changing %s keeps the key", name)
		}
	}
	if planKey("sha256:y", &p) == key {
		t.Error("changing the terms keeps the key")
	}
}

// TestPlanMatchesWholeDecision: over random terms, consents, requests,
// times, states and counts, the two-part decision (cached plan, then the
// per-request check) is the decision data.access.v1.decision makes in one
// evaluation, both when the plan is first made and when it comes from the
// cache.
func TestPlanMatchesWholeDecision(t *testing.T) {
	e, err := New(t.Context(), Config{PlanCacheSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	c := e.cur.Load()
	// denies counts the refusals the policy finds, to check that an allow
	// (clear in access.rego) never stands beside a refusal.
	opts := []func(*rego.Rego){rego.SetRegoVersion(ast.RegoV1), rego.Query("count(data.access.v1.deny)"),
		rego.Module(taxonomyModule, "package taxonomy\n\ncategories := "+string(e.taxCategories)+"\n\npurposes := "+string(e.taxPurposes)+"\n")}
	for name, src := range e.base {
		opts = append(opts, rego.Module(name, string(src)))
	}
	denies, err := rego.New(opts...).PrepareForEval(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	cats := broker.Categories
	purps := broker.Purposes
	pick := func(n int) []string {
		var out []string
		for range n {
			out = append(out, cats[r.IntN(len(cats))].Name)
		}
		return out
	}
	days := func(n int) broker.Duration { return broker.Duration{Days: n} }
	at := func() time.Time { return planNow.Add(time.Duration(r.IntN(97)-48) * time.Hour) }
	iterations := 600
	if testing.Short() {
		iterations = 150
	}
	effects := map[broker.Effect]int{}
	for i := range iterations {
		tm := broker.Terms{Format: broker.TermsFormat}
		for range r.IntN(6) {
			rule := broker.TermsRule{Effect: []broker.Effect{broker.EffectAllow, broker.EffectAllow, broker.EffectDeny, broker.EffectAsk}[r.IntN(4)]}
			rule.Match.Categories = pick(r.IntN(2))
			if r.IntN(2) == 0 {
				rule.Match.Purposes = []string{purps[r.IntN(len(purps))].Name}
			}
			if r.IntN(4) == 0 {
				rule.Match.Sectors = []string{"retail"}
			}
			if rule.Effect != broker.EffectDeny && r.IntN(3) == 0 {
				rule.Constraints.MaxDuration = days(1 + r.IntN(3))
			}
			if rule.Effect != broker.EffectDeny && r.IntN(3) == 0 {
				rule.Constraints.MaxFrequency = broker.Frequency{Max: 1 + r.IntN(5), Per: days(1)}
			}
			if r.IntN(3) == 0 {
				rule.Constraints.ValidFrom = at()
			}
			if r.IntN(3) == 0 {
				rule.Constraints.ValidUntil = at()
			}
			tm.Rules = append(tm.Rules, rule)
		}
		doc, err := json.Marshal(tm)
		if err != nil {
			t.Fatal(err)
		}
		tv := broker.TermsVersion{Document: doc, Hash: broker.HashDocument(doc)}
		scope := broker.Scope{Categories: pick(1 + r.IntN(3)), Purpose: purps[r.IntN(len(purps))].Name, Duration: days(1 + r.IntN(4))}
		if r.IntN(2) == 0 {
			scope.Frequency = broker.Frequency{Max: 1 + r.IntN(5), Per: days(1)}
		}
		scope.Normalize()
		decided := planNow.Add(-time.Duration(r.IntN(72)) * time.Hour)
		con, _, err := broker.NewConsentRequest("cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", "", scope, decided, "test")
		if err != nil {
			t.Fatal(err)
		}
		if con, _, err = con.Grant(scope, decided, "test"); err != nil {
			t.Fatal(err)
		}
		firm := broker.Firm{ID: "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", Sector: []string{"retail", "media"}[r.IntN(2)], Jurisdiction: []string{"GB", "DE", "US"}[r.IntN(3)], Status: broker.FirmApproved}
		q := AccessRequest{Customer: broker.Customer{Jurisdiction: "GB", Minor: r.IntN(8) == 0}, Firm: firm, Consent: con, Explicit: r.IntN(2) == 0, Terms: tv,
			Categories: scope.Categories, Purpose: scope.Purpose}
		if r.IntN(3) == 0 {
			q.Categories = pick(1 + r.IntN(2))
		}
		if r.IntN(4) == 0 {
			q.Purpose = purps[r.IntN(len(purps))].Name
		}
		// The same request at several moments, in several states.
		for range 4 {
			q.Now = at()
			q.Consent.State = []broker.ConsentState{broker.ConsentGranted, broker.ConsentGranted, broker.ConsentGranted, broker.ConsentRevoked}[r.IntN(4)]
			q.Firm.Status = []broker.FirmStatus{broker.FirmApproved, broker.FirmApproved, broker.FirmApproved, broker.FirmSuspended, broker.FirmPending}[r.IntN(5)]
			q.Counts = map[broker.Duration]int{days(1): r.IntN(6)}
			if r.IntN(8) == 0 {
				q.Counts = nil
			}
			in, err := e.accessInput(q, q.Now)
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.eval(t.Context(), c, c.access, broker.DecisionAccess, in.ast(), tv.Hash, q.Now)
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.plan(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			whole := in.ast().(ast.Object)
			whole.Insert(ast.StringTerm("plan"), ast.NewTerm(p.plan))
			if fast := in.fastInput(p); fast.Compare(whole) != 0 {
				t.Fatalf("iteration %d: fast input differs:\n got %s\nwant %s", i, fast, whole)
			}
			for range 2 { // made, then cached
				got, err := e.Access(t.Context(), q)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("iteration %d: terms %s\nrequest %+v\ntwo-part decision differs from the whole (-whole +two-part):\n%s", i, doc, q, diff)
				}
			}
			effects[want.Effect]++
			rs, err := denies.Eval(t.Context(), rego.EvalParsedInput(in.ast()))
			if err != nil || len(rs) != 1 {
				t.Fatalf("count(deny): %v %v", err, rs)
			}
			n, _ := rs[0].Expressions[0].Value.(json.Number).Int64()
			if (want.Effect == broker.EffectAllow) != (n == 0 && want.Reasons[0].Text != unconfirmedText) {
				t.Fatalf("iteration %d: %s with %d refusals: %v", i, want.Effect, n, want.Reasons)
			}
		}
	}
	t.Logf("effects: %v; plans cached: %d", effects, c.plans.len())
	if effects[broker.EffectAllow] == 0 || effects[broker.EffectDeny] == 0 {
		t.Errorf("effects %v: the generator does not exercise the policy", effects)
	}
}

func TestPlanCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newPlanCache(2)
	a, b, d := &planned{}, &planned{}, &planned{}
	ka, kb, kd := planKeyT{'a'}, planKeyT{'b'}, planKeyT{'d'}
	c.add(ka, a)
	c.add(kb, b)
	if got, _ := c.get(ka); got != a {
		t.Fatal("a not cached")
	}
	c.add(kd, d)
	if _, ok := c.get(kb); ok {
		t.Error("b, the least recently used, was kept")
	}
	if got, _ := c.get(ka); got != a {
		t.Error("a was evicted")
	}
	if c.len() != 2 {
		t.Errorf("len = %d", c.len())
	}
}

// Decisions share cached plans and their parts across goroutines (run
// with -race).
func TestAccessConcurrently(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	scope := broker.Scope{Categories: []string{"Contact"}, Purpose: "Marketing", Duration: broker.Duration{Days: 30}}
	con, _, err := broker.NewConsentRequest("cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", "", scope, planNow.Add(-time.Hour), "test")
	if err != nil {
		t.Fatal(err)
	}
	if con, _, err = con.Grant(scope, planNow.Add(-time.Hour), "test"); err != nil {
		t.Fatal(err)
	}
	firm := broker.Firm{ID: "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", Sector: "retail", Jurisdiction: "GB", Status: broker.FirmApproved}
	q := AccessRequest{Customer: broker.Customer{Jurisdiction: "GB"}, Firm: firm, Consent: con, Explicit: true,
		Categories: []string{"EmailAddress"}, Purpose: "DirectMarketing", Now: planNow}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 25 {
				q := q
				want := broker.EffectAllow
				if (g+i)%3 == 0 {
					q.Consent.State, want = broker.ConsentRevoked, broker.EffectDeny
				}
				d, err := e.Access(t.Context(), q)
				if err != nil || d.Effect != want {
					t.Errorf("goroutine %d request %d: %v %s, want %s", g, i, err, d.Effect, want)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
