package policy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/stewardhq/steward/broker"
)

// ConsentRequest is one firm's request for a customer's consent.
type ConsentRequest struct {
	Customer broker.Customer
	Firm     broker.Firm
	// Terms is the customer's current terms version, as stored; the zero
	// value means the customer has no terms (every request is asked).
	Terms   broker.TermsVersion
	Request broker.DataRequest
	// Now is the time of the decision; zero means time.Now().
	Now time.Time
}

// AccessRequest is one disclosure a firm asks for under a consent.
type AccessRequest struct {
	Customer broker.Customer
	Firm     broker.Firm
	Consent  broker.Consent
	// Explicit says the customer answered this consent themselves, rather
	// than it being granted by a standing allow in their terms. Consents
	// that are not explicit stop as soon as the current terms (or the law)
	// want the customer asked.
	Explicit bool
	// Terms is the customer's CURRENT terms version (not the one the
	// consent was granted under): a later, stricter version wins.
	Terms broker.TermsVersion
	// Categories, Fields and Purpose are what this disclosure is for.
	Categories []string
	Fields     map[string][]string
	Purpose    string
	// Counts holds how many disclosures were already made under the consent
	// in the window of each length ending now. It MUST hold a count for
	// every window Windows returns; a missing one is a deny.
	Counts map[broker.Duration]int
	// Now is the time of the decision; zero means time.Now().
	Now time.Time
}

