// Package rar implements OAuth 2.0 Rich Authorization Requests (RFC 9396)
// for Steward: the authorization_details type steward_customer_data, its
// strict parser, its conversion to and from broker.Scope, and the fosite
// handlers that validate it at the PAR endpoint and carry the granted
// details to the token and introspection responses.
//
// # The steward_customer_data type
//
//	[{
//	  "type": "steward_customer_data",
//	  "categories": ["EmailAddress", "PurchasesAndSpendingHabit"],
//	  "fields": {"EmailAddress": ["address"]},
//	  "purpose": "DirectMarketing",
//	  "duration": "P90D",
//	  "frequency": {"max": 4, "per": "P1D"},
//	  "actions": ["read"],
//	  "locations": ["https://api.steward.example/v1/data"]
//	}]
//
// categories, purpose and duration are REQUIRED; fields, frequency, actions
// and locations are OPTIONAL. Names are those of the broker taxonomy (DPV).
//
// # Contracts
//
// Parse MUST refuse, with an invalid_authorization_details error whose hint
// starts with a stable reason code (see the Reason constants and ReasonOf):
// input that is not a JSON array of objects or is larger than MaxSize;
// duplicate object members; an empty array anywhere; more than MaxDetails
// details; a missing or unknown type; members this type does not define
// (member names match exactly); unknown categories or purposes; a category
// named twice; fields for a category not requested; a malformed or zero
// duration; a duration longer than the regulatory bound for the purpose;
// a malformed frequency; actions or locations the server does not offer.
// It never echoes more than a short, quoted prefix of the input.
//
// Granted details MUST be within the requested ones (Within); the consent
// step narrows, it never widens.
package rar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
)

// Type is the authorization_details type Steward defines.
const Type = "steward_customer_data"

// FormKey is the request parameter that carries authorization details.
const FormKey = "authorization_details"

// ErrorCode is the OAuth error code of RFC 9396 §5.
const ErrorCode = "invalid_authorization_details"

// ErrInvalidAuthorizationDetails is returned for every refused input; match
// it with errors.Is and read the reason with ReasonOf.
var ErrInvalidAuthorizationDetails = &fosite.RFC6749Error{
	ErrorField:       ErrorCode,
	DescriptionField: "The authorization_details are invalid.",
	CodeField:        http.StatusBadRequest,
}

// Reason codes: stable, machine-readable causes of a refusal. Each hint
// starts with its code followed by ": ".
const (
	ReasonMissing         = "missing"
	ReasonMalformed       = "malformed"
	ReasonTooLarge        = "too_large"
	ReasonTooMany         = "too_many_details"
	ReasonEmpty           = "empty_array"
	ReasonMissingType     = "missing_type"
	ReasonUnknownType     = "unknown_type"
	ReasonUnknownMember   = "unknown_member"
	ReasonMissingMember   = "missing_member"
	ReasonUnknownCategory = "unknown_category"
	ReasonDuplicate       = "duplicate_value"
	ReasonUnknownPurpose  = "unknown_purpose"
	ReasonBadDuration     = "malformed_duration"
	ReasonDurationBound   = "duration_exceeds_bound"
	ReasonBadFrequency    = "malformed_frequency"
	ReasonBadFields       = "malformed_fields"
	ReasonUnknownAction   = "unknown_action"
	ReasonUnknownLocation = "unknown_location"
)

// Error describes why authorization details were refused. It is the cause
// wrapped inside the *fosite.RFC6749Error that Parse returns.
type Error struct {
	// Reason is one of the Reason constants.
	Reason string
	// Path locates the offending value, e.g. "[0].categories[2]"; may be empty.
	Path string
	// Msg explains the refusal to a developer.
	Msg string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Reason + ": " + e.Msg
	}
	return e.Reason + ": authorization_details" + e.Path + ": " + e.Msg
}

// ReasonOf returns the reason code of an error from this package, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(reason, path, format string, args ...any) error {
	e := &Error{Reason: reason, Path: path, Msg: fmt.Sprintf(format, args...)}
	return ErrInvalidAuthorizationDetails.WithHint(e.Error()).WithWrap(e)
}

