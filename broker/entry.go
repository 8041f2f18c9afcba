package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// EntryType names what a ledger entry records.
type EntryType string

// The entry types. Each has its own required and permitted fields; see
// Entry.Validate.
const (
	EntryTermsVersioned   EntryType = "terms.versioned"
	EntryConsentRequested EntryType = "consent.requested"
	EntryConsentGranted   EntryType = "consent.granted"
	EntryConsentDenied    EntryType = "consent.denied"
	EntryConsentNarrowed  EntryType = "consent.narrowed"
	EntryConsentRevoked   EntryType = "consent.revoked"
	EntryConsentExpired   EntryType = "consent.expired"
	EntryDisclosure       EntryType = "disclosure"
	EntryDataReturned     EntryType = "data.returned"
	EntryDeletionAttested EntryType = "deletion.attested"
	EntryFirmRegistered   EntryType = "firm.registered"
	EntryFirmSuspended    EntryType = "firm.suspended"
	EntryPolicyBundle     EntryType = "policy.bundle"
)

// EntryVersion is the value of the "v" member of every entry this code writes.
const EntryVersion = 1

// MaxEntryBytes bounds an entry's canonical bytes. C2SP tlog-tiles entry
// bundles prefix each entry with a big-endian uint16 length.
const MaxEntryBytes = 1<<16 - 1

// EntryTimeFormat is how an entry's time is written: RFC 3339, UTC,
// exactly three fractional digits.
const EntryTimeFormat = "2006-01-02T15:04:05.000Z"

// Entry is one record of the append-only ledger. It names customers only by
// pseudonym and data only by category and salted commitment: it MUST NOT
// carry a name, an email address, free text or any data value, because the
// ledger is public to regulators and can never be edited.
//
// The bytes hashed into the ledger are the entry's RFC 8785 (JCS) canonical
// JSON form, from CanonicalBytes. ParseEntry accepts exactly those bytes and
// nothing else. An entry looks like this (one line in the ledger):
//
//	{"categories":["EmailAddress"],"commitment":"sha256:…","consent":"con_…",
//	 "customer":"psn_…","decision_hash":"sha256:…","firm":"firm_…",
//	 "purpose":"DirectMarketing","terms_hash":"sha256:…",
//	 "time":"2026-11-23T10:00:00.000Z","type":"disclosure","v":1}
type Entry struct {
	Type EntryType
	// Time is when it happened; it is recorded in UTC to the millisecond.
	Time time.Time
	Firm FirmID
	// Customer is a pseudonym: for entries about a firm, the pairwise
	// pseudonym that firm knows the customer by.
	Customer Pseudonym
	// Categories are taxonomy category names, sorted and unique.
	Categories []string
	// Purpose is a taxonomy purpose name.
	Purpose    string
	Consent    ConsentID
	Disclosure DisclosureID
	// DecisionHash is the "sha256:<hex>" hash of the policy decision record.
	DecisionHash string
	// TermsHash is the "sha256:<hex>" hash of the customer's terms version (HashDocument).
	TermsHash string
	// Commitment is Commit(salt, content) over disclosed or returned content.
	Commitment string
	// BundleHash is the "sha256:<hex>" hash of a regulatory policy bundle.
	BundleHash string
}

// entryField is a bit set of an entry's optional fields.
type entryField uint16

const (
	fFirm entryField = 1 << iota
	fCustomer
	fCategories
	fPurpose
	fConsent
	fDisclosure
	fDecision
	fTerms
	fCommitment
	fBundle
)

var entryFieldNames = []string{"firm", "customer", "categories", "purpose", "consent", "disclosure", "decision_hash", "terms_hash", "commitment", "bundle_hash"}

// entryRules says, per type, which fields must be present and which may be.
var entryRules = map[EntryType]struct{ required, optional entryField }{
	EntryTermsVersioned:   {fCustomer | fTerms, 0},
	EntryConsentRequested: {fFirm | fCustomer | fConsent | fCategories | fPurpose, fDecision | fTerms},
	EntryConsentGranted:   {fFirm | fCustomer | fConsent | fCategories | fPurpose | fDecision, fTerms},
	EntryConsentDenied:    {fFirm | fCustomer | fConsent | fDecision, fTerms | fCategories | fPurpose},
	EntryConsentNarrowed:  {fFirm | fCustomer | fConsent | fCategories | fPurpose, fDecision | fTerms},
	EntryConsentRevoked:   {fFirm | fCustomer | fConsent, fCategories | fPurpose},
	EntryConsentExpired:   {fFirm | fCustomer | fConsent, 0},
	EntryDisclosure:       {fFirm | fCustomer | fConsent | fCategories | fPurpose | fDecision | fCommitment, fDisclosure | fTerms},
	EntryDataReturned:     {fFirm | fCustomer | fCategories | fCommitment, fConsent | fDisclosure},
	EntryDeletionAttested: {fFirm | fConsent, fCustomer | fCategories | fCommitment},
	EntryFirmRegistered:   {fFirm, 0},
	EntryFirmSuspended:    {fFirm, 0},
	EntryPolicyBundle:     {fBundle, 0},
}

