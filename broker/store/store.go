// Package store declares Steward's persistence contract: one Store with
// read-write and read-only transactions, and the Tx operations every later
// package builds on. Two implementations exist and pass one conformance
// suite (package storetest): store/postgres (pgx, production) and
// store/sqlite (modernc.org/sqlite, the embedded default).
//
// # Transactions
//
// All reads and writes happen inside Update or View. Update runs fn in a
// read-write transaction and commits only if fn returns nil, so a state
// change and the ledger entry that records it commit together or not at
// all. Implementations MUST serialize conflicting updates of one consent:
// GetConsent inside Update locks the row until commit (PostgreSQL
// SELECT ... FOR UPDATE; SQLite serializes writers). UpdateConsent MUST
// refuse, with broker.ErrConflict, a consent whose stored Version is not
// c.Version-1, and MUST append the event to the history in the same
// transaction.
//
// A backend MAY defer writes whose only result is success (InsertDecision,
// RecordDisclosures, InsertDisclosure, StageLedgerEntry, UseDPoPProof) and
// send them with the transaction's next statement or with its commit, to
// save round trips (store/postgres does, in one pipeline). Their errors
// then come from that later call or from Update; either way the
// transaction fails and nothing it wrote stays. Deferred writes run in
// order before anything that follows them, so reads see them.
package store

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
)

// ErrProofReplayed is the broker.ErrConflict a DPoP proof already used
// (and not yet expired) fails with: from UseDPoPProof, from the statement
// or commit a deferred UseDPoPProof went with, or for one read of
// ReadAccessContexts.
var ErrProofReplayed = fmt.Errorf("dpop proof already used: %w", broker.ErrConflict)

// ErrTokenInactive is the broker.ErrNotFound one read of
// ReadAccessContexts fails with when the access token it names
// (AccessQuery.Token) is no longer live.
var ErrTokenInactive = fmt.Errorf("access token not active: %w", broker.ErrNotFound)

// Store is Steward's persistence. Implementations: store/postgres, store/sqlite.
type Store interface {
	// Update runs fn in a read-write transaction; it commits if fn returns
	// nil and rolls back otherwise, returning fn's error unchanged (wrapped
	// errors keep their sentinels).
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Backend names the implementation: "postgres" or "sqlite".
	Backend() string
	// Close releases connections. In-flight transactions finish first.
	Close()
}

// Page bounds a listing. Zero Limit means DefaultLimit; Limit is capped at MaxLimit.
type Page struct {
	// After is the id the previous page ended with; listings are ordered by id.
	After string
	Limit int
}

const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// N returns the effective limit.
func (p Page) N() int {
	switch {
	case p.Limit <= 0:
		return DefaultLimit
	case p.Limit > MaxLimit:
		return MaxLimit
	}
	return p.Limit
}

// ConsentFilter selects consents; zero fields match everything.
type ConsentFilter struct {
	CustomerID broker.CustomerID
	FirmID     broker.FirmID
	State      broker.ConsentState
	// ExpiringBy selects granted consents whose ExpiresAt ≤ ExpiringBy.
	ExpiringBy time.Time
	Page       Page
}

// DecisionFilter selects decision records; zero fields match everything
// except that one of CustomerID, FirmID or ConsentID must be set.
type DecisionFilter struct {
	CustomerID broker.CustomerID
	FirmID     broker.FirmID
	ConsentID  broker.ConsentID
	// Before selects records decided strictly before it (for paging back).
	Before time.Time
	Limit  int
}

// LedgerFilter selects sequenced ledger entries; zero fields match all.
type LedgerFilter struct {
	Types     []broker.EntryType
	FirmID    broker.FirmID
	Purpose   string
	Category  string
	ConsentID broker.ConsentID
	// From and To bound the entry time: From ≤ time < To.
	From, To time.Time
	// After is the index the previous page ended with; -1 for the start.
	After int64
	Limit int
}

