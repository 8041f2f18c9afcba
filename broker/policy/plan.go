package policy

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/stewardhq/steward/broker"
)

// The access decision in two parts (see policies/access.rego).
//
// data.access.v1.plan is what the customer's current terms, the consent's
// scope and the regulator's baseline say about a request. It is evaluated
// by OPA like any decision, but over the plan input: the access input
// without its volatile fields (the time, the counts, the consent's state,
// the firm's standing), with the time replaced by the start of the window
// between two of the terms' rule boundaries that holds it. Its result is
// cached per policy version, keyed by the terms hash and every other field
// of the plan input, so a cached plan is exactly what evaluating it again
// would give.
//
// data.access.v1.decision is then evaluated on every request over the whole
// input, with the cached plan in place of its rule. Revocation, expiry and
// suspension are volatile fields, read on every request; a new terms
// version has a new hash; a reload starts a new, empty cache.
//
// That holds only if plan never reads a volatile field and calls no
// non-deterministic builtin. compile checks both over everything plan
// depends on (an operator's regulatory modules included); when the check
// fails, Access evaluates the whole decision at once, uncached.

// Queries for the two parts.
const (
	accessPlanQuery = "data.access.v1.plan"
	accessFastQuery = AccessQuery + " with data.access.v1.plan as input.plan"
)

// DefaultPlanCacheSize is how many access plans an Engine keeps per policy
// version.
const DefaultPlanCacheSize = 4096

// volatile lists the input fields the plan MUST NOT read. Package terms.v1
// may read now_ns, and only against its rules' windows [from_ns, until_ns),
// which is why the plan input's now_ns is the start of the window holding
// the time: every rule window gives the same answer for both.
var volatile = [][]string{{"now_ns"}, {"counts"}, {"consent", "state"}, {"firm", "status"}, {"plan"}}

var termsPackage = ast.MustParseRef("data.terms.v1")

// planInput is the access input less its volatile fields, and less the
// terms, which the key names by hash. TestPlanInputAST keeps planInput.ast
// in step with its JSON; planKey covers every field (and has no
// unexported ones to skip).
type planInput struct {
	Version  int           `json:"version"`
	NowNS    int64         `json:"now_ns"` // the start of the rule window holding the time
	Customer customerInput `json:"customer"`
	Firm     partyInput    `json:"firm"`
	Request  requestInput  `json:"request"`
	Consent  scopeInput    `json:"consent"`
}

// partyInput is firmInput without its status.
type partyInput struct {
	ID           string `json:"id"`
	Sector       string `json:"sector"`
	Jurisdiction string `json:"jurisdiction"`
}

// scopeInput is consentState without its state.
type scopeInput struct {
	ID          string       `json:"id"`
	FirmID      string       `json:"firm_id"`
	Explicit    bool         `json:"explicit"`
	Scope       grantedScope `json:"scope"`
	DecidedAtNS int64        `json:"decided_at_ns"`
	ExpiresAtNS int64        `json:"expires_at_ns"`
	DecidedText string       `json:"decided_text"`
	ExpiresText string       `json:"expires_text"`
	ScopeText   string       `json:"scope_text"`
}

func newPlanInput(in accessInput) planInput {
	c := in.Consent
	return planInput{
		Version: in.Version, NowNS: in.Terms.windowStart(in.NowNS), Customer: in.Customer,
		Firm:    partyInput{ID: in.Firm.ID, Sector: in.Firm.Sector, Jurisdiction: in.Firm.Jurisdiction},
		Request: in.Request,
		Consent: scopeInput{ID: c.ID, FirmID: c.FirmID, Explicit: c.Explicit, Scope: c.Scope,
			DecidedAtNS: c.DecidedAtNS, ExpiresAtNS: c.ExpiresAtNS, DecidedText: c.DecidedText, ExpiresText: c.ExpiresText, ScopeText: c.ScopeText},
	}
}

func (p partyInput) ast() *ast.Term {
	return obj("id", str(p.ID), "sector", str(p.Sector), "jurisdiction", str(p.Jurisdiction))
}

func (c scopeInput) ast() *ast.Term {
	return obj("id", str(c.ID), "firm_id", str(c.FirmID), "explicit", ast.BooleanTerm(c.Explicit),
		"scope", c.Scope.ast(), "decided_at_ns", num(c.DecidedAtNS), "expires_at_ns", num(c.ExpiresAtNS),
		"decided_text", str(c.DecidedText), "expires_text", str(c.ExpiresText), "scope_text", str(c.ScopeText))
}

