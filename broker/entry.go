package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
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

// entryJSON is the wire shape; its member names are the ledger format.
type entryJSON struct {
	Categories   []string     `json:"categories,omitempty"`
	Commitment   string       `json:"commitment,omitempty"`
	Consent      ConsentID    `json:"consent,omitempty"`
	BundleHash   string       `json:"bundle_hash,omitempty"`
	Customer     Pseudonym    `json:"customer,omitempty"`
	DecisionHash string       `json:"decision_hash,omitempty"`
	Disclosure   DisclosureID `json:"disclosure,omitempty"`
	Firm         FirmID       `json:"firm,omitempty"`
	Purpose      string       `json:"purpose,omitempty"`
	TermsHash    string       `json:"terms_hash,omitempty"`
	Time         string       `json:"time"`
	Type         EntryType    `json:"type"`
	V            int          `json:"v"`
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
	EntryDisclosure:       {fFirm | fCustomer | fConsent | fCategories | fPurpose | fDecision | fTerms | fCommitment, fDisclosure},
	EntryDataReturned:     {fFirm | fCustomer | fCategories | fCommitment, fConsent | fDisclosure},
	EntryDeletionAttested: {fFirm | fCustomer | fConsent, fCategories | fCommitment},
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
	w := entryJSON{
		Categories: e.Categories, Commitment: e.Commitment, Consent: e.Consent,
		BundleHash: e.BundleHash, Customer: e.Customer, DecisionHash: e.DecisionHash,
		Disclosure: e.Disclosure, Firm: e.Firm, Purpose: e.Purpose, TermsHash: e.TermsHash,
		Time: e.Time.UTC().Format(EntryTimeFormat), Type: e.Type, V: EntryVersion,
	}
	raw, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("marshal %s entry: %w", e.Type, err)
	}
	b, err := CanonicalJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("canonicalise %s entry: %w", e.Type, err)
	}
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
	var w entryJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, fmt.Errorf("%w: entry: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Entry{}, fmt.Errorf("%w: entry has trailing data", ErrInvalid)
	}
	if w.V != EntryVersion {
		return Entry{}, fmt.Errorf("%w: entry version %d, want %d", ErrInvalid, w.V, EntryVersion)
	}
	t, err := time.Parse(EntryTimeFormat, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: entry time %q is not %s", ErrInvalid, w.Time, EntryTimeFormat)
	}
	e := Entry{
		Type: w.Type, Time: t, Firm: w.Firm, Customer: w.Customer, Categories: w.Categories,
		Purpose: w.Purpose, Consent: w.Consent, Disclosure: w.Disclosure, DecisionHash: w.DecisionHash,
		TermsHash: w.TermsHash, Commitment: w.Commitment, BundleHash: w.BundleHash,
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
