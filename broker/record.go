package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	// Purpose is the consent's purpose the data was disclosed for.
	Purpose string    `json:"purpose"`
	At      time.Time `json:"at"`
	// ReceiptID identifies the ledger entry given with the response: the
	// base64 (standard, padded) RFC 6962 leaf hash of the disclosure's
	// entry, as in Receipt.LeafHash.
	ReceiptID string `json:"receipt_id"`
	// Commitment is the entry's Commit(Salt, content) over the disclosed
	// data; Salt opens it. Salt is destroyed when the customer is
	// forgotten, and is shown only to the customer and the firm.
	Commitment string `json:"commitment,omitempty"`
	Salt       []byte `json:"salt,omitempty"`
}

// DeletionAttestation is a firm's statement that it deleted the data it
// received under a consent (after revocation or expiry).
type DeletionAttestation struct {
	ConsentID  ConsentID `json:"consent_id"`
	FirmID     FirmID    `json:"firm_id"`
	Categories []string  `json:"categories"`
	At         time.Time `json:"at"`
}

// Pseudonym is the identifier one firm knows a customer by. Each
// (customer, firm) pair has its own, drawn at random, so two firms cannot
// join their data on it.
type Pseudonym string

// NewPseudonym draws a fresh pseudonym.
func NewPseudonym() Pseudonym { return Pseudonym(newID("psn")) }

// SealedRecord is a vault record as stores keep it: Sealed is the value
// encrypted by package vault under the customer's data key. Stores never
// see plaintext values.
type SealedRecord struct {
	CustomerID CustomerID `json:"customer_id"`
	Category   string     `json:"category"`
	Sealed     []byte     `json:"sealed"`
	Source     string     `json:"source"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// MaxSealedBytes bounds a sealed value: the largest record plus room for
// the envelope (version, nonce and tag).
const MaxSealedBytes = MaxRecordBytes + 64

// Validate checks the category and the size of the sealed value.
func (r SealedRecord) Validate() error {
	if _, ok := CategoryByName(r.Category); !ok {
		return fmt.Errorf("%w: unknown category %q", ErrInvalid, r.Category)
	}
	if len(r.Sealed) == 0 || len(r.Sealed) > MaxSealedBytes {
		return fmt.Errorf("%w: sealed %s value must be 1 to %d bytes", ErrInvalid, r.Category, MaxSealedBytes)
	}
	return nil
}

// CustomerKey is a customer's data key, wrapped (encrypted) by the master
// key of version KeyVersion. Destroying it destroys every value sealed
// under it: that is how Steward erases a customer.
type CustomerKey struct {
	CustomerID CustomerID `json:"customer_id"`
	Wrapped    []byte     `json:"wrapped"`
	KeyVersion int        `json:"key_version"`
	CreatedAt  time.Time  `json:"created_at"`
}

// ErrUnreadable means a sealed value or wrapped key could not be opened:
// the key that sealed it is gone (the customer was forgotten), the master
// key is wrong, or the bytes were altered.
var ErrUnreadable = errors.New("cannot be decrypted")
