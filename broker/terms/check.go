package terms

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/stewardhq/steward/broker"
)

var (
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2}$`)
	currencyRE     = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Check validates a decoded document against the taxonomy and itself.
// Parse calls it; callers that build broker.Terms in Go call it directly.
func Check(t broker.Terms) error {
	if t.Format != broker.TermsFormat {
		return fmt.Errorf("%w: format must be %q", broker.ErrInvalid, broker.TermsFormat)
	}
	if len(t.Rules) > MaxRules {
		return fmt.Errorf("%w: more than %d rules", broker.ErrInvalid, MaxRules)
	}
	for i, r := range t.Rules {
		if err := checkRule(r); err != nil {
			return fmt.Errorf("%w: rule %d: %s", broker.ErrInvalid, i+1, err)
		}
	}
	return checkShadows(t.Rules)
}

type problem string

func (p problem) Error() string { return string(p) }

func problemf(format string, a ...any) error { return problem(fmt.Sprintf(format, a...)) }

func checkRule(r broker.TermsRule) error {
	switch r.Effect {
	case broker.EffectAllow, broker.EffectDeny, broker.EffectAsk:
	default:
		return problemf("effect %q must be allow, deny or ask", r.Effect)
	}
	if !utf8Printable(r.Note) || utf8.RuneCountInString(r.Note) > 500 {
		return problemf("note must be printable text of at most 500 characters")
	}
	m := r.Match
	for _, f := range m.Firms {
		if _, err := broker.ParseFirmID(string(f)); err != nil {
			return problemf("firm %q is not a firm id", f)
		}
	}
	for _, s := range m.Sectors {
		if !slices.Contains(broker.Sectors, s) {
			return problemf("unknown sector %q (known: %s)", s, strings.Join(broker.Sectors, ", "))
		}
	}
	for _, j := range m.Jurisdictions {
		if !jurisdictionRE.MatchString(j) {
			return problemf("jurisdiction %q must be an ISO 3166-1 alpha-2 code such as GB", j)
		}
	}
	for _, c := range m.Categories {
		if _, ok := broker.CategoryByName(c); !ok {
			return problemf("unknown category %q", c)
		}
	}
	for _, p := range m.Purposes {
		if _, ok := broker.PurposeByName(p); !ok {
			return problemf("unknown purpose %q", p)
		}
	}
	c := r.Constraints
	if f := c.MaxFrequency; f != (broker.Frequency{}) && (f.Max <= 0 || f.Per.IsZero()) {
		return problemf("max_frequency needs a positive max and a period")
	}
	if m := c.MinCompensation; m != nil && (!currencyRE.MatchString(m.Currency) || m.Minor < 0) {
		return problemf("min_compensation needs an ISO 4217 currency and an amount of at least 0")
	}
	if !c.ValidFrom.IsZero() && !c.ValidUntil.IsZero() && !c.ValidFrom.Before(c.ValidUntil) {
		return problemf("valid_from must be before valid_until")
	}
	if r.Effect == broker.EffectDeny && (!c.MaxDuration.IsZero() || !c.MaxRetention.IsZero() ||
		c.MaxFrequency != (broker.Frequency{}) || c.NoOnwardTransfer || c.MinCompensation != nil) {
		return problemf("a deny rule refuses outright; only valid_from and valid_until apply to it")
	}
	return nil
}

func utf8Printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\n') || r == 0x7f || r == 0xfffd })
}

// checkShadows refuses rules that can never take effect: an allow or ask
// rule that some deny rule refuses entirely (a deny wins wherever it
// stands), or one that an earlier allow or ask rule always decides first.
func checkShadows(rules []broker.TermsRule) error {
	for i, b := range rules {
		if b.Effect == broker.EffectDeny {
			continue
		}
		for j, a := range rules {
			if j == i {
				continue
			}
			switch {
			case a.Effect == broker.EffectDeny && shadows(a, b):
				return fmt.Errorf("%w: rule %d: this %s never takes effect, because rule %d refuses everything it covers",
					broker.ErrInvalid, i+1, b.Effect, j+1)
			case a.Effect != broker.EffectDeny && j < i && shadows(a, b):
				return fmt.Errorf("%w: rule %d: this %s never takes effect, because rule %d comes first and decides everything it covers; move it above rule %d or remove it",
					broker.ErrInvalid, i+1, b.Effect, j+1, j+1)
			}
		}
	}
	return nil
}

// shadows reports whether rule a applies to every request rule b applies
// to (the same test the Rego in policies/terms.rego makes). It errs
// towards false: a true answer is always right.
func shadows(a, b broker.TermsRule) bool {
	ac, bc := a.Constraints, b.Constraints
	if !ac.ValidFrom.IsZero() && (bc.ValidFrom.IsZero() || bc.ValidFrom.Before(ac.ValidFrom)) {
		return false
	}
	if !ac.ValidUntil.IsZero() && (bc.ValidUntil.IsZero() || bc.ValidUntil.After(ac.ValidUntil)) {
		return false
	}
	if !subset(a.Match.Firms, b.Match.Firms) || !subset(a.Match.Sectors, b.Match.Sectors) ||
		!subset(a.Match.Jurisdictions, b.Match.Jurisdictions) {
		return false
	}
	// b applies to requests under each of its names and, when b is ask,
	// also to requests for their ancestors. a reaches a request it covers,
	// and, when a is deny or ask, one that contains something it names.
	needAncestors := b.Effect != broker.EffectAllow && a.Effect == broker.EffectAllow
	return reaches(a.Match.Categories, b.Match.Categories, needAncestors, categoryAncestors, broker.CategoryCovers) &&
		reaches(a.Match.Purposes, b.Match.Purposes, needAncestors, purposeAncestors, broker.PurposeCovers)
}

// subset reports whether list a (empty: anything) contains all of b.
func subset[T comparable](a, b []T) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

func reaches(a, b []string, needAncestors bool, ancestors func(string) []string, covers func(outer, inner string) bool) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, name := range b {
		want := []string{name}
		if needAncestors {
			want = ancestors(name)
		}
		for _, w := range want {
			if !slices.ContainsFunc(a, func(x string) bool { return covers(x, w) }) {
				return false
			}
		}
	}
	return true
}

// categoryAncestors returns name and its ancestors.
func categoryAncestors(name string) []string {
	var out []string
	for name != "" {
		out = append(out, name)
		c, _ := broker.CategoryByName(name)
		name = c.Parent
	}
	return out
}

// purposeAncestors returns name and its ancestors.
func purposeAncestors(name string) []string {
	var out []string
	for name != "" {
		out = append(out, name)
		p, _ := broker.PurposeByName(name)
		name = p.Parent
	}
	return out
}
