package broker

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// DecisionKind says which question a decision answered.
type DecisionKind string

const (
	// DecisionConsent answers a firm's request for consent.
	DecisionConsent DecisionKind = "consent"
	// DecisionAccess answers one disclosure under a consent.
	DecisionAccess DecisionKind = "access"
)

// Reason sources: who or what decided.
const (
	ReasonTerms      = "terms"      // the customer's own rule
	ReasonRegulation = "regulation" // the regulator's baseline rules
	ReasonConsent    = "consent"    // the state or scope of the consent
	ReasonFirm       = "firm"       // the firm's standing with the operator
	ReasonPolicy     = "policy"     // the policy could not decide, so it refused
)

// Reason is one human-readable reason for a decision, written for the
// customer ("Your rule 2 allows Marketing by retail firms for up to 90 days.").
type Reason struct {
	// Source is one of the Reason* constants.
	Source string `json:"source"`
	// Rule is the 1-based number of the customer's rule that decided, or 0.
	Rule int    `json:"rule,omitempty"`
	Text string `json:"text"`
}

// Decision is the policy's answer to one request.
type Decision struct {
	Kind   DecisionKind `json:"kind"`
	Effect Effect       `json:"effect"`
	// Scope is, for allow, what may be granted (consent) or disclosed
	// (access); for ask, the most the customer may grant; for deny, empty.
	// It is never wider than the request.
	Scope   Scope    `json:"scope"`
	Reasons []Reason `json:"reasons"`
	// TermsHash identifies the customer's terms version that was applied
	// ("" when the customer has no terms).
	TermsHash string `json:"terms_hash"`
	// PolicyHash identifies the policy bundle that decided.
	PolicyHash string    `json:"policy_hash"`
	DecidedAt  time.Time `json:"decided_at"`
}

// Allowed reports whether the decision lets the request through without
// asking anyone.
func (d Decision) Allowed() bool { return d.Effect == EffectAllow }

// DecisionRecordVersion is the version of the DecisionRecord layout that
// Hash covers.
const DecisionRecordVersion = 1

// DecisionRecord is what is stored about a decision so that the customer
// and a regulator can later see why a request was allowed or refused.
type DecisionRecord struct {
	Version    int          `json:"version"`
	CustomerID CustomerID   `json:"customer_id"`
	FirmID     FirmID       `json:"firm_id"`
	ConsentID  ConsentID    `json:"consent_id,omitempty"`
	Request    DataRequest  `json:"request"`
	Decision   Decision     `json:"decision"`
	Kind       DecisionKind `json:"kind"`
}

// NewDecisionRecord builds the record of decision d on request req.
func NewDecisionRecord(cus CustomerID, firm FirmID, consent ConsentID, req DataRequest, d Decision) DecisionRecord {
	return DecisionRecord{Version: DecisionRecordVersion, Kind: d.Kind, CustomerID: cus, FirmID: firm,
		ConsentID: consent, Request: req, Decision: d}
}

// Canonical returns the record's canonical JSON: lists sorted and never
// null, times in UTC at microsecond precision (what PostgreSQL keeps), so
// a record read back from a store hashes as it did when written.
func (r DecisionRecord) Canonical() ([]byte, error) {
	r.Request.Scope = canonicalScope(r.Request.Scope)
	r.Decision.Scope = canonicalScope(r.Decision.Scope)
	r.Decision.Reasons = slices.Clone(r.Decision.Reasons)
	if r.Decision.Reasons == nil {
		r.Decision.Reasons = []Reason{}
	}
	r.Decision.DecidedAt = r.Decision.DecidedAt.UTC().Truncate(time.Microsecond)
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: decision record: %w", ErrInvalid, err)
	}
	return b, nil
}

// Hash returns "sha256:" + hex of the record's canonical JSON.
func (r DecisionRecord) Hash() (string, error) {
	b, err := r.Canonical()
	if err != nil {
		return "", err
	}
	return HashDocument(b), nil
}

// SealedDecision is a decision record with its canonical JSON and that
// JSON's hash (what ledger entries cite), computed once by SealDecision.
// Its fields are unexported, so outside this package a SealedDecision's
// bytes always match its record: a store writes them as they are.
type SealedDecision struct {
	record DecisionRecord
	raw    []byte
	hash   string
}

// SealDecision canonicalises r and hashes it.
func SealDecision(r DecisionRecord) (SealedDecision, error) {
	raw, err := r.Canonical()
	if err != nil {
		return SealedDecision{}, err
	}
	return SealedDecision{record: r, raw: raw, hash: HashDocument(raw)}, nil
}

// Record is the decision record sealed.
func (s SealedDecision) Record() DecisionRecord { return s.record }

// Canonical is the record's canonical JSON; the caller must not modify it.
// It is empty for the zero SealedDecision, which seals nothing.
func (s SealedDecision) Canonical() []byte { return s.raw }

// Hash is "sha256:" + hex of Canonical.
func (s SealedDecision) Hash() string { return s.hash }

func canonicalScope(s Scope) Scope {
	s.Categories = slices.Clone(s.Categories)
	if s.Categories == nil {
		s.Categories = []string{}
	}
	if len(s.Fields) == 0 {
		s.Fields = nil
	} else {
		f := make(map[string][]string, len(s.Fields))
		for _, k := range slices.Sorted(maps.Keys(s.Fields)) {
			f[k] = append([]string{}, s.Fields[k]...)
		}
		s.Fields = f
	}
	s.Normalize()
	return s
}
