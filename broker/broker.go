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
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + "_" + 26 random base32 characters (130 bits).
func newID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
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
func NewDisclosureID() DisclosureID { return DisclosureID(newID("dis")) }
func NewRegulatorID() RegulatorID   { return RegulatorID(newID("reg")) }

func ParseCustomerID(s string) (CustomerID, error) { return CustomerID(s), checkID("cus", s) }
func ParseFirmID(s string) (FirmID, error)         { return FirmID(s), checkID("firm", s) }
func ParseClientID(s string) (ClientID, error)     { return ClientID(s), checkID("cli", s) }
func ParseConsentID(s string) (ConsentID, error)   { return ConsentID(s), checkID("con", s) }
