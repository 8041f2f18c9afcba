package terms

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
)

// Namespaces used in the ODRL export.
const (
	odrlContext = "http://www.w3.org/ns/odrl.jsonld"
	dpvNS       = "https://w3id.org/dpv#"
	dpvPDNS     = "https://w3id.org/dpv/pd#"
	stewardNS   = "https://steward.example/ns/terms#"
)

// ODRL returns t as an ODRL 2.2 policy in JSON-LD, so the terms can be
// read outside Steward. uid names the policy (for example
// "urn:steward:terms:" + hash) and assigner the customer (a pseudonym,
// never a name).
//
// The mapping: a deny rule is a prohibition of odrl:use; allow and ask rules
// are permissions of odrl:use, an ask rule carrying the duty
// odrl:obtainConsent. Each category named by a rule becomes its own ODRL
// rule, because an ODRL rule has exactly one target. Purposes, sectors,
// firms and jurisdictions become constraints (purpose, steward:sector,
// recipient, spatial); max_duration is elapsedTime; max_frequency is count
// within a timeInterval; max_retention is a duty to delete; a minimum
// compensation is a duty to compensate with payAmount; no_onward_transfer
// is a prohibition of odrl:distribute; the validity window is dateTime.
func ODRL(t broker.Terms, uid, assigner string) ([]byte, error) {
	p := odrlPolicy{
		Context: []any{odrlContext, map[string]string{"dpv": dpvNS, "pd": dpvPDNS, "steward": stewardNS}},
		Type:    "Set", UID: uid, Profile: stewardNS + "v1",
		Permission: []odrlRule{}, Prohibition: []odrlRule{},
	}
	for i, r := range t.Rules {
		n := i + 1
		targets := make([]string, 0, len(r.Match.Categories))
		for _, c := range r.Match.Categories {
			targets = append(targets, "pd:"+c)
		}
		if len(targets) == 0 {
			targets = []string{"steward:AllPersonalData"}
		}
		cons := constraints(r)
		for k, target := range targets {
			o := odrlRule{UID: fmt.Sprintf("%s#rule-%d", uid, n), Target: target, Action: "use", Assigner: assigner, Constraint: cons}
			if len(targets) > 1 {
				o.UID = fmt.Sprintf("%s#rule-%d-%d", uid, n, k+1)
			}
			if r.Effect == broker.EffectDeny {
				p.Prohibition = append(p.Prohibition, o)
				continue
			}
			o.Duty = duties(r)
			p.Permission = append(p.Permission, o)
			if r.Constraints.NoOnwardTransfer {
				d := o
				d.UID, d.Action, d.Duty = o.UID+"-onward", "distribute", nil
				p.Prohibition = append(p.Prohibition, d)
			}
		}
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("terms: odrl: %w", err)
	}
	return b, nil
}

type odrlPolicy struct {
	Context     []any      `json:"@context"`
	Type        string     `json:"@type"`
	UID         string     `json:"uid"`
	Profile     string     `json:"profile"`
	Permission  []odrlRule `json:"permission"`
	Prohibition []odrlRule `json:"prohibition"`
}

type odrlRule struct {
	UID        string           `json:"uid"`
	Target     string           `json:"target"`
	Action     string           `json:"action"`
	Assigner   string           `json:"assigner,omitempty"`
	Constraint []odrlConstraint `json:"constraint,omitempty"`
	Duty       []odrlDuty       `json:"duty,omitempty"`
}

type odrlDuty struct {
	Action     string           `json:"action"`
	Constraint []odrlConstraint `json:"constraint,omitempty"`
}

type odrlConstraint struct {
	LeftOperand  string `json:"leftOperand"`
	Operator     string `json:"operator"`
	RightOperand any    `json:"rightOperand"`
	Unit         string `json:"unit,omitempty"`
}

type typed struct {
	Value string `json:"@value"`
	Type  string `json:"@type"`
}

func duration(d broker.Duration) typed { return typed{d.String(), "xsd:duration"} }

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

func constraints(r broker.TermsRule) []odrlConstraint {
	var cs []odrlConstraint
	m, c := r.Match, r.Constraints
	if len(m.Purposes) > 0 {
		cs = append(cs, odrlConstraint{LeftOperand: "purpose", Operator: "isAnyOf", RightOperand: prefixed("dpv:", m.Purposes)})
	}
	if len(m.Firms) > 0 {
		firms := make([]string, len(m.Firms))
		for i, f := range m.Firms {
			firms[i] = "urn:steward:firm:" + string(f)
		}
		cs = append(cs, odrlConstraint{LeftOperand: "recipient", Operator: "isAnyOf", RightOperand: firms})
	}
	if len(m.Sectors) > 0 {
		cs = append(cs, odrlConstraint{LeftOperand: "steward:sector", Operator: "isAnyOf", RightOperand: m.Sectors})
	}
	if len(m.Jurisdictions) > 0 {
		cs = append(cs, odrlConstraint{LeftOperand: "spatial", Operator: "isAnyOf", RightOperand: prefixed("urn:iso:std:iso:3166:", m.Jurisdictions)})
	}
	if !c.MaxDuration.IsZero() {
		cs = append(cs, odrlConstraint{LeftOperand: "elapsedTime", Operator: "lteq", RightOperand: duration(c.MaxDuration)})
	}
	if c.MaxFrequency.Max > 0 {
		cs = append(cs,
			odrlConstraint{LeftOperand: "count", Operator: "lteq", RightOperand: c.MaxFrequency.Max},
			odrlConstraint{LeftOperand: "timeInterval", Operator: "eq", RightOperand: duration(c.MaxFrequency.Per)})
	}
	if !c.ValidFrom.IsZero() {
		cs = append(cs, odrlConstraint{LeftOperand: "dateTime", Operator: "gteq", RightOperand: typed{c.ValidFrom.UTC().Format(time.RFC3339), "xsd:dateTime"}})
	}
	if !c.ValidUntil.IsZero() {
		cs = append(cs, odrlConstraint{LeftOperand: "dateTime", Operator: "lt", RightOperand: typed{c.ValidUntil.UTC().Format(time.RFC3339), "xsd:dateTime"}})
	}
	return cs
}

func duties(r broker.TermsRule) []odrlDuty {
	var ds []odrlDuty
	c := r.Constraints
	if r.Effect == broker.EffectAsk {
		ds = append(ds, odrlDuty{Action: "obtainConsent"})
	}
	if !c.MaxRetention.IsZero() {
		ds = append(ds, odrlDuty{Action: "delete", Constraint: []odrlConstraint{
			{LeftOperand: "elapsedTime", Operator: "lteq", RightOperand: duration(c.MaxRetention)}}})
	}
	if m := c.MinCompensation; m != nil {
		ds = append(ds, odrlDuty{Action: "compensate", Constraint: []odrlConstraint{
			{LeftOperand: "payAmount", Operator: "gteq", RightOperand: typed{MoneyText(*m, false), "xsd:decimal"},
				Unit: "urn:iso:std:iso:4217:" + m.Currency}}})
	}
	return ds
}

// MoneyText formats m as a decimal ("2.50"), with its currency code after
// it when withCurrency ("2.50 GBP"). Minor units are taken as hundredths.
func MoneyText(m broker.Money, withCurrency bool) string {
	s := fmt.Sprintf("%d.%02d", m.Minor/100, m.Minor%100)
	if withCurrency {
		s += " " + m.Currency
	}
	return s
}
