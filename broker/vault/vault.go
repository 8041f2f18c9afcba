// Package vault is the customer's encrypted vault: envelope encryption of
// every record value, import from JSON and CSV, and crypto-shredding.
//
// # Envelope encryption
//
// Each customer has a random 256-bit data key. Record values are sealed
// with AES-256-GCM under it, with a random 96-bit nonce per value and
// additional data binding the customer id and the category, so a sealed
// value copied to another customer or category does not open. The data
// key is stored only wrapped: sealed with AES-256-GCM under the master key
// (additional data: the customer id), next to the master key's version.
// The store sees wrapped keys and sealed values, never plaintext.
//
// The master key is a Config field; cmd/steward keeps it in a file
// (LoadOrCreateKeyFile). To rotate it, add a new version to the key file
// (RotateKeyFile), restart, and run Rewrap: it rewraps every data key
// under the new version; then retire the old version.
//
// # Crypto-shredding
//
// Forget deletes the customer's data key, so every value ever sealed under
// it is unreadable wherever a copy survives (backups, replicas, logs), and
// in the same transaction deletes their records, terms and pseudonym
// mappings and anonymises their row. Unwrapped keys are never cached, so
// Forget takes effect on every replica at once.
//
// # Schemas
//
// Every category has a small declarative schema (schema.go): field names,
// types and limits. Put and Import refuse values that do not match it.
package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// KeySize is the size of master and data keys in bytes (AES-256).
const KeySize = 32

// DefaultKeyVersion is the version of a master key when Config names none.
const DefaultKeyVersion = 1

// Config configures New.
type Config struct {
	// MasterKey wraps customers' data keys: 32 random bytes. Required.
	MasterKey []byte
	// KeyVersion names MasterKey; it is stored with every data key it
	// wraps. 0 means DefaultKeyVersion.
	KeyVersion int
	// RetiredKeys are earlier master keys by version, still needed to
	// unwrap data keys that Rewrap has not yet moved to KeyVersion.
	RetiredKeys map[int][]byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service runs the vault use cases over a store.
type Service struct {
	store   store.Store
	version int
	masters map[int]cipher.AEAD
	now     func() time.Time
}

// New checks cfg and returns a Service.
func New(s store.Store, cfg Config) (*Service, error) {
	if cfg.KeyVersion == 0 {
		cfg.KeyVersion = DefaultKeyVersion
	}
	if cfg.KeyVersion < 0 {
		return nil, fmt.Errorf("vault: key version %d: %w", cfg.KeyVersion, broker.ErrInvalid)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	svc := &Service{store: s, version: cfg.KeyVersion, masters: map[int]cipher.AEAD{}, now: cfg.Now}
	keys := map[int][]byte{cfg.KeyVersion: cfg.MasterKey}
	for v, k := range cfg.RetiredKeys {
		if v == cfg.KeyVersion || v <= 0 {
			return nil, fmt.Errorf("vault: retired key version %d: %w", v, broker.ErrInvalid)
		}
		keys[v] = k
	}
	for v, k := range keys {
		a, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("vault: master key version %d: %w", v, err)
		}
		svc.masters[v] = a
	}
	return svc, nil
}

// newAEAD returns AES-256-GCM with random 96-bit nonces that Seal
// prepends to its output.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", broker.ErrInvalid, len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(b)
}

// envelopeV1 is the first byte of every sealed value and wrapped key, so
// the format can change without guessing.
const envelopeV1 byte = 1

func sealWith(a cipher.AEAD, plaintext, aad []byte) []byte {
	out := make([]byte, 1, 1+len(plaintext)+a.Overhead())
	out[0] = envelopeV1
	return a.Seal(out, nil, plaintext, aad)
}

func openWith(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+a.Overhead() || sealed[0] != envelopeV1 {
		return nil, broker.ErrUnreadable
	}
	pt, err := a.Open(nil, nil, sealed[1:], aad)
	if err != nil {
		return nil, broker.ErrUnreadable
	}
	return pt, nil
}