// IndexedEntry is a sequenced ledger entry with its index and leaf hash.
type IndexedEntry struct {
	Index int64 `json:"index"`
	// LeafHash is the RFC 6962 leaf hash, hex.
	LeafHash string `json:"leaf_hash"`
	// Raw is the entry's canonical bytes, exactly as logged.
	Raw   []byte       `json:"-"`
	Entry broker.Entry `json:"-"`
}

// LedgerReport is the regulator's aggregate view of a period.
type LedgerReport struct {
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Consents    []ConsentCounts   `json:"consents"`
	Disclosures []DisclosureCount `json:"disclosures"`
	// AfterRevocation lists disclosures logged after their consent ended.
	// Steward's first invariant says it is always empty.
	AfterRevocation []LateDisclosure `json:"disclosures_after_revocation"`
	// RefusalsAfterEnd says, per consent ended in the period, how long
	// after the end the firm's last refused access came.
	RefusalsAfterEnd []RefusalAfterEnd `json:"refusals_after_end"`
}

// ConsentCounts counts consent outcomes for one firm and purpose.
type ConsentCounts struct {
	FirmID  broker.FirmID `json:"firm_id"`
	Purpose string        `json:"purpose"`
	Granted int           `json:"granted"`
	Denied  int           `json:"denied"`
	Revoked int           `json:"revoked"`
	Expired int           `json:"expired"`
}

// DisclosureCount counts one firm's disclosures.
type DisclosureCount struct {
	FirmID      broker.FirmID `json:"firm_id"`
	Disclosures int           `json:"disclosures"`
}

// LateDisclosure is a disclosure logged after its consent ended.
type LateDisclosure struct {
	Index     int64            `json:"index"`
	ConsentID broker.ConsentID `json:"consent_id"`
	FirmID    broker.FirmID    `json:"firm_id"`
}

// RefusalAfterEnd is the last access refused under an ended consent.
type RefusalAfterEnd struct {
	ConsentID     broker.ConsentID `json:"consent_id"`
	FirmID        broker.FirmID    `json:"firm_id"`
	Ended         broker.EntryType `json:"ended"`
	EndedAt       time.Time        `json:"ended_at"`
	LastRefusedAt time.Time        `json:"last_refused_at"`
	Seconds       float64          `json:"seconds_after_end"`
}

// AccessContext is what ReadAccessContext returns.
type AccessContext struct {
	Consent   broker.Consent
	Firm      broker.Firm
	Customer  broker.Customer
	Terms     broker.TermsVersion
	Pseudonym broker.Pseudonym
	// Key is the customer's wrapped data key (zero if none), so that the
	// disclosure opens the vault without reading it again.
	Key broker.CustomerKey
	// Explicit says the customer granted the consent themselves (its
	// requested → granted event has a "customer:" actor), rather than a
	// standing allow in their terms.
	Explicit bool
	// Counts are the consent's disclosures at or after each of
	// AccessQuery.Since, as CountDisclosuresSince counts them.
	Counts []int
	// LastDisclosure is when the consent's latest disclosure was made
	// (zero if none). The frequency counts rely on a consent's
	// disclosures being recorded in time order, so a disclosure recorded
	// under this read MUST NOT be dated before it (a clock that stepped
	// back, another replica's clock).
	LastDisclosure time.Time
	// Records are the customer's sealed vault records, by category, when
	// AccessQuery.Records asked for them.
	Records []broker.SealedRecord
}

// DisclosureWrite is what one fetch writes: the decision record it was
// decided under, sealed (the store writes its canonical JSON under its
// hash, as the ledger entry cites it), and, if it disclosed anything, the
// disclosure and its ledger entry (canonical bytes, as StageLedgerEntry
// takes).
type DisclosureWrite struct {
	Decision   broker.SealedDecision
	Disclosure *broker.Disclosure
	Entry      []byte
}