// Windows returns the lengths of the windows an access decision needs
// counts for: the consent's frequency period and those of the current
// terms' rules.
func (e *Engine) Windows(c broker.Consent, current broker.TermsVersion) ([]broker.Duration, error) {
	var out []broker.Duration
	if f := c.Granted.Frequency; f.Max > 0 && !f.Per.IsZero() {
		out = append(out, f.Per)
	}
	in, err := e.terms(current)
	if err != nil {
		return nil, fmt.Errorf("policy: windows: %w", err)
	}
	for _, r := range in.Rules {
		if r.MaxFrequency != nil {
			d, err := broker.ParseDuration(r.MaxFrequency.Per)
			if err != nil {
				return nil, fmt.Errorf("policy: windows: %w", err)
			}
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// Consent decides a firm's request for consent.
//
// On any error the decision returned with it is a deny (see refusal), so a
// caller that drops the error still refuses.
func (e *Engine) Consent(ctx context.Context, q ConsentRequest) (d broker.Decision, err error) {
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	defer func() {
		if err != nil {
			d = e.refusal(broker.DecisionConsent, q.Terms.Hash, now)
			err = fmt.Errorf("policy: consent decision for firm %s: %w", q.Firm.ID, err)
		}
	}()
	ti, err := e.terms(q.Terms)
	if err != nil {
		return broker.Decision{}, err
	}
	r := q.Request
	in := consentInput{
		Version: InputVersion, NowNS: unixNano(now),
		Customer: newCustomerInput(q.Customer), Firm: newFirmInput(q.Firm),
		Request: requestInput{
			Categories: nonNil(r.Scope.Categories), Fields: fieldsInput(r.Scope.Fields), Purpose: r.Scope.Purpose,
			Duration: newDuration(r.Scope.Duration), Frequency: newFrequency(r.Scope.Frequency),
			Retention: newDuration(r.Retention), OnwardTransfer: r.OnwardTransfer, Compensation: newMoney(r.Compensation),
		},
		Terms: ti,
	}
	c := e.cur.Load()
	return e.eval(ctx, c, c.consent, broker.DecisionConsent, in.ast(), ti.Hash, now)
}

// Access decides one disclosure under a consent.
//
// On any error the decision returned with it is a deny (see refusal), so a
// caller that drops the error still refuses.
func (e *Engine) Access(ctx context.Context, q AccessRequest) (d broker.Decision, err error) {
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	defer func() {
		if err != nil {
			d = e.refusal(broker.DecisionAccess, q.Terms.Hash, now)
			err = fmt.Errorf("policy: access decision for consent %s: %w", q.Consent.ID, err)
		}
	}()
	in, err := e.accessInput(q, now)
	if err != nil {
		return broker.Decision{}, err
	}
	c := e.cur.Load()
	if c.planErr != nil {
		return e.eval(ctx, c, c.access, broker.DecisionAccess, in.ast(), in.Terms.Hash, now)
	}
	p, err := c.plan(ctx, in)
	if err != nil {
		return broker.Decision{}, err
	}
	return e.eval(ctx, c, c.accessFast, broker.DecisionAccess, in.fastInput(p), in.Terms.Hash, now)
}

func (e *Engine) accessInput(q AccessRequest, now time.Time) (accessInput, error) {
	ti, err := e.terms(q.Terms)
	if err != nil {
		return accessInput{}, err
	}
	g := q.Consent.Granted
	counts := make(map[string]int, len(q.Counts))
	for k, v := range q.Counts {
		counts[k.String()] = v
	}
	return accessInput{
		Version: InputVersion, NowNS: unixNano(now),
		Customer: newCustomerInput(q.Customer), Firm: newFirmInput(q.Firm),
		Request: requestInput{Categories: nonNil(q.Categories), Fields: fieldsInput(q.Fields), Purpose: q.Purpose},
		Consent: consentState{
			ID: string(q.Consent.ID), FirmID: string(q.Consent.FirmID), State: string(q.Consent.State), Explicit: q.Explicit,
			Scope: grantedScope{Categories: nonNil(g.Categories), Fields: fieldsInput(g.Fields), Purpose: g.Purpose,
				Frequency: newFrequency(g.Frequency)},
			DecidedAtNS: unixNano(q.Consent.DecidedAt), ExpiresAtNS: unixNano(q.Consent.ExpiresAt),
			DecidedText: dateText(q.Consent.DecidedAt), ExpiresText: dateText(q.Consent.ExpiresAt),
			ScopeText: scopeText(g, &e.taxonomy),
		},
		Terms:  ti,
		Counts: counts,
	}, nil
}

func (e *Engine) eval(ctx context.Context, c *compiled, pq rego.PreparedEvalQuery, kind broker.DecisionKind,
	input ast.Value, termsHash string, now time.Time) (broker.Decision, error) {
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalGenerateJSON(asTerm), rego.EvalMetrics(metrics.NoOp()))
	if err != nil {
		return broker.Decision{}, fmt.Errorf("evaluate: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return broker.Decision{}, fmt.Errorf("%w: policy gave %d results, want exactly one", broker.ErrInvalid, len(rs))
	}
	d, err := decode(rs[0].Expressions[0].Value)
	if err != nil {
		return broker.Decision{}, fmt.Errorf("%w: policy result: %w", broker.ErrInvalid, err)
	}
	d.Kind, d.TermsHash, d.PolicyHash, d.DecidedAt = kind, termsHash, c.hash, now.UTC()
	if kind == broker.DecisionAccess && d.Effect == broker.EffectAsk {
		return broker.Decision{}, fmt.Errorf("%w: access policy answered ask", broker.ErrInvalid)
	}
	return d, nil
}

// RefusalText is the reason given when the policy could not be evaluated.
const RefusalText = "Steward could not evaluate its sharing rules for this request, so it refuses to be safe."

// refusal is the decision that goes with an error: an empty or malformed
// policy result, an evaluation error or unreadable terms are a deny, never
// an allow.
func (e *Engine) refusal(kind broker.DecisionKind, termsHash string, now time.Time) broker.Decision {
	return broker.Decision{Kind: kind, Effect: broker.EffectDeny,
		Reasons:   []broker.Reason{{Source: broker.ReasonPolicy, Text: RefusalText}},
		TermsHash: termsHash, PolicyHash: e.PolicyHash(), DecidedAt: now.UTC()}
}

// ---- decoding the result object ----

// asTerm hands the result back as OPA computed it, so decode reads the
// Rego value without a round trip through Go maps.
func asTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// field returns o[k], or nil when o has no k.
func field(o ast.Object, k string) ast.Value {
	kt, ok := keyTerms[k]
	if !ok {
		kt = ast.StringTerm(k)
	}
	if t := o.Get(kt); t != nil {
		return t.Value
	}
	return nil
}

func decode(v any) (broker.Decision, error) {
	t, ok := v.(*ast.Term)
	if !ok {
		return broker.Decision{}, fmt.Errorf("result is %T, not a term", v)
	}
	m, ok := t.Value.(ast.Object)
	if !ok {
		return broker.Decision{}, fmt.Errorf("result is %s, not an object", ast.ValueName(t.Value))
	}
	var d broker.Decision
	eff, _ := field(m, "effect").(ast.String)
	switch broker.Effect(eff) {
	case broker.EffectAllow, broker.EffectDeny, broker.EffectAsk:
		d.Effect = broker.Effect(eff)
	default:
		return broker.Decision{}, fmt.Errorf("effect %q", string(eff))
	}
	if s, ok := field(m, "scope").(ast.Object); ok && d.Effect != broker.EffectDeny {
		scope, err := decodeScope(s)
		if err != nil {
			return broker.Decision{}, err
		}
		d.Scope = scope
	} else if d.Effect != broker.EffectDeny {
		return broker.Decision{}, fmt.Errorf("%s without a scope", d.Effect)
	}
	reasons, _ := field(m, "reasons").(*ast.Array)
	if reasons == nil {
		return broker.Decision{}, fmt.Errorf("%s without a reason", d.Effect)
	}
	d.Reasons = make([]broker.Reason, 0, reasons.Len())
	for i := range reasons.Len() {
		rm, ok := reasons.Elem(i).Value.(ast.Object)
		if !ok {
			return broker.Decision{}, fmt.Errorf("reason is %s", ast.ValueName(reasons.Elem(i).Value))
		}
		src, _ := field(rm, "source").(ast.String)
		text, _ := field(rm, "text").(ast.String)
		if src == "" || text == "" {
			return broker.Decision{}, fmt.Errorf("reason without source or text")
		}
		n, err := intOf(field(rm, "rule"))
		if err != nil {
			return broker.Decision{}, err
		}
		d.Reasons = append(d.Reasons, broker.Reason{Source: string(src), Rule: n, Text: string(text)})
	}
	if len(d.Reasons) == 0 {
		return broker.Decision{}, fmt.Errorf("%s without a reason", d.Effect)
	}
	return d, nil
}

func intOf(v ast.Value) (int, error) {
	switch n := v.(type) {
	case nil, ast.Null:
		return 0, nil
	case ast.Number:
		i, ok := n.Int()
		if !ok {
			return 0, fmt.Errorf("number %s is not an integer", n)
		}
		return i, nil
	}
	return 0, fmt.Errorf("number is %s", ast.ValueName(v))
}

func stringsOf(v ast.Value) ([]string, error) {
	var a *ast.Array
	switch x := v.(type) {
	case nil:
		a = ast.NewArray()
	case *ast.Array:
		a = x
	case ast.Set:
		a = x.Sorted()
	default:
		return nil, fmt.Errorf("list is %s", ast.ValueName(v))
	}
	out := make([]string, a.Len())
	for i := range out {
		x := a.Elem(i)
		s, ok := x.Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("list item is %s", ast.ValueName(x.Value))
		}
		out[i] = string(s)
	}
	return out, nil
}

func decodeScope(m ast.Object) (broker.Scope, error) {
	var s broker.Scope
	var err error
	if s.Categories, err = stringsOf(field(m, "categories")); err != nil {
		return s, err
	}
	if f, ok := field(m, "fields").(ast.Object); ok && f.Len() > 0 {
		s.Fields = make(map[string][]string, f.Len())
		for _, k := range f.Keys() {
			ks, ok := k.Value.(ast.String)
			if !ok {
				return s, fmt.Errorf("field key is %s", ast.ValueName(k.Value))
			}
			if s.Fields[string(ks)], err = stringsOf(f.Get(k).Value); err != nil {
				return s, err
			}
		}
	}
	purpose, _ := field(m, "purpose").(ast.String)
	s.Purpose = string(purpose)
	if iso, _ := field(m, "duration").(ast.String); iso != "" {
		if s.Duration, err = broker.ParseDuration(string(iso)); err != nil {
			return s, err
		}
	}
	if f, ok := field(m, "frequency").(ast.Object); ok {
		if s.Frequency.Max, err = intOf(field(f, "max")); err != nil {
			return s, err
		}
		if per, _ := field(f, "per").(ast.String); per != "" {
			if s.Frequency.Per, err = broker.ParseDuration(string(per)); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}
