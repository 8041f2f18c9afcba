// Package terms reads, checks and writes customers' sharing terms: the
// JSON documents of the steward.terms/v1 language (docs/terms.md).
//
// Parse is the only way in. It MUST be used on every document a customer
// saves: it refuses anything that is too large, not UTF-8, not valid
// against policies/terms.schema.json, holds unknown fields, names
// categories or purposes outside the taxonomy, or contradicts itself (a
// rule that can never take effect). Every refusal wraps broker.ErrInvalid
// and, where a rule is at fault, starts with "rule N:" (counting from 1).
//
// Canonical and NewVersion give the bytes and content hash a saved version
// is stored and decided under; ODRL exports the terms as ODRL 2.2 JSON-LD.
package terms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/policies"
)

// MaxDocumentBytes bounds a terms document.
const MaxDocumentBytes = 64 << 10

// MaxRules bounds the rules in one document (the schema says the same).
const MaxRules = 200

var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	raw, err := policies.FS.ReadFile(policies.SchemaFile)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(policies.SchemaFile, doc); err != nil {
		return nil, err
	}
	return c.Compile(policies.SchemaFile)
})

// Schema returns the compiled terms schema; it fails only if the embedded
// schema is broken, which tests rule out.
func Schema() (*jsonschema.Schema, error) { return schema() }

// Parse decodes and checks a terms document.
func Parse(doc []byte) (broker.Terms, error) {
	t, err := parse(doc)
	if err != nil {
		return broker.Terms{}, fmt.Errorf("terms: %w", err)
	}
	return t, nil
}

func parse(doc []byte) (broker.Terms, error) {
	if len(doc) > MaxDocumentBytes {
		return broker.Terms{}, fmt.Errorf("%w: document is larger than %d bytes", broker.ErrInvalid, MaxDocumentBytes)
	}
	if !utf8.Valid(doc) {
		return broker.Terms{}, fmt.Errorf("%w: document is not valid UTF-8", broker.ErrInvalid)
	}
	sch, err := schema()
	if err != nil {
		return broker.Terms{}, fmt.Errorf("load schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return broker.Terms{}, fmt.Errorf("%w: document is not JSON: %w", broker.ErrInvalid, err)
	}
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return broker.Terms{}, fmt.Errorf("%w: %s", broker.ErrInvalid, describe(ve))
		}
		return broker.Terms{}, fmt.Errorf("%w: %w", broker.ErrInvalid, err)
	}
	t, err := decodeStrict(doc)
	if err != nil {
		return broker.Terms{}, err
	}
	normalize(&t)
	if err := Check(t); err != nil {
		return broker.Terms{}, err
	}
	return t, nil
}

var printer = message.NewPrinter(language.English)

// describe turns a schema error into one line pointing at the rule.
func describe(ve *jsonschema.ValidationError) string {
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	msg := leaf.ErrorKind.LocalizedString(printer)
	if kp := leaf.ErrorKind.KeywordPath(); len(kp) > 0 && kp[len(kp)-1] == "pattern" {
		msg = patternHelp(leaf.InstanceLocation)
	}
	return where(leaf.InstanceLocation) + msg
}

// patternHelp explains a pattern failure in words rather than a regexp.
func patternHelp(loc []string) string {
	field := ""
	for _, p := range loc {
		if _, err := strconv.Atoi(p); err != nil {
			field = p
		}
	}
	switch field {
	case "max_duration", "max_retention", "per":
		return "must be an ISO 8601 duration such as P90D or P1Y6M"
	case "firms":
		return "must be a firm id (firm_ followed by 26 letters and digits)"
	case "jurisdictions":
		return "must be a two-letter country code such as GB or DE"
	case "currency":
		return "must be a three-letter currency code such as GBP or EUR"
	case "categories", "purposes":
		return "must be a name from Steward's taxonomy, such as Contact or Marketing"
	}
	return "is not in the expected form"
}

// where renders an instance location: ["rules","2","match","categories","0"]
// is "rule 3: match.categories[0]: ".
func where(loc []string) string {
	var b strings.Builder
	if len(loc) >= 2 && loc[0] == "rules" {
		if n, err := strconv.Atoi(loc[1]); err == nil {
			fmt.Fprintf(&b, "rule %d: ", n+1)
			loc = loc[2:]
		}
	}
	var path strings.Builder
	for _, p := range loc {
		if _, err := strconv.Atoi(p); err == nil {
			fmt.Fprintf(&path, "[%s]", p)
			continue
		}
		if path.Len() > 0 {
			path.WriteByte('.')
		}
		path.WriteString(p)
	}
	if path.Len() > 0 {
		b.WriteString(path.String() + ": ")
	}
	return b.String()
}