// AccessQuery is what ReadAccessContext reads besides the access context
// itself, in the same round trip where the backend pipelines.
type AccessQuery struct {
	// Now is when the request is made: the time Token must be live at and
	// Proof is used at.
	Now time.Time
	// Token, if set, is the stored key (signature) of the OAuth access
	// token the request presents: the read fails with ErrTokenInactive
	// unless the token is stored, active and unexpired at Now, its client
	// active and the client's firm approved. A resource server that
	// remembers what introspection said of a token (facts that never
	// change for a token) checks here what can change.
	Token string
	// Proof, if set, is the request's DPoP proof, recorded first as
	// UseDPoPProof records it; a replay fails the read with
	// ErrProofReplayed.
	Proof *ProofUse
	// Since asks for AccessContext.Counts.
	Since []time.Time
	// Records asks for AccessContext.Records.
	Records bool
}

// ProofUse is a DPoP proof to record: its replay key (hashed by the
// caller) and when it expires.
type ProofUse struct {
	Key     string
	Expires time.Time
}

// AccessRead names one consent for ReadAccessContexts and what to read
// with it.
type AccessRead struct {
	Consent broker.ConsentID
	AccessQuery
}

// Tx is what a transaction can do. Getters return broker.ErrNotFound for a
// missing row; creators return broker.ErrConflict for a duplicate key and
// broker.ErrNotFound when a referenced row does not exist.
type Tx interface {
	CreateCustomer(ctx context.Context, c broker.Customer) error
	GetCustomer(ctx context.Context, id broker.CustomerID) (broker.Customer, error)
	GetCustomerByHandle(ctx context.Context, handle string) (broker.Customer, error)
	ListCustomers(ctx context.Context, p Page) ([]broker.Customer, error)

	CreateFirm(ctx context.Context, f broker.Firm) error
	GetFirm(ctx context.Context, id broker.FirmID) (broker.Firm, error)
	ListFirms(ctx context.Context, p Page) ([]broker.Firm, error)
	// SetFirmStatus moves a firm to status; broker.ErrTransition if the
	// move is not allowed by broker.FirmStatus.CanMoveTo.
	SetFirmStatus(ctx context.Context, id broker.FirmID, status broker.FirmStatus, at time.Time) (broker.Firm, error)

	// SetFirmWebhook sets where the firm receives webhooks ("" for none).
	SetFirmWebhook(ctx context.Context, id broker.FirmID, url string, at time.Time) (broker.Firm, error)

	CreateClient(ctx context.Context, c broker.Client) error
	GetClient(ctx context.Context, id broker.ClientID) (broker.Client, error)
	ListClients(ctx context.Context, firm broker.FirmID) ([]broker.Client, error)

	CreateRegulator(ctx context.Context, r broker.Regulator) error
	ListRegulators(ctx context.Context) ([]broker.Regulator, error)

	// PutRecord creates or replaces the customer's sealed record for
	// r.Category. Stores only ever see sealed values: package vault
	// encrypts them before they get here and decrypts them after.
	PutRecord(ctx context.Context, r broker.SealedRecord) error
	// ListRecords returns the customer's sealed records, by category.
	ListRecords(ctx context.Context, customer broker.CustomerID) ([]broker.SealedRecord, error)

	// EnsureCustomerKey stores k unless the customer already has a data
	// key, and returns the key stored: k, or the one a concurrent
	// transaction stored first. Callers MUST use the key it returns.
	EnsureCustomerKey(ctx context.Context, k broker.CustomerKey) (broker.CustomerKey, error)
	// GetCustomerKey returns the customer's wrapped data key, or
	// broker.ErrNotFound (never created, or destroyed by ForgetCustomer).
	GetCustomerKey(ctx context.Context, customer broker.CustomerID) (broker.CustomerKey, error)
	// ListCustomerKeys returns wrapped keys ordered by customer id.
	ListCustomerKeys(ctx context.Context, p Page) ([]broker.CustomerKey, error)
	// RewrapCustomerKey replaces a key's wrapped bytes and version,
	// provided the stored version is still from; otherwise it returns
	// broker.ErrConflict and changes nothing.
	RewrapCustomerKey(ctx context.Context, k broker.CustomerKey, from int) error
	// ForgetCustomer erases a customer in the caller's transaction: it
	// deletes their data key, vault records, terms versions and pseudonym
	// mappings, and anonymises their row (handle set to tombstone, name,
	// email and password hash cleared). Consents, decision records and
	// disclosures stay, naming only the anonymised row, for accountability.
	ForgetCustomer(ctx context.Context, id broker.CustomerID, tombstone string) error

	// AddTerms stores doc as the customer's next terms version (1, 2, …).
	AddTerms(ctx context.Context, customer broker.CustomerID, doc []byte, at time.Time) (broker.TermsVersion, error)
	// LatestTerms returns the newest version, or broker.ErrNotFound.
	LatestTerms(ctx context.Context, customer broker.CustomerID) (broker.TermsVersion, error)
	ListTerms(ctx context.Context, customer broker.CustomerID) ([]broker.TermsVersion, error)

	// CreateConsent stores a new consent (Version 1) and its first event.
	CreateConsent(ctx context.Context, c broker.Consent, ev broker.ConsentEvent) error
	// GetConsent returns a consent; inside Update it locks it until commit.
	GetConsent(ctx context.Context, id broker.ConsentID) (broker.Consent, error)
	// UpdateConsent stores c (whose Version is one more than the stored
	// one) and appends ev to its history.
	UpdateConsent(ctx context.Context, c broker.Consent, ev broker.ConsentEvent) error
	ListConsents(ctx context.Context, f ConsentFilter) ([]broker.Consent, error)
	ConsentHistory(ctx context.Context, id broker.ConsentID) ([]broker.ConsentEvent, error)

	// RevokeConsentTokens ends, in the caller's transaction, every
	// authorization code, access token and refresh token issued under the
	// consent, and returns how many stored codes and tokens went. Callers
	// MUST call it in the transaction that ends the consent (revocation,
	// expiry, erasure), so no token outlives its consent.
	RevokeConsentTokens(ctx context.Context, id broker.ConsentID) (int64, error)

	InsertDisclosure(ctx context.Context, d broker.Disclosure) error
	// RecordDisclosures stores what fetches wrote, together: each decision
	// record, and each disclosure with its ledger entry (canonical bytes,
	// as StageLedgerEntry takes), one statement per table where the
	// backend can. It returns each decision record's hash. A malformed
	// entry, or an entry without its disclosure, stores nothing.
	RecordDisclosures(ctx context.Context, ws []DisclosureWrite) ([]string, error)
	ListDisclosures(ctx context.Context, customer broker.CustomerID, p Page) ([]broker.Disclosure, error)
	// CountDisclosuresSince counts the consent's disclosures in several
	// windows at once: out[i] counts those at or after since[i]. The
	// store numbers each consent's disclosures as it records them
	// (InsertDisclosure, RecordDisclosures) and counts a window as the
	// difference of two numbers, so the counts are exact when a consent's
	// disclosures are recorded in time order, as the Data API records
	// them (see AccessContext.LastDisclosure).
	CountDisclosuresSince(ctx context.Context, consent broker.ConsentID, since []time.Time) ([]int, error)
	// ReadAccessContext reads, in one go, what an access decision under
	// the consent depends on: the consent (locked until commit inside
	// Update, like GetConsent), its firm, its customer, the customer's
	// newest terms version (zero if none), the firm's pseudonym for the
	// customer ("" if none yet) and the customer's wrapped data key (zero
	// if none); and, as q asks, the consent's disclosure counts and the
	// customer's sealed records. The counts are taken after the consent
	// is locked, so they include every disclosure committed before it.
	// The Data API calls it on every request.
	ReadAccessContext(ctx context.Context, id broker.ConsentID, q AccessQuery) (AccessContext, error)
	// ReadAccessContexts is ReadAccessContext for several consents at
	// once, in one round trip where the backend pipelines; it locks the
	// consents in ascending id order, so that callers cannot deadlock on
	// them. errs[i] is what failed reads[i] alone (broker.ErrNotFound,
	// ErrProofReplayed), and the others stand; err fails them all. The
	// counts are read before any of the transaction's writes, so reads
	// should name distinct consents.
	ReadAccessContexts(ctx context.Context, reads []AccessRead) (acs []AccessContext, errs []error, err error)
	// AttestDeletion stores a firm's deletion attestation for a consent;
	// broker.ErrConflict if the consent already has one.
	AttestDeletion(ctx context.Context, a broker.DeletionAttestation) error
	// GetDeletionAttestation returns the consent's attestation, or
	// broker.ErrNotFound.
	GetDeletionAttestation(ctx context.Context, consent broker.ConsentID) (broker.DeletionAttestation, error)

	// Pseudonym returns the customer's pseudonym for the firm, creating it
	// on first use.
	Pseudonym(ctx context.Context, customer broker.CustomerID, firm broker.FirmID) (broker.Pseudonym, error)
	// LookupPseudonym returns the customer's pseudonym for the firm
	// without creating one: broker.ErrNotFound if there is none (never
	// used, or the customer was forgotten).
	LookupPseudonym(ctx context.Context, customer broker.CustomerID, firm broker.FirmID) (broker.Pseudonym, error)
	// ResolvePseudonym maps a firm's pseudonym back to the customer, only
	// for that firm.
	ResolvePseudonym(ctx context.Context, firm broker.FirmID, p broker.Pseudonym) (broker.CustomerID, error)

	// InsertDecision stores a decision record under its content hash and
	// returns the hash. Storing the same record twice is not an error.
	InsertDecision(ctx context.Context, r broker.DecisionRecord) (string, error)
	// GetDecision returns the record with the given hash.
	GetDecision(ctx context.Context, hash string) (broker.DecisionRecord, error)
	// ListDecisions returns decision records, newest first.
	ListDecisions(ctx context.Context, f DecisionFilter) ([]broker.DecisionRecord, error)

	// SearchLedger returns indexed ledger entries matching f, in index order.
	SearchLedger(ctx context.Context, f LedgerFilter) ([]IndexedEntry, error)
	// LedgerReport aggregates the ledger over [from, to) for regulators.
	LedgerReport(ctx context.Context, from, to time.Time) (LedgerReport, error)

	// EnqueueWebhook adds a delivery to the outbox; it commits with the
	// transaction or not at all.
	EnqueueWebhook(ctx context.Context, d broker.WebhookDelivery) error
	// ClaimWebhooks leases up to limit pending deliveries due at now for
	// lease, so no other worker attempts them meanwhile, and returns them.
	ClaimWebhooks(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]broker.WebhookDelivery, error)
	// FinishWebhook records an attempt's outcome: d.State, d.Attempts,
	// d.NextAttemptAt, d.LastError, d.DeliveredAt; the lease is released.
	FinishWebhook(ctx context.Context, d broker.WebhookDelivery) error
	// ListWebhooks lists deliveries in a state ("" for all), by id.
	ListWebhooks(ctx context.Context, state broker.WebhookState, p Page) ([]broker.WebhookDelivery, error)

	// UseDPoPProof records an accepted DPoP proof's replay key (already
	// hashed by the caller) until exp, in the caller's transaction;
	// broker.ErrConflict if it is recorded and unexpired at now. It shares
	// the table the authorization server's replay cache uses.
	UseDPoPProof(ctx context.Context, key string, exp, now time.Time) error

	// StageLedgerEntry queues a canonical ledger entry to be sequenced
	// into the log; it commits with the transaction or not at all.
	StageLedgerEntry(ctx context.Context, entry []byte) error

	ListCategories(ctx context.Context) ([]broker.Category, error)
	ListPurposes(ctx context.Context) ([]broker.Purpose, error)

	BackchannelTx
}