// recordAAD binds a sealed value to its customer and category.
func recordAAD(c broker.CustomerID, category string) []byte {
	return []byte("steward/vault/record/v1\x00" + string(c) + "\x00" + category)
}

// keyAAD binds a wrapped data key to its customer.
func keyAAD(c broker.CustomerID) []byte {
	return []byte("steward/vault/key/v1\x00" + string(c))
}

// dataKey is an unwrapped data key, ready to seal and open one customer's values.
type dataKey struct {
	customer broker.CustomerID
	aead     cipher.AEAD
}

func (k dataKey) seal(category string, value []byte) []byte {
	return sealWith(k.aead, value, recordAAD(k.customer, category))
}

func (k dataKey) open(category string, sealed []byte) ([]byte, error) {
	return openWith(k.aead, sealed, recordAAD(k.customer, category))
}

func (s *Service) wrap(c broker.CustomerID, key []byte) broker.CustomerKey {
	return broker.CustomerKey{CustomerID: c, Wrapped: sealWith(s.masters[s.version], key, keyAAD(c)),
		KeyVersion: s.version, CreatedAt: s.now().UTC()}
}

func (s *Service) unwrap(k broker.CustomerKey) ([]byte, error) {
	m, ok := s.masters[k.KeyVersion]
	if !ok {
		return nil, fmt.Errorf("data key of %s is wrapped by master key version %d, which is not configured: %w", k.CustomerID, k.KeyVersion, broker.ErrUnreadable)
	}
	raw, err := openWith(m, k.Wrapped, keyAAD(k.CustomerID))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of %s (wrong master key?): %w", k.CustomerID, err)
	}
	return raw, nil
}

func (s *Service) open(k broker.CustomerKey) (dataKey, error) {
	raw, err := s.unwrap(k)
	if err != nil {
		return dataKey{}, err
	}
	a, err := newAEAD(raw)
	if err != nil {
		return dataKey{}, fmt.Errorf("data key of %s: %w", k.CustomerID, err)
	}
	return dataKey{customer: k.CustomerID, aead: a}, nil
}

// keyFor returns the customer's data key, creating it on first use when
// create is set. It refuses forgotten customers.
func (s *Service) keyFor(ctx context.Context, tx store.Tx, customer broker.CustomerID, create bool) (dataKey, error) {
	k, err := tx.GetCustomerKey(ctx, customer)
	if errors.Is(err, broker.ErrNotFound) && create {
		c, err := tx.GetCustomer(ctx, customer)
		if err != nil {
			return dataKey{}, err
		}
		if c.Forgotten() {
			return dataKey{}, fmt.Errorf("customer %s was forgotten: %w", customer, broker.ErrNotFound)
		}
		raw := make([]byte, KeySize)
		if _, err := rand.Read(raw); err != nil {
			return dataKey{}, err
		}
		k, err = tx.EnsureCustomerKey(ctx, s.wrap(customer, raw))
		if err != nil {
			return dataKey{}, err
		}
	} else if err != nil {
		return dataKey{}, err
	}
	return s.open(k)
}

// Put validates value against the category's schema and stores it, sealed,
// as the customer's record for category, replacing any earlier one. source
// says who wrote it: "customer", "import", or a firm id.
func (s *Service) Put(ctx context.Context, customer broker.CustomerID, category string, value json.RawMessage, source string) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		return s.PutTx(ctx, tx, broker.Record{CustomerID: customer, Category: category, Value: value, Source: source, UpdatedAt: s.now()})
	})
	if err != nil {
		return fmt.Errorf("vault put %s of %s: %w", category, customer, err)
	}
	return nil
}