// EntryTypes lists every entry type, sorted.
func EntryTypes() []EntryType {
	ts := make([]EntryType, 0, len(entryRules))
	for t := range entryRules {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

func (e Entry) present() entryField {
	var f entryField
	set := func(ok bool, b entryField) {
		if ok {
			f |= b
		}
	}
	set(e.Firm != "", fFirm)
	set(e.Customer != "", fCustomer)
	set(len(e.Categories) > 0, fCategories)
	set(e.Purpose != "", fPurpose)
	set(e.Consent != "", fConsent)
	set(e.Disclosure != "", fDisclosure)
	set(e.DecisionHash != "", fDecision)
	set(e.TermsHash != "", fTerms)
	set(e.Commitment != "", fCommitment)
	set(e.BundleHash != "", fBundle)
	return f
}

// Validate checks that the entry has exactly the fields its type allows and
// that each is well formed, naming the first problem.
func (e Entry) Validate() error {
	rule, ok := entryRules[e.Type]
	if !ok {
		return fmt.Errorf("%w: unknown entry type %q", ErrInvalid, e.Type)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: %s entry has no time", ErrInvalid, e.Type)
	}
	if y := e.Time.UTC().Year(); y < 2000 || y > 9999 {
		return fmt.Errorf("%w: %s entry time %s out of range", ErrInvalid, e.Type, e.Time)
	}
	have := e.present()
	for i, name := range entryFieldNames {
		b := entryField(1) << i
		switch {
		case rule.required&b != 0 && have&b == 0:
			return fmt.Errorf("%w: %s entry needs %s", ErrInvalid, e.Type, name)
		case (rule.required|rule.optional)&b == 0 && have&b != 0:
			return fmt.Errorf("%w: %s entry must not have %s", ErrInvalid, e.Type, name)
		}
	}
	checks := []struct {
		on  bool
		err func() error
	}{
		{e.Firm != "", func() error { return checkID("firm", string(e.Firm)) }},
		{e.Customer != "", func() error { return checkID("psn", string(e.Customer)) }},
		{e.Consent != "", func() error { return checkID("con", string(e.Consent)) }},
		{e.Disclosure != "", func() error { return checkID("dis", string(e.Disclosure)) }},
		{e.DecisionHash != "", func() error { return checkHash("decision_hash", e.DecisionHash) }},
		{e.TermsHash != "", func() error { return checkHash("terms_hash", e.TermsHash) }},
		{e.Commitment != "", func() error { return checkHash("commitment", e.Commitment) }},
		{e.BundleHash != "", func() error { return checkHash("bundle_hash", e.BundleHash) }},
		{e.Purpose != "", func() error {
			if _, ok := PurposeByName(e.Purpose); !ok {
				return fmt.Errorf("%w: unknown purpose %q", ErrInvalid, e.Purpose)
			}
			return nil
		}},
		{len(e.Categories) > 0, func() error {
			for i, c := range e.Categories {
				if _, ok := CategoryByName(c); !ok {
					return fmt.Errorf("%w: unknown category %q", ErrInvalid, c)
				}
				if i > 0 && e.Categories[i-1] >= c {
					return fmt.Errorf("%w: entry categories must be sorted and unique", ErrInvalid)
				}
			}
			return nil
		}},
	}
	for _, c := range checks {
		if c.on {
			if err := c.err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkHash accepts "sha256:" followed by 64 lower-case hex digits.
func checkHash(field, s string) error {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return fmt.Errorf("%w: %s must be sha256: and 64 lower-case hex digits", ErrInvalid, field)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return fmt.Errorf("%w: %s must be sha256: and 64 lower-case hex digits", ErrInvalid, field)
	}
	return nil
}

// CanonicalBytes validates the entry and returns its RFC 8785 canonical
// JSON: the bytes the ledger stores and hashes.
func (e Entry) CanonicalBytes() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	// Write the JCS form directly: members in code-unit order of their
	// (ASCII) names, strings escaped as RFC 8785 says. Tests check the
	// result is a fixed point of CanonicalJSON.
	var buf bytes.Buffer
	buf.Grow(512)
	buf.WriteByte('{')
	member := func(name, value string) {
		if value == "" {
			return
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		writeCanonicalString(&buf, name)
		buf.WriteByte(':')
		writeCanonicalString(&buf, value)
	}
	member("bundle_hash", e.BundleHash)
	if len(e.Categories) > 0 {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.WriteString(`"categories":[`)
		for i, c := range e.Categories {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeCanonicalString(&buf, c)
		}
		buf.WriteByte(']')
	}
	member("commitment", e.Commitment)
	member("consent", string(e.Consent))
	member("customer", string(e.Customer))
	member("decision_hash", e.DecisionHash)
	member("disclosure", string(e.Disclosure))
	member("firm", string(e.Firm))
	member("purpose", e.Purpose)
	member("terms_hash", e.TermsHash)
	member("time", e.Time.UTC().Format(EntryTimeFormat))
	member("type", string(e.Type))
	buf.WriteString(`,"v":` + strconv.Itoa(EntryVersion) + `}`)
	b := buf.Bytes()
	if len(b) > MaxEntryBytes {
		return nil, fmt.Errorf("%w: %s entry is %d bytes, more than %d", ErrInvalid, e.Type, len(b), MaxEntryBytes)
	}
	return b, nil
}

// ParseEntry parses an entry's canonical bytes. It refuses, with an error
// wrapping ErrInvalid, anything that CanonicalBytes would not have produced
// byte for byte: other white space, member order or escaping, unknown or
// duplicate members, unknown types, fields the type does not allow, and
// malformed values.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) > MaxEntryBytes {
		return Entry{}, fmt.Errorf("%w: entry is %d bytes, more than %d", ErrInvalid, len(b), MaxEntryBytes)
	}
	e, err := decodeEntry(b)
	if err != nil {
		return Entry{}, err
	}
	canon, err := e.CanonicalBytes()
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(canon, b) {
		return Entry{}, fmt.Errorf("%w: %s entry bytes are not canonical", ErrInvalid, e.Type)
	}
	return e, nil
}

// SaltSize is the size of a commitment salt in bytes.
const SaltSize = 32

// NewSalt draws a fresh commitment salt. Salts are kept off the ledger,
// with the disclosure record, and destroyed with the customer's data.
func NewSalt() []byte {
	s := make([]byte, SaltSize)
	if _, err := rand.Read(s); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	return s
}

// Commit returns the salted commitment "sha256:" + hex(SHA-256(salt ||
// content)) recorded in place of content. Without the salt nobody can test
// a guess at the content against it; with it, anyone can check it.
// It panics if salt is not SaltSize bytes: a short salt would let the
// public ledger leak what was disclosed.
func Commit(salt, content []byte) string {
	if len(salt) != SaltSize {
		panic(fmt.Sprintf("broker.Commit: salt is %d bytes, want %d", len(salt), SaltSize))
	}
	h := sha256.New()
	h.Write(salt)
	h.Write(content)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// CheckCommitment reports whether commitment is Commit(salt, content).
func CheckCommitment(salt, content []byte, commitment string) bool {
	if len(salt) != SaltSize {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(Commit(salt, content)), []byte(commitment)) == 1
}

// decodeEntry decodes an entry's JSON with the strict parser of
// CanonicalJSON. It checks member names and value types; the caller
// checks the rest by re-encoding.
func decodeEntry(b []byte) (Entry, error) {
	if !utf8.Valid(b) {
		return Entry{}, fmt.Errorf("%w: entry is not valid UTF-8", ErrInvalid)
	}
	p := jsonParser{s: b}
	v, err := p.value(0)
	if err != nil {
		return Entry{}, fmt.Errorf("entry: %w", err)
	}
	if p.i != len(b) {
		return Entry{}, fmt.Errorf("%w: entry has trailing data", ErrInvalid)
	}
	members, ok := v.([]jsonMember)
	if !ok {
		return Entry{}, fmt.Errorf("%w: entry is not a JSON object", ErrInvalid)
	}
	var (
		e       Entry
		version = -1
		when    string
	)
	for _, m := range members {
		if m.name == "categories" {
			arr, ok := m.value.([]any)
			if !ok {
				return Entry{}, fmt.Errorf("%w: entry categories is not an array", ErrInvalid)
			}
			for _, c := range arr {
				s, ok := c.(string)
				if !ok {
					return Entry{}, fmt.Errorf("%w: entry category is not a string", ErrInvalid)
				}
				e.Categories = append(e.Categories, s)
			}
			continue
		}
		if m.name == "v" {
			n, ok := m.value.(jsonNumber)
			if !ok || n != "1" {
				return Entry{}, fmt.Errorf("%w: entry version %v, want %d", ErrInvalid, m.value, EntryVersion)
			}
			version = EntryVersion
			continue
		}
		s, ok := m.value.(string)
		if !ok {
			return Entry{}, fmt.Errorf("%w: entry member %q is not a string", ErrInvalid, m.name)
		}
		switch m.name {
		case "bundle_hash":
			e.BundleHash = s
		case "commitment":
			e.Commitment = s
		case "consent":
			e.Consent = ConsentID(s)
		case "customer":
			e.Customer = Pseudonym(s)
		case "decision_hash":
			e.DecisionHash = s
		case "disclosure":
			e.Disclosure = DisclosureID(s)
		case "firm":
			e.Firm = FirmID(s)
		case "purpose":
			e.Purpose = s
		case "terms_hash":
			e.TermsHash = s
		case "time":
			when = s
		case "type":
			e.Type = EntryType(s)
		default:
			return Entry{}, fmt.Errorf("%w: entry has unknown member %q", ErrInvalid, m.name)
		}
	}
	if version != EntryVersion {
		return Entry{}, fmt.Errorf("%w: entry has no version", ErrInvalid)
	}
	t, err := time.Parse(EntryTimeFormat, when)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: entry time %q is not %s", ErrInvalid, when, EntryTimeFormat)
	}
	e.Time = t
	return e, nil
}
