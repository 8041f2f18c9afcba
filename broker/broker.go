// Package broker holds Steward's domain words and nothing else: customers,
// firms, their OAuth clients, the taxonomy of personal-data categories and
// purposes, the customer's vault, terms documents, consents and their state
// machine, disclosures, pairwise pseudonyms, and the sentinel errors every
// other package branches on.
//
// It imports only the standard library. Persistence, policy, the ledger and
// HTTP live in sub-packages that depend on it, never the other way round.
package broker

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Adapters translate their own failures into these and wrap
// them with %w, so callers test with errors.Is.
var (
	// ErrNotFound means the named thing does not exist (or the caller may not know it does).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a uniqueness or concurrent-update conflict.
	ErrConflict = errors.New("conflict")
	// ErrInvalid means the input failed validation.
	ErrInvalid = errors.New("invalid")
	// ErrTransition means a consent state change that the state machine forbids.
	ErrTransition = errors.New("illegal consent transition")
	// ErrScopeWidened means a narrowing that would widen the requested scope.
	ErrScopeWidened = errors.New("scope wider than requested")
	// ErrForbidden means the caller is not allowed to do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthenticated means the caller did not prove who it is.
	ErrUnauthenticated = errors.New("unauthenticated")
)

// idEncoding is lower-case, unpadded base32: safe in URLs, paths and logs.
// Its alphabet is RFC 4648's in ASCII order, so that encoded bytes sort
// as the bytes do (see newTimedID); it is the same set of characters, so
// every id minted before the order changed still parses.
var idEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

// newID returns prefix + "_" + 26 random base32 characters (128 random
// bits).
func newID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// newTimedID is newID whose first 48 bits are the Unix time at in
// milliseconds, and the other 80 random: ids minted later sort after (to
// the millisecond), so a table keyed by them takes each new row at the end
// of its index instead of on a random page, and lists them in the order
// they were made.
func newTimedID(prefix string, at time.Time) string {
	var b [16]byte
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// checkID reports whether s looks like an id minted by newID with prefix.
func checkID(prefix, s string) error {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 26 {
		return fmt.Errorf("%w: %q is not a %s id", ErrInvalid, s, prefix)
	}
	if _, err := idEncoding.DecodeString(rest); err != nil {
		return fmt.Errorf("%w: %q is not a %s id", ErrInvalid, s, prefix)
	}
	return nil
}

// Typed identifiers. Each has a New function and a Parse function that
// refuses anything that is not well formed.
type (
	CustomerID   string
	FirmID       string
	ClientID     string
	ConsentID    string
	DisclosureID string
	RegulatorID  string
)

func NewCustomerID() CustomerID     { return CustomerID(newID("cus")) }
func NewFirmID() FirmID             { return FirmID(newID("firm")) }
func NewClientID() ClientID         { return ClientID(newID("cli")) }
func NewConsentID() ConsentID       { return ConsentID(newID("con")) }
func NewDisclosureID() DisclosureID { return DisclosureID(newTimedID("dis", time.Now())) }
func NewRegulatorID() RegulatorID   { return RegulatorID(newID("reg")) }

func ParseCustomerID(s string) (CustomerID, error) { return CustomerID(s), checkID("cus", s) }
func ParseFirmID(s string) (FirmID, error)         { return FirmID(s), checkID("firm", s) }
func ParseClientID(s string) (ClientID, error)     { return ClientID(s), checkID("cli", s) }
func ParseConsentID(s string) (ConsentID, error)   { return ConsentID(s), checkID("con", s) }