// PutTx is Put inside the caller's transaction, for use cases that store a
// record together with other changes (a firm returning data with its
// ledger entry; seeding demo data). The value is checked against its
// schema and normalised before it is sealed.
func (s *Service) PutTx(ctx context.Context, tx store.Tx, r broker.Record) error {
	v, err := CheckRecord(r.Category, r.Value)
	if err != nil {
		return err
	}
	k, err := s.keyFor(ctx, tx, r.CustomerID, true)
	if err != nil {
		return err
	}
	return s.putSealed(ctx, tx, k, r.Category, v, r.Source, r.UpdatedAt)
}

func (s *Service) putSealed(ctx context.Context, tx store.Tx, k dataKey, category string, value []byte, source string, at time.Time) error {
	return tx.PutRecord(ctx, broker.SealedRecord{CustomerID: k.customer, Category: category,
		Sealed: k.seal(category, value), Source: source, UpdatedAt: at})
}

// Records returns the customer's records, decrypted, ordered by category.
// With categories given it returns only those. A customer with no records
// (or a forgotten one) has none.
func (s *Service) Records(ctx context.Context, customer broker.CustomerID, categories ...string) ([]broker.Record, error) {
	var out []broker.Record
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		out, err = s.RecordsTx(ctx, tx, customer, categories...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("vault records of %s: %w", customer, err)
	}
	return out, nil
}

// RecordsTx is Records inside the caller's transaction. A value that does
// not open fails the whole call with broker.ErrUnreadable: a vault is never
// returned with holes in it.
func (s *Service) RecordsTx(ctx context.Context, tx store.Tx, customer broker.CustomerID, categories ...string) ([]broker.Record, error) {
	sealed, err := tx.ListRecords(ctx, customer)
	if err != nil {
		return nil, err
	}
	if sealed = only(sealed, categories); len(sealed) == 0 {
		return nil, nil
	}
	k, err := s.keyFor(ctx, tx, customer, false)
	if err != nil {
		return nil, err
	}
	return k.openAll(sealed)
}

// OpenRecords opens the customer's sealed records that the caller has
// read already, with their wrapped data key k (store.AccessContext's
// Records and Key), keeping only categories when some are given. A zero
// k means the customer has none, and so no readable records; a key or
// record of another customer is broker.ErrInvalid.
func (s *Service) OpenRecords(k broker.CustomerKey, customer broker.CustomerID, sealed []broker.SealedRecord, categories ...string) ([]broker.Record, error) {
	if k.CustomerID != customer && k.CustomerID != "" {
		return nil, fmt.Errorf("%w: key of %s given for %s", broker.ErrInvalid, k.CustomerID, customer)
	}
	if sealed = only(sealed, categories); len(sealed) == 0 {
		return nil, nil
	}
	for _, r := range sealed {
		if r.CustomerID != customer {
			return nil, fmt.Errorf("%w: record of %s given for %s", broker.ErrInvalid, r.CustomerID, customer)
		}
	}
	if len(k.Wrapped) == 0 {
		return nil, fmt.Errorf("key of %s: %w", customer, broker.ErrNotFound)
	}
	dk, err := s.open(k)
	if err != nil {
		return nil, err
	}
	return dk.openAll(sealed)
}

// only returns the records of categories (all of them if none are named),
// leaving sealed as it is.
func only(sealed []broker.SealedRecord, categories []string) []broker.SealedRecord {
	if len(categories) == 0 {
		return sealed
	}
	out := make([]broker.SealedRecord, 0, len(categories))
	for _, r := range sealed {
		if slices.Contains(categories, r.Category) {
			out = append(out, r)
		}
	}
	return out
}

// openAll opens every record, or fails as a whole.
func (k dataKey) openAll(sealed []broker.SealedRecord) ([]broker.Record, error) {
	out := make([]broker.Record, 0, len(sealed))
	for _, r := range sealed {
		v, err := k.open(r.Category, r.Sealed)
		if err != nil {
			return nil, fmt.Errorf("%s record: %w", r.Category, err)
		}
		out = append(out, broker.Record{CustomerID: r.CustomerID, Category: r.Category, Value: v, Source: r.Source, UpdatedAt: r.UpdatedAt})
	}
	return out, nil
}
