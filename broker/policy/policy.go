// Package policy decides every consent request and every disclosure with
// Open Policy Agent, embedded: the Rego v1 modules in policies/ read the
// customer's terms and the regulator's baseline and answer allow, deny or
// ask, with a narrowed scope and reasons a customer can read.
//
// # Contract
//
// An Engine is built once at start-up by New, which compiles the policy
// (rego.PrepareForEval) and MUST fail the process if the policy does not
// compile. Each decision then evaluates one query with a versioned input
// document (InputVersion) built from the request:
//
//   - Consent answers a firm's request for consent: data.consent.v1.decision.
//     Effect is allow, deny or ask. On allow the Decision's Scope is what may
//     be granted; on ask it is the most the customer may grant; on deny it is
//     empty. The scope MUST NOT be wider than the request (broker.Scope.Within)
//     nor than the customer's terms allow.
//   - Access answers one disclosure under a consent, at the moment of access:
//     data.access.v1.decision. Effect is allow or deny. The consent must be
//     live, the firm approved, the categories, fields and purpose within the
//     granted scope, frequency limits unreached (counts supplied by the
//     caller), and the customer's current terms must still permit it (a later,
//     stricter version wins). Callers MUST ask for every disclosure and MUST
//     NOT cache an allow.
//
// Every Decision carries the terms hash and the policy bundle hash that
// produced it; broker.NewDecisionRecord turns it into what is stored.
// Anything other than exactly one well-formed result object is an error,
// never an allow: Consent and Access then return the error together with
// a deny decision, and callers MUST treat an error as a deny.
//
// Customers' terms are passed per request, never loaded into OPA data. The
// taxonomy is data.taxonomy, compiled in once per policy version as a
// module of constants. Each terms version is converted and indexed once
// (its names expanded along the taxonomy, its rules indexed by purpose)
// and cached by content hash, so a request never walks every rule.
// Frequency limits need counts of earlier disclosures: Windows says which
// windows to count.
//
// # The access plan
//
// Access is made in two OPA evaluations (see plan.go). The first,
// data.access.v1.plan, reads only what stays the same between requests
// (the terms, the consent's scope, the request, the regulator's baseline)
// and is cached per policy version under a key holding all of it and the
// terms hash. The second, data.access.v1.decision with that plan, runs on
// every request and reads the time, the counts, the consent's state and
// the firm's standing. No cached value can outlive a revocation, an
// expiry, a suspension, a new terms version or a reload. The policy is
// checked when it is compiled: if the plan would read a changing field or
// call a non-deterministic builtin, Access makes the whole decision in one
// evaluation every time instead.
//
// # Example
//
//	e, err := policy.New(ctx, policy.Config{}) // at start-up; err stops the process
//	...
//	d, err := e.Access(ctx, policy.AccessRequest{Customer: c, Firm: f, Consent: con,
//		Terms: current, Categories: cats, Purpose: p, Counts: counts})
//	if err != nil || !d.Allowed() {
//		// refuse; store broker.NewDecisionRecord(...) either way
//	}
//
// # Operator overlays
//
// Reload lays an operator's modules (ReadDir, ReadBundle) over the built-in
// ones, compiles the result and swaps it in atomically; requests in flight
// finish on the version they started with. A module that fails to parse or
// compile is refused with an error and the running policy is kept. Overlay
// modules must be in package regulatory.v1: operators change the regulator's
// baseline, never how customers' terms are read. A regulatory module whose
// outputs break their contract (policies/contract.rego) makes every
// decision a deny until it is fixed.
//
// The package imports neither store, oauth nor net/http.
package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/terms"
)

// Queries evaluated, one per decision.
const (
	ConsentQuery = "data.consent.v1.decision"
	AccessQuery  = "data.access.v1.decision"
)

// taxonomyModule is the name of the generated module holding data.taxonomy.
const taxonomyModule = "steward-generated/taxonomy.rego"

// DefaultTermsCacheSize is how many converted terms versions an Engine keeps.
const DefaultTermsCacheSize = 4096

// Config configures an Engine. The zero value is the built-in policy over
// the built-in taxonomy.
type Config struct {
	// Taxonomy defaults to DefaultTaxonomy().
	Taxonomy *Taxonomy
	// Overlay is the operator's modules to lay over the built-in ones at
	// start-up (see Reload); nil for none.
	Overlay Modules
	// TermsCacheSize bounds the cache of converted terms; 0 means
	// DefaultTermsCacheSize.
	TermsCacheSize int
	// PlanCacheSize bounds the cache of access plans per policy version;
	// 0 means DefaultPlanCacheSize.
	PlanCacheSize int
}

// Engine makes policy decisions. It is safe for concurrent use.
type Engine struct {
	base     Modules
	taxonomy taxonomyData
	taxJSON  []byte
	// taxCategories and taxPurposes are the JSON of data.taxonomy's parts.
	taxCategories, taxPurposes []byte

	cur    atomic.Pointer[compiled]
	reload sync.Mutex // one Reload at a time

	cache     termsCache
	planCache int         // Config.PlanCacheSize
	empty     *termsInput // for customers without terms
}

// compiled is one prepared policy version.
type compiled struct {
	consent rego.PreparedEvalQuery
	access  rego.PreparedEvalQuery
	hash    string

	// The access decision in two parts (see plan.go), when planErr is nil.
	accessPlan rego.PreparedEvalQuery
	accessFast rego.PreparedEvalQuery
	plans      *planCache
	planErr    error
}