// ast is the plan input with the terms t.
func (p planInput) ast(t *termsInput) ast.Value {
	return obj("version", num(int64(p.Version)), "now_ns", num(p.NowNS), "customer", p.Customer.ast(),
		"firm", p.Firm.ast(), "request", p.Request.ast(), "consent", p.Consent.ast(),
		"terms", ast.NewTerm(t.value)).Value
}

// windowStart returns the latest rule boundary (a from_ns or until_ns of
// one of the rules) at or before now, or math.MinInt64 when there is none.
// For any rule, from_ns <= now < until_ns exactly when
// from_ns <= start < until_ns.
func (t *termsInput) windowStart(now int64) int64 {
	i, found := slices.BinarySearch(t.bounds, now)
	if found {
		return now
	}
	if i == 0 {
		return math.MinInt64
	}
	return t.bounds[i-1]
}

// ruleBounds returns the rules' window boundaries, sorted, without the
// open ends.
func ruleBounds(rules []ruleInput) []int64 {
	var b []int64
	for _, r := range rules {
		if r.FromNS != math.MinInt64 {
			b = append(b, r.FromNS)
		}
		if r.UntilNS != math.MaxInt64 {
			b = append(b, r.UntilNS)
		}
	}
	slices.Sort(b)
	return slices.Compact(b)
}

// planKey is the cache key of a plan: SHA-256 over the terms hash and
// every field of the rest of the plan input, each length-prefixed or
// terminated so that two different inputs never encode alike.
func planKey(termsHash string, p *planInput) [sha256.Size]byte {
	bp := keyBufs.Get().(*[]byte)
	b := appendKey((*bp)[:0], reflect.ValueOf(&termsHash).Elem())
	b = appendKey(b, reflect.ValueOf(p).Elem())
	k := sha256.Sum256(b)
	*bp = b
	keyBufs.Put(bp)
	return k
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func appendKey(b []byte, v reflect.Value) []byte {
	switch v.Kind() {
	case reflect.String:
		b = strconv.AppendInt(b, int64(v.Len()), 10)
		return append(append(b, ':'), v.String()...)
	case reflect.Int, reflect.Int64:
		return append(strconv.AppendInt(b, v.Int(), 10), ';')
	case reflect.Bool:
		if v.Bool() {
			return append(b, 't')
		}
		return append(b, 'f')
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 'n')
		}
		return appendKey(append(b, 'p'), v.Elem())
	case reflect.Slice:
		b = append(strconv.AppendInt(b, int64(v.Len()), 10), '[')
		for i := range v.Len() {
			b = appendKey(b, v.Index(i))
		}
		return b
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		b = append(strconv.AppendInt(b, int64(len(keys)), 10), '{')
		for _, k := range keys {
			b = appendKey(appendKey(b, k), v.MapIndex(k))
		}
		return b
	case reflect.Struct:
		for i := range v.NumField() {
			b = appendKey(b, v.Field(i))
		}
		return b
	}
	panic("policy: plan key of a " + v.Kind().String())
}

// planned is a cached plan with the parts of the access input that are
// the same for every request with its key, already built as Rego values.
type planned struct {
	plan     ast.Value
	customer *ast.Term
	request  *ast.Term

	// input.consent by consent state and input.firm by firm status: all
	// else in them is part of the key.
	mu       sync.Mutex
	consents map[string]*ast.Term
	firms    map[string]*ast.Term
}

// maxVariants bounds planned.consents and planned.firms; the states and
// statuses are a handful of words.
const maxVariants = 8

// variant returns m[k], building and keeping it if there is room.
func (p *planned) variant(m *map[string]*ast.Term, k string, build func() *ast.Term) *ast.Term {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := (*m)[k]; ok {
		return t
	}
	t := build()
	if *m == nil {
		*m = map[string]*ast.Term{}
	}
	if len(*m) < maxVariants {
		(*m)[k] = t
	}
	return t
}

