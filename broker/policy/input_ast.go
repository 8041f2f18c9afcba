package policy

import (
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The ast methods build the input as Rego values directly, without a JSON
// round trip; TestInputAST checks them against the structs' JSON.

func str(s string) *ast.Term { return ast.StringTerm(s) }
func num(n int64) *ast.Term  { return ast.IntNumberTerm(int(n)) }

func strs(s []string) *ast.Term {
	ts := make([]*ast.Term, len(s))
	for i, x := range s {
		ts[i] = ast.StringTerm(x)
	}
	return ast.ArrayTerm(ts...)
}

// keyTerms holds the input's object keys, built once: they are the same
// in every request. Read-only after init.
var keyTerms = map[string]*ast.Term{}

func init() {
	for _, k := range strings.Fields(`version now_ns customer firm request consent terms counts plan
		jurisdiction minor id sector status categories fields purpose duration frequency retention
		onward_transfer compensation iso s text max per per_s currency firm_id state explicit scope
		decided_at_ns expires_at_ns decided_text expires_text scope_text effect reasons source rule`) {
		keyTerms[k] = ast.StringTerm(k)
	}
}

func obj(kv ...any) *ast.Term {
	items := make([][2]*ast.Term, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		kt, ok := keyTerms[k]
		if !ok {
			kt = str(k)
		}
		items = append(items, [2]*ast.Term{kt, kv[i+1].(*ast.Term)})
	}
	return ast.ObjectTerm(items...)
}

func fieldsTerm(f map[string][]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(f))
	for _, k := range slices.Sorted(maps.Keys(f)) {
		items = append(items, [2]*ast.Term{str(k), strs(f[k])})
	}
	return ast.ObjectTerm(items...)
}

func (c customerInput) ast() *ast.Term {
	return obj("jurisdiction", str(c.Jurisdiction), "minor", ast.BooleanTerm(c.Minor))
}

func (f firmInput) ast() *ast.Term {
	return obj("id", str(f.ID), "sector", str(f.Sector), "jurisdiction", str(f.Jurisdiction), "status", str(f.Status))
}

func (d durationInput) ast() *ast.Term {
	return obj("iso", str(d.ISO), "s", num(d.S), "text", str(d.Text))
}

func (f frequencyInput) ast() *ast.Term {
	return obj("max", num(int64(f.Max)), "per", str(f.Per), "per_s", num(f.PerS), "text", str(f.Text))
}

func (m *moneyInput) ast() *ast.Term {
	if m == nil {
		return ast.NullTerm()
	}
	return obj("currency", str(m.Currency), "minor", num(m.Minor), "text", str(m.Text))
}

func optional[T interface{ ast() *ast.Term }](p *T) *ast.Term {
	if p == nil {
		return ast.NullTerm()
	}
	return (*p).ast()
}

func (r requestInput) ast() *ast.Term {
	return obj("categories", strs(r.Categories), "fields", fieldsTerm(r.Fields), "purpose", str(r.Purpose),
		"duration", r.Duration.ast(), "frequency", r.Frequency.ast(), "retention", r.Retention.ast(),
		"onward_transfer", ast.BooleanTerm(r.OnwardTransfer), "compensation", r.Compensation.ast())
}

func (r ruleInput) ast() *ast.Term {
	return obj("n", num(int64(r.N)), "effect", str(r.Effect),
		"firms", strs(r.Firms), "sectors", strs(r.Sectors), "jurisdictions", strs(r.Jurisdictions),
		"categories", strs(r.Categories), "purposes", strs(r.Purposes),
		"max_duration", optional(r.MaxDuration), "max_retention", optional(r.MaxRetention),
		"max_frequency", optional(r.MaxFrequency), "no_onward_transfer", ast.BooleanTerm(r.NoOnwardTransfer),
		"min_compensation", r.MinCompensation.ast(), "from_ns", num(r.FromNS), "until_ns", num(r.UntilNS),
		"what", str(r.What),
		"cover_categories", boolSet(r.CoverCategories), "touch_categories", boolSet(r.TouchCategories),
		"any_category", ast.BooleanTerm(r.AnyCategory),
		"firm_set", boolSet(r.FirmSet), "any_firm", ast.BooleanTerm(r.AnyFirm),
		"sector_set", boolSet(r.SectorSet), "any_sector", ast.BooleanTerm(r.AnySector),
		"jurisdiction_set", boolSet(r.JurisdictionSet), "any_jurisdiction", ast.BooleanTerm(r.AnyJurisdiction))
}

func boolSet(m map[string]bool) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		items = append(items, [2]*ast.Term{str(k), ast.BooleanTerm(m[k])})
	}
	return ast.ObjectTerm(items...)
}

func ints(s []int) *ast.Term {
	ts := make([]*ast.Term, len(s))
	for i, x := range s {
		ts[i] = ast.IntNumberTerm(x)
	}
	return ast.ArrayTerm(ts...)
}

func (x termsIndex) ast() *ast.Term {
	return obj("any_purpose", ints(x.AnyPurpose), "purpose_cover", intLists(x.PurposeCover), "purpose_within", intLists(x.PurposeWithin))
}

func intLists(m map[string][]int) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		items = append(items, [2]*ast.Term{str(k), ints(m[k])})
	}
	return ast.ObjectTerm(items...)
}

func (t *termsInput) ast() ast.Value {
	rules := make([]*ast.Term, len(t.Rules))
	for i, r := range t.Rules {
		rules[i] = r.ast()
	}
	return obj("hash", str(t.Hash), "rules", ast.ArrayTerm(rules...), "index", t.Index.ast()).Value
}

func (in consentInput) ast() ast.Value {
	return obj("version", num(int64(in.Version)), "now_ns", num(in.NowNS), "customer", in.Customer.ast(),
		"firm", in.Firm.ast(), "request", in.Request.ast(), "terms", ast.NewTerm(in.Terms.value)).Value
}

func (s grantedScope) ast() *ast.Term {
	return obj("categories", strs(s.Categories), "fields", fieldsTerm(s.Fields), "purpose", str(s.Purpose),
		"frequency", s.Frequency.ast())
}

func (c consentState) ast() *ast.Term {
	return obj("id", str(c.ID), "firm_id", str(c.FirmID), "state", str(c.State), "explicit", ast.BooleanTerm(c.Explicit),
		"scope", c.Scope.ast(), "decided_at_ns", num(c.DecidedAtNS), "expires_at_ns", num(c.ExpiresAtNS),
		"decided_text", str(c.DecidedText), "expires_text", str(c.ExpiresText), "scope_text", str(c.ScopeText))
}

func (in accessInput) countsAST() *ast.Term {
	counts := make([][2]*ast.Term, 0, len(in.Counts))
	for _, k := range slices.Sorted(maps.Keys(in.Counts)) {
		counts = append(counts, [2]*ast.Term{str(k), num(int64(in.Counts[k]))})
	}
	return ast.ObjectTerm(counts...)
}

func (in accessInput) ast() ast.Value {
	return obj("version", num(int64(in.Version)), "now_ns", num(in.NowNS), "customer", in.Customer.ast(),
		"firm", in.Firm.ast(), "request", in.Request.ast(), "consent", in.Consent.ast(),
		"terms", ast.NewTerm(in.Terms.value), "counts", in.countsAST()).Value
}
