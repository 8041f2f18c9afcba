package export

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
)

// The consent records follow "Consent Records and Receipts as per ISO/IEC
// TS 27560:2023 using DPV" (https://w3id.org/dpv/guides/consent-27560),
// profile dpv-27560#record:
//
//	27560 field              DPV term                    Steward source
//	schema version           dct:conformsTo              RecordSchema
//	record identifier        dct:identifier              consent id
//	PII principal            dpv:hasDataSubject          the firm's pairwise pseudonym
//	PII controller           dpv:hasDataController       the firm
//	jurisdiction             dpv:hasJurisdiction         the customer's country (loc:)
//	purpose                  dpv:hasProcess/hasPurpose   scope purpose (dpv:)
//	PII type                 dpv:hasProcess/hasPersonalData  scope categories (pd:)
//	consent type             dpv:hasLegalBasis           dpv:ExpressedConsent, or
//	                                                     dpv:ExplicitlyExpressedConsent for special categories
//	event: state             dpv:hasConsentStatus/@type  one per history event (ConsentStatus below)
//	event: time              dpv:isIndicatedAtTime       event time, UTC
//	event: duration          dpv:hasDuration             dpv:TemporalDuration, ISO 8601
//	event: by entity         dpv:isIndicatedBy           dpv:DataSubject, the firm, or Steward
//	(metadata)               dct:created, dct:modified   requested, last event
//
// The data subject is always the pseudonym the firm knows the customer by,
// never a name, email or Steward customer id.

// RecordSchema is the dct:conformsTo of every consent record.
const RecordSchema = "https://w3id.org/dpv/schema/dpv-27560#record"

// BrokerIRI names Steward itself when it, rather than the customer or the
// firm, moved a consent (expiry, a decision under standing terms).
const BrokerIRI = "urn:steward:broker"

// jsonldContext is inline so the document is self-contained offline.
var jsonldContext = map[string]any{
	"dpv":                   "https://w3id.org/dpv#",
	"pd":                    "https://w3id.org/dpv/pd#",
	"sector-finance":        "https://w3id.org/dpv/sector/finance#",
	"loc":                   "https://w3id.org/dpv/loc#",
	"dct":                   "http://purl.org/dc/terms/",
	"rdf":                   "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
	"skos":                  "http://www.w3.org/2004/02/skos/core#",
	"xsd":                   "http://www.w3.org/2001/XMLSchema#",
	"dct:conformsTo":        map[string]any{"@type": "@id"},
	"dct:created":           map[string]any{"@type": "xsd:dateTime"},
	"dct:modified":          map[string]any{"@type": "xsd:dateTime"},
	"dpv:isIndicatedAtTime": map[string]any{"@type": "xsd:dateTime"},
	"dpv:hasDataController": map[string]any{"@type": "@id"},
	"dpv:hasJurisdiction":   map[string]any{"@type": "@id"},
	"dpv:hasLegalBasis":     map[string]any{"@type": "@id"},
	"dpv:hasPurpose":        map[string]any{"@type": "@id"},
	"dpv:hasPersonalData":   map[string]any{"@type": "@id"},
	"dpv:isIndicatedBy":     map[string]any{"@type": "@id"},
	"skos:broader":          map[string]any{"@type": "@id"},
}

// ConsentStatus maps a consent state to its DPV consent status.
var ConsentStatus = map[broker.ConsentState]string{
	broker.ConsentRequested: "dpv:ConsentRequested",
	broker.ConsentGranted:   "dpv:ConsentGiven",
	broker.ConsentDenied:    "dpv:ConsentRefused",
	broker.ConsentRevoked:   "dpv:ConsentWithdrawn",
	broker.ConsentExpired:   "dpv:ConsentExpired",
}

// dpvTerms maps taxonomy names that are not DPV terms of the same name
// to the DPV terms that mean them (DPV 2.x).
var dpvTerms = map[string][]string{
	"HouseholdData":        {"pd:Household"},
	"SexualOrientation":    {"pd:SexualPreference"},
	"RacialOrEthnicOrigin": {"pd:Race", "pd:EthnicOrigin"},
	"CreditChecking":       {"sector-finance:CreditChecking"},
}

// CategoryIRIs returns the DPV personal-data terms (compact IRIs) for a
// taxonomy category.
func CategoryIRIs(category string) []string {
	if t, ok := dpvTerms[category]; ok {
		return t
	}
	return []string{"pd:" + category}
}

// PurposeIRI returns the DPV purpose term (compact IRI) for a taxonomy purpose.
func PurposeIRI(purpose string) string {
	if t, ok := dpvTerms[purpose]; ok {
		return t[0]
	}
	return "dpv:" + purpose
}