// plan returns the access plan for in, from the cache or by evaluating
// data.access.v1.plan.
func (c *compiled) plan(ctx context.Context, in accessInput) (*planned, error) {
	p := newPlanInput(in)
	key := planKey(in.Terms.Hash, &p)
	if hit, ok := c.plans.get(key); ok {
		return hit, nil
	}
	rs, err := c.accessPlan.Eval(ctx, rego.EvalParsedInput(p.ast(in.Terms)), rego.EvalGenerateJSON(asTerm), rego.EvalMetrics(metrics.NoOp()))
	if err != nil {
		return nil, fmt.Errorf("evaluate plan: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%w: access plan gave %d results, want exactly one", broker.ErrInvalid, len(rs))
	}
	t, _ := rs[0].Expressions[0].Value.(*ast.Term)
	if t == nil {
		return nil, fmt.Errorf("%w: access plan is not a term", broker.ErrInvalid)
	}
	v, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: access plan is %s, not an object", broker.ErrInvalid, ast.ValueName(t.Value))
	}
	hit := &planned{plan: v, customer: in.Customer.ast(), request: in.Request.ast()}
	c.plans.add(key, hit)
	return hit, nil
}

// fastInput is in.ast() with the plan as input.plan, reusing the parts
// built when the plan was cached.
func (in accessInput) fastInput(p *planned) ast.Value {
	consent := p.variant(&p.consents, in.Consent.State, in.Consent.ast)
	firm := p.variant(&p.firms, in.Firm.Status, in.Firm.ast)
	return obj("version", num(int64(in.Version)), "now_ns", num(in.NowNS), "customer", p.customer,
		"firm", firm, "request", p.request, "consent", consent,
		"terms", ast.NewTerm(in.Terms.value), "counts", in.countsAST(), "plan", ast.NewTerm(p.plan)).Value
}

// planIsStable returns nil when data.access.v1.plan, and every rule and
// function it depends on, reads no volatile input field and calls no
// non-deterministic builtin; otherwise it says what does.
func planIsStable(comp *ast.Compiler) error {
	seen := map[*ast.Rule]bool{}
	var queue []*ast.Rule
	push := func(r *ast.Rule) {
		for ; r != nil; r = r.Else {
			if !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	roots := comp.GetRules(ast.MustParseRef(accessPlanQuery))
	if len(roots) == 0 {
		return fmt.Errorf("no rule %s", accessPlanQuery)
	}
	for _, r := range roots {
		push(r)
	}
	var problem error
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		for dep := range comp.Graph.Dependencies(r) {
			if d, ok := dep.(*ast.Rule); ok {
				push(d)
			}
		}
		inTerms := r.Module != nil && r.Module.Package.Path.Equal(termsPackage)
		check := func(x any) {
			ast.WalkRefs(x, func(ref ast.Ref) bool {
				if problem == nil && ref.HasPrefix(ast.InputRootRef) {
					if f := volatileField(ref, inTerms); f != "" {
						problem = fmt.Errorf("%s reads %s (%s)", r.Head.Ref(), f, r.Location)
					}
				}
				return false
			})
			ast.WalkExprs(x, func(e *ast.Expr) bool {
				if problem == nil && e.IsCall() {
					if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
						problem = fmt.Errorf("%s calls %s, which is not deterministic", r.Head.Ref(), b.Name)
					}
				}
				return false
			})
		}
		check(r.Head)
		check(r.Body)
	}
	return problem
}

// volatileField returns the volatile field ref may read, or "".
func volatileField(ref ast.Ref, inTerms bool) string {
	var path []string
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(s))
	}
	for _, v := range volatile {
		n := min(len(path), len(v))
		if !slices.Equal(path[:n], v[:n]) {
			continue
		}
		if inTerms && len(path) == 1 && path[0] == "now_ns" {
			continue
		}
		return "input." + joinPath(v)
	}
	return ""
}

func joinPath(p []string) string {
	s := p[0]
	for _, x := range p[1:] {
		s += "." + x
	}
	return s
}

// planCache is a least-recently-used cache of access plans.
type planCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *planEntry, most recent first
	m   map[planKeyT]*list.Element
}

type planKeyT = [sha256.Size]byte

type planEntry struct {
	key  planKeyT
	plan *planned
}

func newPlanCache(max int) *planCache {
	return &planCache{max: max, ll: list.New(), m: map[planKeyT]*list.Element{}}
}

func (c *planCache) get(key planKeyT) (*planned, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*planEntry).plan, true
}

func (c *planCache) add(key planKeyT, plan *planned) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.ll.MoveToFront(el)
		el.Value.(*planEntry).plan = plan
		return
	}
	c.m[key] = c.ll.PushFront(&planEntry{key: key, plan: plan})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*planEntry).key)
	}
}

// len returns how many plans the cache holds.
func (c *planCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
