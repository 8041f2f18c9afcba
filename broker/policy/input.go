package policy

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/terms"
)

// InputVersion is the version of the input document the policies read.
// A change that a policy could notice gets a new version.
const InputVersion = 1

// The input document, version 1. The Go structs are the contract (their
// JSON is what `opa eval -i` takes); the ast methods build the same value
// directly, without a JSON round trip, because this runs on every request.
// TestInputAST keeps the two in step.

type consentInput struct {
	Version  int           `json:"version"`
	NowNS    int64         `json:"now_ns"`
	Customer customerInput `json:"customer"`
	Firm     firmInput     `json:"firm"`
	Request  requestInput  `json:"request"`
	Terms    *termsInput   `json:"terms"`
}

type accessInput struct {
	Version  int            `json:"version"`
	NowNS    int64          `json:"now_ns"`
	Customer customerInput  `json:"customer"`
	Firm     firmInput      `json:"firm"`
	Request  requestInput   `json:"request"`
	Consent  consentState   `json:"consent"`
	Terms    *termsInput    `json:"terms"`
	Counts   map[string]int `json:"counts"`
}

type customerInput struct {
	Jurisdiction string `json:"jurisdiction"`
	Minor        bool   `json:"minor"`
}

type firmInput struct {
	ID           string `json:"id"`
	Sector       string `json:"sector"`
	Jurisdiction string `json:"jurisdiction"`
	Status       string `json:"status"`
}

// requestInput is what is asked for. Access requests leave the consent-only
// fields at their zero values.
type requestInput struct {
	Categories     []string            `json:"categories"`
	Fields         map[string][]string `json:"fields"`
	Purpose        string              `json:"purpose"`
	Duration       durationInput       `json:"duration"`
	Frequency      frequencyInput      `json:"frequency"`
	Retention      durationInput       `json:"retention"`
	OnwardTransfer bool                `json:"onward_transfer"`
	Compensation   *moneyInput         `json:"compensation"`
}

type consentState struct {
	ID          string       `json:"id"`
	FirmID      string       `json:"firm_id"`
	State       string       `json:"state"`
	Explicit    bool         `json:"explicit"`
	Scope       grantedScope `json:"scope"`
	DecidedAtNS int64        `json:"decided_at_ns"`
	ExpiresAtNS int64        `json:"expires_at_ns"`
	DecidedText string       `json:"decided_text"`
	ExpiresText string       `json:"expires_text"`
	// ScopeText says what was granted: "Contact details, Purchase history
	// for marketing".
	ScopeText string `json:"scope_text"`
}

type grantedScope struct {
	Categories []string            `json:"categories"`
	Fields     map[string][]string `json:"fields"`
	Purpose    string              `json:"purpose"`
	Frequency  frequencyInput      `json:"frequency"`
}

// durationInput is an ISO 8601 duration with its length in seconds
// (broker.Duration.Approx) and words for people. S is 0 for "not given".
type durationInput struct {
	ISO  string `json:"iso"`
	S    int64  `json:"s"`
	Text string `json:"text"`
}

type frequencyInput struct {
	Max  int    `json:"max"`
	Per  string `json:"per"`
	PerS int64  `json:"per_s"`
	Text string `json:"text"`
}

type moneyInput struct {
	Currency string `json:"currency"`
	Minor    int64  `json:"minor"`
	Text     string `json:"text"`
}

type termsInput struct {
	Hash  string      `json:"hash"`
	Rules []ruleInput `json:"rules"`
	Index termsIndex  `json:"index"`

	value  ast.Value // built once per terms version
	bounds []int64   // the rules' window boundaries (see windowStart)
}

// ruleInput is a terms rule as the policies see it: numbered, constraints
// as numbers, and a phrase saying what it covers ("sharing contact details
// for marketing with retail firms").
type ruleInput struct {
	N                int             `json:"n"`
	Effect           string          `json:"effect"`
	Firms            []string        `json:"firms"`
	Sectors          []string        `json:"sectors"`
	Jurisdictions    []string        `json:"jurisdictions"`
	Categories       []string        `json:"categories"`
	Purposes         []string        `json:"purposes"`
	MaxDuration      *durationInput  `json:"max_duration"`
	MaxRetention     *durationInput  `json:"max_retention"`
	MaxFrequency     *frequencyInput `json:"max_frequency"`
	NoOnwardTransfer bool            `json:"no_onward_transfer"`
	MinCompensation  *moneyInput     `json:"min_compensation"`
	FromNS           int64           `json:"from_ns"`
	UntilNS          int64           `json:"until_ns"`
	What             string          `json:"what"`

	// The rule's names as lookups, expanded along the taxonomy (see
	// policies/terms.rego): Cover* holds the names and everything under
	// them, Touch* that plus everything above them.
	CoverCategories map[string]bool `json:"cover_categories"`
	TouchCategories map[string]bool `json:"touch_categories"`
	AnyCategory     bool            `json:"any_category"`
	FirmSet         map[string]bool `json:"firm_set"`
	AnyFirm         bool            `json:"any_firm"`
	SectorSet       map[string]bool `json:"sector_set"`
	AnySector       bool            `json:"any_sector"`
	JurisdictionSet map[string]bool `json:"jurisdiction_set"`
	AnyJurisdiction bool            `json:"any_jurisdiction"`
}