// quote renders untrusted input for a hint: quoted and cut short.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// Detail is one authorization_details object of type steward_customer_data.
// Its JSON form is the one a client sends and the one returned in token
// and introspection responses.
type Detail struct {
	Type       string              `json:"type"`
	Locations  []string            `json:"locations,omitempty"`
	Actions    []string            `json:"actions,omitempty"`
	Categories []string            `json:"categories"`
	Fields     map[string][]string `json:"fields,omitempty"`
	Purpose    string              `json:"purpose"`
	Duration   broker.Duration     `json:"duration"`
	Frequency  broker.Frequency    `json:"frequency,omitzero"`
}

// Defaults for Options.
const (
	DefaultMaxSize    = 8 << 10
	DefaultMaxDetails = 1
)

// DefaultActions are the actions accepted when Options.Actions is empty.
var DefaultActions = []string{"read"}

// Options control Parse. The zero value is usable: no regulatory bounds,
// no locations accepted, only the read action, defaults for the limits.
type Options struct {
	// MaxDuration returns the regulatory upper bound on duration for a
	// purpose; ok false means the purpose has no bound.
	MaxDuration func(purpose string) (max broker.Duration, ok bool)
	// Locations are the resource URIs a detail may name; none if empty.
	Locations []string
	// Actions are the actions a detail may name; DefaultActions if empty.
	Actions []string
	// MaxSize bounds the parameter's length in bytes; DefaultMaxSize if 0.
	MaxSize int
	// MaxDetails bounds the number of details; DefaultMaxDetails if 0.
	// Steward records one consent per authorization, hence one detail.
	MaxDetails int
}

func (o Options) maxSize() int {
	if o.MaxSize > 0 {
		return o.MaxSize
	}
	return DefaultMaxSize
}

func (o Options) maxDetails() int {
	if o.MaxDetails > 0 {
		return o.MaxDetails
	}
	return DefaultMaxDetails
}

func (o Options) actions() []string {
	if len(o.Actions) > 0 {
		return o.Actions
	}
	return DefaultActions
}

// members are the members a steward_customer_data object may have.
var members = []string{"type", "locations", "actions", "categories", "fields", "purpose", "duration", "frequency"}

