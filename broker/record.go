package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one category of a customer's vault: a JSON object of fields.
type Record struct {
	CustomerID CustomerID      `json:"customer_id"`
	Category   string          `json:"category"`
	Value      json.RawMessage `json:"value"`
	// Source says who wrote it: "customer", "import", or the id of a firm
	// that returned refined data to the customer.
	Source    string    `json:"source"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MaxRecordBytes bounds one vault record's JSON value.
const MaxRecordBytes = 64 << 10

// Validate checks the category and that the value is a JSON object.
func (r Record) Validate() error {
	if _, ok := CategoryByName(r.Category); !ok {
		return fmt.Errorf("%w: unknown category %q", ErrInvalid, r.Category)
	}
	if len(r.Value) > MaxRecordBytes {
		return fmt.Errorf("%w: %s value is larger than %d bytes", ErrInvalid, r.Category, MaxRecordBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(r.Value, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: %s value must be a JSON object", ErrInvalid, r.Category)
	}
	return nil
}

// TermsVersion is one saved version of a customer's sharing terms.
type TermsVersion struct {
	CustomerID CustomerID `json:"customer_id"`
	Version    int        `json:"version"`
	// Document is the terms JSON exactly as validated and hashed.
	Document json.RawMessage `json:"document"`
	// Hash is "sha256:" + hex of Document; decisions record it.
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

// HashDocument returns the content hash recorded for a terms document.
func HashDocument(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Disclosure records data leaving Steward for a firm under a consent.
type Disclosure struct {
	ID         DisclosureID        `json:"id"`
	ConsentID  ConsentID           `json:"consent_id"`
	FirmID     FirmID              `json:"firm_id"`
	CustomerID CustomerID          `json:"customer_id"`
	Categories []string            `json:"categories"`
	Fields     map[string][]string `json:"fields,omitempty"`
	At         time.Time           `json:"at"`
	// ReceiptID identifies the ledger receipt given with the response.
	ReceiptID string `json:"receipt_id"`
}

// Pseudonym is the identifier one firm knows a customer by. Each
// (customer, firm) pair has its own, drawn at random, so two firms cannot
// join their data on it.
type Pseudonym string

// NewPseudonym draws a fresh pseudonym.
func NewPseudonym() Pseudonym { return Pseudonym(newID("psn")) }