// normalize sorts and de-duplicates match lists and puts times in UTC, so
// that two documents that mean the same have the same canonical form.
func normalize(t *broker.Terms) {
	for i := range t.Rules {
		m := &t.Rules[i].Match
		m.Firms = sortedSet(m.Firms)
		m.Sectors = sortedSet(m.Sectors)
		m.Jurisdictions = sortedSet(m.Jurisdictions)
		m.Categories = sortedSet(m.Categories)
		m.Purposes = sortedSet(m.Purposes)
		c := &t.Rules[i].Constraints
		if !c.ValidFrom.IsZero() {
			c.ValidFrom = c.ValidFrom.UTC()
		}
		if !c.ValidUntil.IsZero() {
			c.ValidUntil = c.ValidUntil.UTC()
		}
	}
	if t.Rules == nil {
		t.Rules = []broker.TermsRule{}
	}
}

func sortedSet[T ~string](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Canonical returns the canonical JSON of t: match lists sorted and
// de-duplicated, times in UTC, fields in a fixed order, no insignificant
// space. It is what a saved version stores and hashes.
func Canonical(t broker.Terms) ([]byte, error) {
	normalize(&t)
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("terms: canonical form: %w", err)
	}
	return b, nil
}

// Hash returns the content hash of t's canonical form.
func Hash(t broker.Terms) (string, error) {
	b, err := Canonical(t)
	if err != nil {
		return "", err
	}
	return broker.HashDocument(b), nil
}

// NewVersion parses doc and returns the version to store: its canonical
// bytes and their hash.
func NewVersion(cus broker.CustomerID, version int, doc []byte, at time.Time) (broker.TermsVersion, error) {
	t, err := Parse(doc)
	if err != nil {
		return broker.TermsVersion{}, err
	}
	b, err := Canonical(t)
	if err != nil {
		return broker.TermsVersion{}, err
	}
	return broker.TermsVersion{CustomerID: cus, Version: version, Document: b,
		Hash: broker.HashDocument(b), CreatedAt: at.UTC()}, nil
}

// Decode reads a stored document that Parse accepted when it was saved:
// strict JSON (unknown fields refused, size bounded, UTF-8) but without the
// schema and taxonomy checks, so a decision never fails because the
// taxonomy grew. Names the taxonomy no longer knows simply match nothing.
func Decode(doc []byte) (broker.Terms, error) {
	if len(doc) > MaxDocumentBytes || !utf8.Valid(doc) {
		return broker.Terms{}, fmt.Errorf("terms: %w: stored document is too large or not UTF-8", broker.ErrInvalid)
	}
	t, err := decodeStrict(doc)
	if err != nil {
		return broker.Terms{}, fmt.Errorf("terms: stored document: %w", err)
	}
	if t.Format != broker.TermsFormat || len(t.Rules) > MaxRules {
		return broker.Terms{}, fmt.Errorf("terms: %w: stored document is not %s with at most %d rules", broker.ErrInvalid, broker.TermsFormat, MaxRules)
	}
	return t, nil
}

// decodeStrict decodes doc refusing unknown fields and trailing data, one
// rule at a time so that an error names its rule.
func decodeStrict(doc []byte) (broker.Terms, error) {
	var raw struct {
		Format string            `json:"format"`
		Rules  []json.RawMessage `json:"rules"`
	}
	if err := strictUnmarshal(doc, &raw); err != nil {
		return broker.Terms{}, fmt.Errorf("%w: %w", broker.ErrInvalid, err)
	}
	if len(raw.Rules) > MaxRules {
		return broker.Terms{}, fmt.Errorf("%w: more than %d rules", broker.ErrInvalid, MaxRules)
	}
	t := broker.Terms{Format: raw.Format, Rules: make([]broker.TermsRule, len(raw.Rules))}
	for i, r := range raw.Rules {
		if err := strictUnmarshal(r, &t.Rules[i]); err != nil {
			return broker.Terms{}, fmt.Errorf("%w: rule %d: %w", broker.ErrInvalid, i+1, err)
		}
	}
	return t, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the document")
	}
	return nil
}
