package broker

import "time"

// TermsFormat names the version of the terms language a document is written
// in. A document MUST carry it in its "format" field; a later language
// version gets a new name and both are accepted while it lasts.
const TermsFormat = "steward.terms/v1"

// Effect is what a rule (or a decision) says about a request.
type Effect string

const (
	// EffectAllow grants without asking the customer.
	EffectAllow Effect = "allow"
	// EffectDeny refuses. A deny always overrides an allow.
	EffectDeny Effect = "deny"
	// EffectAsk sends the request to the customer to answer.
	EffectAsk Effect = "ask"
)

// Terms is a customer's sharing terms: an ordered list of rules. Firms
// accept the customer's terms, not the other way round.
//
// Evaluation, for each requested category: a matching deny rule refuses
// it, wherever the rule stands; otherwise the first matching allow or ask
// rule decides; when nothing matches, the customer is asked. The reference
// is docs/terms.md; the schema is policies/terms.schema.json.
type Terms struct {
	Format string      `json:"format"`
	Rules  []TermsRule `json:"rules"`
}

// TermsRule is one rule of a terms document. Rules are numbered from 1 in
// reasons and error messages.
type TermsRule struct {
	Effect Effect `json:"effect"`
	// Note is the customer's own words for the rule; never interpreted.
	Note        string          `json:"note,omitempty"`
	Match       TermsMatch      `json:"match,omitzero"`
	Constraints TermsConstraint `json:"constraints,omitzero"`
}

// TermsMatch says which requests a rule is about. An empty list matches
// anything. Categories and purposes follow the taxonomy's hierarchy: a
// parent covers its children.
type TermsMatch struct {
	Firms         []FirmID `json:"firms,omitempty"`
	Sectors       []string `json:"sectors,omitempty"`
	Jurisdictions []string `json:"jurisdictions,omitempty"`
	Categories    []string `json:"categories,omitempty"`
	Purposes      []string `json:"purposes,omitempty"`
}

// TermsConstraint limits what a rule allows. Durations and frequencies
// narrow a grant; retention, onward transfer and compensation are
// conditions a request must meet for the rule to allow it; the validity
// window bounds when the rule applies at all.
type TermsConstraint struct {
	MaxDuration      Duration  `json:"max_duration,omitzero"`
	MaxRetention     Duration  `json:"max_retention,omitzero"`
	MaxFrequency     Frequency `json:"max_frequency,omitzero"`
	NoOnwardTransfer bool      `json:"no_onward_transfer,omitempty"`
	MinCompensation  *Money    `json:"min_compensation,omitempty"`
	// ValidFrom and ValidUntil bound the rule in time: it applies at t when
	// ValidFrom ≤ t < ValidUntil. A zero time is no bound.
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// Money is an amount in a currency's minor units (pence, cents).
type Money struct {
	// Currency is an ISO 4217 code such as GBP or EUR.
	Currency string `json:"currency"`
	// Minor is the amount in minor units: 250 GBP-minor is £2.50.
	Minor int64 `json:"minor"`
}

// DataRequest is what a firm asks a customer for: a scope, plus the
// promises the firm makes about it that terms can put conditions on.
type DataRequest struct {
	Scope Scope `json:"scope"`
	// Retention is how long the firm says it keeps disclosed data; zero
	// means the firm did not say.
	Retention Duration `json:"retention,omitzero"`
	// OnwardTransfer says the firm wants to pass the data on to others.
	OnwardTransfer bool `json:"onward_transfer,omitempty"`
	// Compensation is what the firm offers (marketplace offers), if anything.
	Compensation *Money `json:"compensation,omitempty"`
}
