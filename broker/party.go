package broker

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Customer is a person whose data Steward holds on their behalf.
type Customer struct {
	ID CustomerID `json:"id"`
	// Handle is the customer's unique login name: 3–32 of a-z, 0-9, '.', '-', '_'.
	Handle       string `json:"handle"`
	DisplayName  string `json:"display_name"`
	Email        string `json:"email"`
	Jurisdiction string `json:"jurisdiction"`
	// Minor marks a customer under the age of digital consent; the
	// regulatory policy refuses marketing for minors.
	Minor bool `json:"minor"`
	// PasswordHash is an argon2id PHC string, or empty when the customer
	// has no password login. It never leaves the store in API responses.
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
}

var (
	handleRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{2,31}$`)
	jurisdictionRE = regexp.MustCompile(`^[A-Z]{2}$`)
)

// Validate checks a customer's fields, naming the first bad one.
func (c Customer) Validate() error {
	if err := checkID("cus", string(c.ID)); err != nil {
		return err
	}
	if !handleRE.MatchString(c.Handle) {
		return fmt.Errorf("%w: handle must be 3-32 characters of a-z, 0-9, '.', '-', '_' starting with a letter or digit", ErrInvalid)
	}
	if err := checkText("display_name", c.DisplayName, 1, 200); err != nil {
		return err
	}
	if c.Email != "" {
		a, err := mail.ParseAddress(c.Email)
		if err != nil || a.Address != c.Email || len(c.Email) > 254 {
			return fmt.Errorf("%w: email %q is not a plain address", ErrInvalid, c.Email)
		}
	}
	return checkJurisdiction(c.Jurisdiction)
}

// FirmStatus is where a firm stands with the operator.
type FirmStatus string

const (
	FirmPending   FirmStatus = "pending"
	FirmApproved  FirmStatus = "approved"
	FirmSuspended FirmStatus = "suspended"
)

// Sectors are the industry sectors a firm may declare; customers' terms
// match on them.
var Sectors = []string{
	"retail", "financial", "insurance", "health", "telecom", "travel",
	"media", "energy", "education", "research", "public", "technology",
}

// Firm is an organisation that asks customers for their data.
type Firm struct {
	ID           FirmID     `json:"id"`
	LegalName    string     `json:"legal_name"`
	Sector       string     `json:"sector"`
	Jurisdiction string     `json:"jurisdiction"`
	Status       FirmStatus `json:"status"`
	// WebhookURL receives Steward's signed notifications (revocations,
	// decisions on decoupled requests); empty when the firm polls.
	WebhookURL string    `json:"webhook_url,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Validate checks a firm's fields, naming the first bad one.
func (f Firm) Validate() error {
	if err := checkID("firm", string(f.ID)); err != nil {
		return err
	}
	if err := checkText("legal_name", f.LegalName, 1, 300); err != nil {
		return err
	}
	if !slices.Contains(Sectors, f.Sector) {
		return fmt.Errorf("%w: sector %q is not one of %s", ErrInvalid, f.Sector, strings.Join(Sectors, ", "))
	}
	switch f.Status {
	case FirmPending, FirmApproved, FirmSuspended:
	default:
		return fmt.Errorf("%w: firm status %q", ErrInvalid, f.Status)
	}
	if err := CheckWebhookURL(f.WebhookURL); err != nil {
		return err
	}
	return checkJurisdiction(f.Jurisdiction)
}

// CheckWebhookURL accepts "" or an absolute https URL without user info or
// fragment (http only for loopback hosts, for development).
func CheckWebhookURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	bad := err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > 2000
	if !bad {
		switch u.Scheme {
		case "https":
		case "http":
			h := u.Hostname()
			bad = h != "localhost" && h != "127.0.0.1" && h != "::1"
		default:
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("%w: webhook_url must be an https URL (http only for localhost)", ErrInvalid)
	}
	return nil
}

// CanMoveTo reports whether an operator may move a firm from its status to next.
// pending → approved | suspended; approved → suspended; suspended → approved.
func (s FirmStatus) CanMoveTo(next FirmStatus) bool {
	switch s {
	case FirmPending:
		return next == FirmApproved || next == FirmSuspended
	case FirmApproved:
		return next == FirmSuspended
	case FirmSuspended:
		return next == FirmApproved
	}
	return false
}

// ClientStatus is whether an OAuth client may be used.
type ClientStatus string

const (
	ClientActive    ClientStatus = "active"
	ClientSuspended ClientStatus = "suspended"
)

// Client is an OAuth client registered by a firm.
type Client struct {
	ID           ClientID `json:"client_id"`
	FirmID       FirmID   `json:"firm_id"`
	Name         string   `json:"client_name"`
	RedirectURIs []string `json:"redirect_uris"`
	// JWKS is the client's public key set (RFC 7517 JSON) used for
	// private_key_jwt and request signing; JWKSURI is the alternative.
	JWKS    []byte `json:"jwks,omitempty"`
	JWKSURI string `json:"jwks_uri,omitempty"`
	// TokenEndpointAuthSigningAlg is the one JWS algorithm the client's
	// assertions may use (RFC 7591); empty allows any the server accepts.
	TokenEndpointAuthSigningAlg string       `json:"token_endpoint_auth_signing_alg,omitempty"`
	Status                      ClientStatus `json:"status"`
	CreatedAt                   time.Time    `json:"created_at"`
}

// Regulator is a supervisory authority with read-only access to the ledger.
type Regulator struct {
	ID           RegulatorID `json:"id"`
	Name         string      `json:"name"`
	Jurisdiction string      `json:"jurisdiction"`
	CreatedAt    time.Time   `json:"created_at"`
}

func checkJurisdiction(j string) error {
	if !jurisdictionRE.MatchString(j) {
		return fmt.Errorf("%w: jurisdiction %q must be an ISO 3166-1 alpha-2 code such as GB or DE", ErrInvalid, j)
	}
	return nil
}

func checkText(field, s string, minLen, maxLen int) error {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	case n < minLen || n > maxLen || strings.TrimSpace(s) != s:
		return fmt.Errorf("%w: %s must be %d-%d characters without leading or trailing spaces", ErrInvalid, field, minLen, maxLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w: %s contains control characters", ErrInvalid, field)
	}
	return nil
}

// TombstonePrefix starts the handle of a forgotten customer. ':' is not
// allowed in handles, so a tombstone never collides with a live handle and
// nobody can sign up as one.
const TombstonePrefix = "forgotten:"

// NewTombstone returns a fresh tombstone handle for a forgotten customer.
func NewTombstone() string { return TombstonePrefix + newID("x") }

// Forgotten reports whether the customer has been erased: their handle is
// a tombstone and their personal data is gone.
func (c Customer) Forgotten() bool { return strings.HasPrefix(c.Handle, TombstonePrefix) }