// termsIndex lets the policy find the rules that may concern a purpose
// without walking them all. PurposeCover maps a purpose to the numbers
// (from 1, in order) of the rules naming it or a purpose above it,
// PurposeWithin to those naming a purpose below it; AnyPurpose lists the
// rules naming no purpose.
type termsIndex struct {
	AnyPurpose    []int            `json:"any_purpose"`
	PurposeCover  map[string][]int `json:"purpose_cover"`
	PurposeWithin map[string][]int `json:"purpose_within"`
}

// lookup turns a list into {item: true}.
func lookup[T ~string](list []T) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, x := range list {
		m[string(x)] = true
	}
	return m
}

// expand returns the names that names cover (each name and its
// descendants) and those they touch (that plus their ancestors). Names the
// taxonomy does not know expand to nothing.
func expand(names []string, entries map[string]taxonomyEntry) (cover, touch map[string]bool) {
	cover, touch = map[string]bool{}, map[string]bool{}
	for _, n := range names {
		if e, ok := entries[n]; ok {
			for a := range e.Ancestors {
				touch[a] = true
			}
		}
	}
	for name, e := range entries {
		for _, n := range names {
			if e.Ancestors[n] {
				cover[name], touch[name] = true, true
				break
			}
		}
	}
	return cover, touch
}

// ---- building inputs ----

func newCustomerInput(c broker.Customer) customerInput {
	return customerInput{Jurisdiction: c.Jurisdiction, Minor: c.Minor}
}

func newFirmInput(f broker.Firm) firmInput {
	return firmInput{ID: string(f.ID), Sector: f.Sector, Jurisdiction: f.Jurisdiction, Status: string(f.Status)}
}

func newDuration(d broker.Duration) durationInput {
	if d.IsZero() {
		return durationInput{}
	}
	return durationInput{ISO: d.String(), S: int64(d.Approx() / time.Second), Text: durationText(d)}
}

func newFrequency(f broker.Frequency) frequencyInput {
	if f.Max <= 0 || f.Per.IsZero() {
		return frequencyInput{}
	}
	return frequencyInput{Max: f.Max, Per: f.Per.String(), PerS: int64(f.Per.Approx() / time.Second), Text: frequencyText(f)}
}

func newMoney(m *broker.Money) *moneyInput {
	if m == nil {
		return nil
	}
	return &moneyInput{Currency: m.Currency, Minor: m.Minor, Text: terms.MoneyText(*m, true)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func fieldsInput(f map[string][]string) map[string][]string {
	out := make(map[string][]string, len(f))
	for k, v := range f {
		out[k] = nonNil(v)
	}
	return out
}

func newTermsInput(hash string, t broker.Terms, tax *taxonomyData) *termsInput {
	in := &termsInput{Hash: hash, Rules: make([]ruleInput, len(t.Rules)),
		Index: termsIndex{AnyPurpose: []int{}, PurposeCover: map[string][]int{}, PurposeWithin: map[string][]int{}}}
	for i, r := range t.Rules {
		c := r.Constraints
		ri := ruleInput{
			N: i + 1, Effect: string(r.Effect),
			Firms:         make([]string, len(r.Match.Firms)),
			Sectors:       nonNil(r.Match.Sectors),
			Jurisdictions: nonNil(r.Match.Jurisdictions),
			Categories:    nonNil(r.Match.Categories),
			Purposes:      nonNil(r.Match.Purposes),
			FromNS:        math.MinInt64, UntilNS: math.MaxInt64,
			NoOnwardTransfer: c.NoOnwardTransfer,
			MinCompensation:  newMoney(c.MinCompensation),
			What:             whatText(r.Match, tax),
		}
		for k, f := range r.Match.Firms {
			ri.Firms[k] = string(f)
		}
		if !c.MaxDuration.IsZero() {
			d := newDuration(c.MaxDuration)
			ri.MaxDuration = &d
		}
		if !c.MaxRetention.IsZero() {
			d := newDuration(c.MaxRetention)
			ri.MaxRetention = &d
		}
		if f := newFrequency(c.MaxFrequency); f.Max > 0 {
			ri.MaxFrequency = &f
		}
		if !c.ValidFrom.IsZero() {
			ri.FromNS = unixNano(c.ValidFrom)
		}
		if !c.ValidUntil.IsZero() {
			ri.UntilNS = unixNano(c.ValidUntil)
		}
		ri.CoverCategories, ri.TouchCategories = expand(r.Match.Categories, tax.Categories)
		ri.AnyCategory = len(r.Match.Categories) == 0
		ri.FirmSet, ri.AnyFirm = lookup(r.Match.Firms), len(r.Match.Firms) == 0
		ri.SectorSet, ri.AnySector = lookup(r.Match.Sectors), len(r.Match.Sectors) == 0
		ri.JurisdictionSet, ri.AnyJurisdiction = lookup(r.Match.Jurisdictions), len(r.Match.Jurisdictions) == 0
		in.Rules[i] = ri
		if len(r.Match.Purposes) == 0 {
			in.Index.AnyPurpose = append(in.Index.AnyPurpose, ri.N)
		}
		cover, touch := expand(r.Match.Purposes, tax.Purposes)
		for _, p := range slices.Sorted(maps.Keys(touch)) {
			if cover[p] {
				in.Index.PurposeCover[p] = append(in.Index.PurposeCover[p], ri.N)
			} else {
				in.Index.PurposeWithin[p] = append(in.Index.PurposeWithin[p], ri.N)
			}
		}
	}
	in.value = in.ast()
	in.bounds = ruleBounds(in.Rules)
	return in
}

// unixNano is t in nanoseconds, clamped to what int64 holds.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