// ConsentRecords returns the JSON-LD document of the archive's consents:
// an inline @context and an @graph of dpv:ConsentRecord nodes.
func ConsentRecords(a *Archive) (json.RawMessage, error) {
	firms := map[broker.FirmID]broker.Firm{}
	for _, f := range a.Firms {
		firms[f.ID] = f
	}
	psn := map[broker.FirmID]broker.Pseudonym{}
	for _, p := range a.Pseudonyms {
		psn[p.FirmID] = p.Pseudonym
	}
	graph := make([]any, 0, len(a.Consents))
	for _, c := range a.Consents {
		graph = append(graph, consentRecord(a.Customer, firms[c.FirmID], psn[c.FirmID], c))
	}
	return json.Marshal(map[string]any{"@context": jsonldContext, "@graph": graph})
}

func consentRecord(cus broker.Customer, f broker.Firm, p broker.Pseudonym, c Consent) map[string]any {
	scope := c.Granted
	if len(scope.Categories) == 0 {
		scope = c.Requested
	}
	var data []any
	basis := "dpv:ExpressedConsent"
	for _, name := range scope.Categories {
		cat, _ := broker.CategoryByName(name)
		for _, iri := range CategoryIRIs(name) {
			if cat.Special {
				basis = "dpv:ExplicitlyExpressedConsent"
				data = append(data, map[string]any{"@type": "dpv:SpecialCategoryPersonalData", "skos:broader": iri})
			} else {
				data = append(data, iri)
			}
		}
	}
	process := map[string]any{
		"@type":               "dpv:Process",
		"dpv:hasPurpose":      PurposeIRI(scope.Purpose),
		"dpv:hasPersonalData": data,
		"dpv:hasDuration":     duration(scope.Duration),
	}
	if scope.Frequency.Max > 0 {
		process["dpv:hasFrequency"] = map[string]any{"@type": "dpv:Frequency",
			"rdf:value": scope.Frequency.Max, "dpv:hasDuration": duration(scope.Frequency.Per)}
	}
	subject := map[string]any{"@type": "dpv:DataSubject"}
	if p != "" {
		subject["@id"] = "urn:steward:pseudonym:" + string(p)
		subject["dct:identifier"] = string(p)
	}
	controller := map[string]any{
		"@id":            firmIRI(f.ID),
		"@type":          []string{"dpv:DataController", "dpv:Organisation"},
		"dct:identifier": string(f.ID),
		"dpv:hasName":    f.LegalName,
	}
	if f.Jurisdiction != "" {
		controller["dpv:hasJurisdiction"] = "loc:" + f.Jurisdiction
	}
	var statuses []any
	modified := c.RequestedAt
	for _, ev := range c.History {
		st := map[string]any{
			"@type":                 ConsentStatus[ev.To],
			"dpv:isIndicatedAtTime": ev.At.UTC().Format(time.RFC3339Nano),
			"dpv:isIndicatedBy":     indicatedBy(ev.Actor, c.FirmID),
		}
		if ev.To == broker.ConsentGranted {
			st["dpv:hasDuration"] = duration(ev.Scope.Duration)
		}
		if ev.From == broker.ConsentGranted && ev.To == broker.ConsentGranted {
			st["dct:description"] = "scope narrowed"
		}
		if strings.HasPrefix(ev.Actor, "terms:") {
			st["dpv:hasIndicationMethod"] = "the customer's standing terms (" + strings.TrimPrefix(ev.Actor, "terms:") + ")"
		}
		statuses = append(statuses, st)
		if ev.At.After(modified) {
			modified = ev.At
		}
	}
	rec := map[string]any{
		"@id":                   "urn:steward:consent:" + string(c.ID),
		"@type":                 "dpv:ConsentRecord",
		"dct:identifier":        string(c.ID),
		"dct:conformsTo":        RecordSchema,
		"dct:created":           c.RequestedAt.UTC().Format(time.RFC3339Nano),
		"dct:modified":          modified.UTC().Format(time.RFC3339Nano),
		"dpv:hasDataSubject":    subject,
		"dpv:hasDataController": controller,
		"dpv:hasLegalBasis":     basis,
		"dpv:hasProcess":        process,
		"dpv:hasConsentStatus":  statuses,
	}
	if cus.Jurisdiction != "" {
		rec["dpv:hasJurisdiction"] = "loc:" + cus.Jurisdiction
	}
	return rec
}

func firmIRI(id broker.FirmID) string { return "urn:steward:firm:" + string(id) }

func duration(d broker.Duration) map[string]any {
	return map[string]any{"@type": "dpv:TemporalDuration", "rdf:value": map[string]any{"@value": d.String(), "@type": "xsd:duration"}}
}

// indicatedBy names who moved a consent: the customer ("customer:…" or
// their standing terms, "terms:…") is dpv:DataSubject, the firm is its
// IRI, anything else is Steward.
func indicatedBy(actor string, firm broker.FirmID) string {
	switch {
	case strings.HasPrefix(actor, "customer:"), strings.HasPrefix(actor, "terms:"):
		return "dpv:DataSubject"
	case strings.HasPrefix(actor, "firm:"), actor == "firm":
		return firmIRI(firm)
	}
	return BrokerIRI
}