// New compiles the built-in policy (plus cfg.Overlay) and returns an Engine.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	tax := DefaultTaxonomy()
	if cfg.Taxonomy != nil {
		tax = *cfg.Taxonomy
	}
	if cfg.TermsCacheSize <= 0 {
		cfg.TermsCacheSize = DefaultTermsCacheSize
	}
	if cfg.PlanCacheSize <= 0 {
		cfg.PlanCacheSize = DefaultPlanCacheSize
	}
	data, err := tax.data()
	if err != nil {
		return nil, fmt.Errorf("policy: taxonomy: %w", err)
	}
	taxJSON, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("policy: taxonomy: %w", err)
	}
	base, err := Builtin()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e := &Engine{base: base, taxonomy: data, taxJSON: taxJSON, cache: termsCache{max: cfg.TermsCacheSize}, planCache: cfg.PlanCacheSize}
	if e.taxCategories, err = json.Marshal(data.Categories); err != nil {
		return nil, fmt.Errorf("policy: taxonomy: %w", err)
	}
	if e.taxPurposes, err = json.Marshal(data.Purposes); err != nil {
		return nil, fmt.Errorf("policy: taxonomy: %w", err)
	}
	e.empty = newTermsInput("", broker.Terms{Format: broker.TermsFormat}, &e.taxonomy)
	if err := e.Reload(ctx, cfg.Overlay); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload compiles the built-in modules with overlay laid over them and, if
// that succeeds, swaps the new version in atomically. On error the running
// version is kept. A nil overlay returns to the built-in policy.
func (e *Engine) Reload(ctx context.Context, overlayMods Modules) error {
	e.reload.Lock()
	defer e.reload.Unlock()
	mods, err := overlay(e.base, overlayMods)
	if err != nil {
		return fmt.Errorf("policy: reload: %w", err)
	}
	c, err := e.compile(ctx, mods)
	if err != nil {
		return fmt.Errorf("policy: reload: %w", err)
	}
	e.cur.Store(c)
	return nil
}

func (e *Engine) compile(ctx context.Context, mods Modules) (*compiled, error) {
	// The taxonomy is compiled in as a module of constants rather than
	// kept in a store: lookups in a compiled object are hash lookups with
	// no storage transaction, which matters on every disclosure.
	taxSrc := "package taxonomy\n\ncategories := " + string(e.taxCategories) + "\n\npurposes := " + string(e.taxPurposes) + "\n"
	opts := []func(*rego.Rego){
		rego.SetRegoVersion(ast.RegoV1),
		rego.Module(taxonomyModule, taxSrc),
	}
	for _, name := range slices.Sorted(maps.Keys(mods)) {
		opts = append(opts, rego.Module(name, string(mods[name])))
	}
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		pq, err := rego.New(append(slices.Clip(opts), rego.Query(query))...).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("%w: compile %s: %w", broker.ErrInvalid, query, err)
		}
		return pq, nil
	}
	consent, err := prepare(ConsentQuery)
	if err != nil {
		return nil, err
	}
	access, err := prepare(AccessQuery)
	if err != nil {
		return nil, err
	}
	c := &compiled{consent: consent, access: access, hash: bundleHash(mods, e.taxJSON), plans: newPlanCache(e.planCache)}
	// The two-part access decision, only where it gives the same answers.
	srcs := map[string]string{taxonomyModule: taxSrc}
	for name, src := range mods {
		srcs[name] = string(src)
	}
	comp, err := ast.CompileModulesWithOpt(srcs, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	if err != nil {
		return nil, fmt.Errorf("%w: compile: %w", broker.ErrInvalid, err)
	}
	if c.planErr = planIsStable(comp); c.planErr != nil {
		return c, nil
	}
	if c.accessPlan, err = prepare(accessPlanQuery); err != nil {
		return nil, err
	}
	if c.accessFast, err = prepare(accessFastQuery); err != nil {
		return nil, err
	}
	return c, nil
}

// PolicyHash returns the hash of the policy version now in force.
func (e *Engine) PolicyHash() string { return e.cur.Load().hash }

// termsCache maps a terms hash to its converted input.
type termsCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]cachedTerms
}

type cachedTerms struct {
	doc []byte
	in  *termsInput
}

// terms returns the converted input for tv, decoding it on a miss.
func (e *Engine) terms(tv broker.TermsVersion) (*termsInput, error) {
	if len(tv.Document) == 0 {
		if tv.Hash != "" {
			return nil, fmt.Errorf("%w: terms %s has no document", broker.ErrInvalid, tv.Hash)
		}
		return e.empty, nil
	}
	c := &e.cache
	c.mu.RLock()
	hit, ok := c.m[tv.Hash]
	c.mu.RUnlock()
	if ok && string(hit.doc) == string(tv.Document) {
		return hit.in, nil
	}
	if got := broker.HashDocument(tv.Document); got != tv.Hash {
		return nil, fmt.Errorf("%w: terms document hashes to %s, not %s", broker.ErrInvalid, got, tv.Hash)
	}
	t, err := terms.Decode(tv.Document)
	if err != nil {
		return nil, err
	}
	in := newTermsInput(tv.Hash, t, &e.taxonomy)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]cachedTerms, min(c.max, 64)) // crude, but bounded and rare
	}
	c.m[tv.Hash] = cachedTerms{doc: tv.Document, in: in}
	c.mu.Unlock()
	return in, nil
}