// Parse strictly parses the authorization_details parameter (a JSON array)
// and returns its details, each normalised (lists sorted).
func Parse(raw string, o Options) ([]Detail, error) {
	if len(raw) > o.maxSize() {
		return nil, refuse(ReasonTooLarge, "", "longer than %d bytes", o.maxSize())
	}
	if strings.TrimSpace(raw) == "" {
		return nil, refuse(ReasonMissing, "", "empty parameter")
	}
	if err := checkJSON([]byte(raw)); err != nil {
		return nil, refuse(ReasonMalformed, "", "%v", err)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &elems); err != nil {
		return nil, refuse(ReasonMalformed, "", "not a JSON array")
	}
	switch {
	case len(elems) == 0:
		return nil, refuse(ReasonEmpty, "", "no details")
	case len(elems) > o.maxDetails():
		return nil, refuse(ReasonTooMany, "", "%d details, at most %d accepted", len(elems), o.maxDetails())
	}
	out := make([]Detail, 0, len(elems))
	for i, e := range elems {
		d, err := parseDetail(e, fmt.Sprintf("[%d]", i), o)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func parseDetail(raw json.RawMessage, path string, o Options) (Detail, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return Detail{}, refuse(ReasonMalformed, path, "not a JSON object")
	}
	t, ok := obj["type"]
	if !ok {
		return Detail{}, refuse(ReasonMissingType, path, "no type")
	}
	var typ string
	if err := json.Unmarshal(t, &typ); err != nil {
		return Detail{}, refuse(ReasonMalformed, path+".type", "not a string")
	}
	if typ != Type {
		return Detail{}, refuse(ReasonUnknownType, path+".type", "type %s is not %s", quote(typ), Type)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(members, k) {
			return Detail{}, refuse(ReasonUnknownMember, path, "unknown member %s", quote(k))
		}
	}
	d := Detail{Type: Type}
	for _, name := range []string{"categories", "purpose", "duration"} {
		if _, ok := obj[name]; !ok {
			return Detail{}, refuse(ReasonMissingMember, path, "no %s", name)
		}
	}

	var err error
	if d.Categories, err = stringList(obj["categories"], path+".categories"); err != nil {
		return Detail{}, err
	}
	for j, c := range d.Categories {
		if _, ok := broker.CategoryByName(c); !ok {
			return Detail{}, refuse(ReasonUnknownCategory, fmt.Sprintf("%s.categories[%d]", path, j), "unknown category %s", quote(c))
		}
	}

	if err := json.Unmarshal(obj["purpose"], &d.Purpose); err != nil {
		return Detail{}, refuse(ReasonMalformed, path+".purpose", "not a string")
	}
	if _, ok := broker.PurposeByName(d.Purpose); !ok {
		return Detail{}, refuse(ReasonUnknownPurpose, path+".purpose", "unknown purpose %s", quote(d.Purpose))
	}

	var dur string
	if err := json.Unmarshal(obj["duration"], &dur); err != nil {
		return Detail{}, refuse(ReasonBadDuration, path+".duration", "not a string")
	}
	if d.Duration, err = broker.ParseDuration(dur); err != nil || d.Duration.IsZero() {
		return Detail{}, refuse(ReasonBadDuration, path+".duration", "%s is not a non-zero ISO 8601 duration such as P90D", quote(dur))
	}
	if o.MaxDuration != nil {
		if max, ok := o.MaxDuration(d.Purpose); ok && d.Duration.Approx() > max.Approx() {
			return Detail{}, refuse(ReasonDurationBound, path+".duration", "%s is longer than the %s allowed for purpose %s", d.Duration, max, d.Purpose)
		}
	}

	if f, ok := obj["frequency"]; ok {
		if d.Frequency, err = parseFrequency(f, path+".frequency"); err != nil {
			return Detail{}, err
		}
	}
	if f, ok := obj["fields"]; ok {
		if d.Fields, err = parseFields(f, path+".fields", d.Categories); err != nil {
			return Detail{}, err
		}
	}
	if a, ok := obj["actions"]; ok {
		if d.Actions, err = stringList(a, path+".actions"); err != nil {
			return Detail{}, err
		}
		for j, x := range d.Actions {
			if !slices.Contains(o.actions(), x) {
				return Detail{}, refuse(ReasonUnknownAction, fmt.Sprintf("%s.actions[%d]", path, j), "unknown action %s", quote(x))
			}
		}
	}
	if l, ok := obj["locations"]; ok {
		if d.Locations, err = stringList(l, path+".locations"); err != nil {
			return Detail{}, err
		}
		for j, x := range d.Locations {
			if !slices.Contains(o.Locations, x) {
				return Detail{}, refuse(ReasonUnknownLocation, fmt.Sprintf("%s.locations[%d]", path, j), "unknown location %s", quote(x))
			}
		}
	}
	if err := ToScope(d).Validate(); err != nil {
		return Detail{}, refuse(ReasonMalformed, path, "%v", err)
	}
	return d, nil
}

// stringList decodes a non-empty array of distinct non-empty strings, sorted.
func stringList(raw json.RawMessage, path string) ([]string, error) {
	var l []string
	if err := json.Unmarshal(raw, &l); err != nil || l == nil {
		return nil, refuse(ReasonMalformed, path, "not an array of strings")
	}
	if len(l) == 0 {
		return nil, refuse(ReasonEmpty, path, "empty array")
	}
	for j, s := range l {
		if s == "" {
			return nil, refuse(ReasonMalformed, fmt.Sprintf("%s[%d]", path, j), "empty string")
		}
	}
	s := slices.Sorted(slices.Values(l))
	for j := 1; j < len(s); j++ {
		if s[j] == s[j-1] {
			return nil, refuse(ReasonDuplicate, path, "%s named twice", quote(s[j]))
		}
	}
	return s, nil
}

func parseFrequency(raw json.RawMessage, path string) (broker.Frequency, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return broker.Frequency{}, refuse(ReasonBadFrequency, path, `not an object like {"max": 4, "per": "P1D"}`)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if k != "max" && k != "per" {
			return broker.Frequency{}, refuse(ReasonUnknownMember, path, "unknown member %s", quote(k))
		}
	}
	var f struct {
		Max *int    `json:"max"`
		Per *string `json:"per"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.Max == nil || f.Per == nil || *f.Max < 1 {
		return broker.Frequency{}, refuse(ReasonBadFrequency, path, "needs an integer max >= 1 and a period per")
	}
	per, err := broker.ParseDuration(*f.Per)
	if err != nil || per.IsZero() {
		return broker.Frequency{}, refuse(ReasonBadFrequency, path+".per", "%s is not a non-zero ISO 8601 duration", quote(*f.Per))
	}
	return broker.Frequency{Max: *f.Max, Per: per}, nil
}

func parseFields(raw json.RawMessage, path string, categories []string) (map[string][]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, refuse(ReasonBadFields, path, "not an object from category to field names")
	}
	if len(obj) == 0 {
		return nil, refuse(ReasonEmpty, path, "empty object")
	}
	out := make(map[string][]string, len(obj))
	for _, c := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(categories, c) {
			return nil, refuse(ReasonBadFields, path, "fields for category %s, which is not requested", quote(c))
		}
		l, err := stringList(obj[c], path+"."+c)
		if err != nil {
			return nil, err
		}
		for _, f := range l {
			if !validField(f) {
				return nil, refuse(ReasonBadFields, path+"."+c, "field name %s is not [a-z][a-z0-9_]{0,63}", quote(f))
			}
		}
		out[c] = l
	}
	return out, nil
}

func validField(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// checkJSON reports an error for input that is not exactly one JSON value
// or that has an object with a repeated member name.
func checkJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := checkValue(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON array")
	}
	return nil
}

const maxDepth = 16

func checkValue(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return errors.New("not valid JSON")
	}
	switch tok {
	case json.Delim('['):
		for dec.More() {
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return errors.New("not valid JSON")
			}
			name, _ := k.(string)
			if seen[name] {
				return fmt.Errorf("member %s repeated", quote(name))
			}
			seen[name] = true
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
	}
	if err != nil {
		return errors.New("not valid JSON")
	}
	return nil
}

// FromForm parses the authorization_details parameter of form. It returns
// nil, nil when the parameter is absent; a repeated parameter is refused.
func FromForm(form url.Values, o Options) ([]Detail, error) {
	vs, ok := form[FormKey]
	switch {
	case !ok:
		return nil, nil
	case len(vs) != 1:
		return nil, refuse(ReasonMalformed, "", "authorization_details given %d times", len(vs))
	}
	return Parse(vs[0], o)
}

// Encode returns the JSON array form of details.
func Encode(details []Detail) (string, error) {
	b, err := json.Marshal(details)
	if err != nil {
		return "", fmt.Errorf("encode authorization_details: %w", err)
	}
	return string(b), nil
}

// ToScope converts a detail to the consent scope it asks for.
func ToScope(d Detail) broker.Scope {
	s := broker.Scope{
		Categories: slices.Clone(d.Categories),
		Purpose:    d.Purpose,
		Duration:   d.Duration,
		Frequency:  d.Frequency,
	}
	if len(d.Fields) > 0 {
		s.Fields = make(map[string][]string, len(d.Fields))
		for k, v := range d.Fields {
			s.Fields[k] = slices.Clone(v)
		}
	}
	s.Normalize()
	return s
}

// FromScope returns the detail for a granted scope, keeping the actions
// and locations of the detail it answers (the request's).
func FromScope(s broker.Scope, req Detail) Detail {
	s.Normalize()
	d := Detail{
		Type:       Type,
		Locations:  slices.Clone(req.Locations),
		Actions:    slices.Clone(req.Actions),
		Categories: slices.Clone(s.Categories),
		Purpose:    s.Purpose,
		Duration:   s.Duration,
		Frequency:  s.Frequency,
	}
	if len(s.Fields) > 0 {
		d.Fields = make(map[string][]string, len(s.Fields))
		for k, v := range s.Fields {
			d.Fields[k] = slices.Clone(v)
		}
	}
	return d
}

// Within reports whether granted is no wider than requested: the same type,
// a scope within the requested scope, and subsets of its actions and
// locations.
func Within(granted, requested Detail) bool {
	if granted.Type != Type || requested.Type != Type {
		return false
	}
	for _, a := range granted.Actions {
		if !slices.Contains(requested.Actions, a) {
			return false
		}
	}
	for _, l := range granted.Locations {
		if !slices.Contains(requested.Locations, l) {
			return false
		}
	}
	g, r := ToScope(granted), ToScope(requested)
	return g.Validate() == nil && g.Within(r)
}
