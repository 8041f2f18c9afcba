// Package export builds a customer's complete archive of what Steward
// holds about them (GDPR Art. 15 and 20): their profile, their vault
// decrypted, every version of their terms, every consent with its full
// history, the decision records that explain each decision, every
// disclosure, the pseudonym each firm knows them by, the ledger entries
// about their consents and disclosures with the leaf hash and index that
// locate each in the public ledger, and their consent records in the
// ISO/IEC TS 27560 form expressed in W3C DPV JSON-LD (see jsonld.go).
//
// The archive holds the customer's own data and nothing of anyone else's:
// every listing is by their customer id, and ledger entries are found
// through their own consents.
//
// Export reads everything in one read-only transaction. It decrypts the
// vault through a func the caller supplies (cmd passes
// (*vault.Service).RecordsTx), so this package imports no key material.
package export

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/store"
)

// FormatVersion names the archive layout.
const FormatVersion = "steward.export/v1"

// OpenVault returns the customer's vault records, decrypted, inside tx:
// all of them when no categories are given. (*vault.Service).RecordsTx is one.
type OpenVault func(ctx context.Context, tx store.Tx, customer broker.CustomerID, categories ...string) ([]broker.Record, error)

// Archive is everything Steward holds about one customer.
type Archive struct {
	Format      string          `json:"format"`
	GeneratedAt time.Time       `json:"generated_at"`
	Customer    broker.Customer `json:"customer"`
	// Vault is the customer's records, decrypted.
	Vault []broker.Record       `json:"vault"`
	Terms []broker.TermsVersion `json:"terms"`
	// Firms are the firms the customer has consents with.
	Firms []broker.Firm `json:"firms"`
	// Pseudonyms are the identifiers each of those firms knows them by.
	Pseudonyms  []Pseudonym             `json:"pseudonyms"`
	Consents    []Consent               `json:"consents"`
	Decisions   []broker.DecisionRecord `json:"decisions"`
	Disclosures []Disclosure            `json:"disclosures"`
	// ConsentRecords is a JSON-LD document holding one dpv:ConsentRecord
	// per consent, in the ISO/IEC TS 27560 form the DPV guide describes.
	ConsentRecords json.RawMessage `json:"consent_records"`
}

// Pseudonym is the identifier one firm knows the customer by.
type Pseudonym struct {
	FirmID    broker.FirmID    `json:"firm_id"`
	Pseudonym broker.Pseudonym `json:"pseudonym"`
}

// Consent is a consent with its history and the ledger entries that
// recorded it.
type Consent struct {
	broker.Consent
	History []broker.ConsentEvent `json:"history"`
	Ledger  []LedgerEntry         `json:"ledger"`
}

// Disclosure is a disclosure with the ledger entry that recorded it, if
// it has been sequenced and names the disclosure.
type Disclosure struct {
	broker.Disclosure
	Ledger *LedgerEntry `json:"ledger,omitempty"`
}

// LedgerEntry locates an entry in the public ledger: its receipt (index
// and RFC 6962 leaf hash; with Config.Ledger set, also the signed
// checkpoint and the inclusion proof, for entries the checkpoint covers),
// and the entry itself, byte for byte as logged, so anyone can check the
// leaf hash and verify the receipt with ledger.VerifyReceipt.
type LedgerEntry struct {
	broker.Receipt
	Type  broker.EntryType `json:"type"`
	Entry json.RawMessage  `json:"entry"`
}

// Config configures New.
type Config struct {
	// Store is read in one read-only transaction per export. Required.
	Store store.Store
	// Vault opens the customer's vault. Required.
	Vault OpenVault
	// Ledger, if set, is read for the latest checkpoint, and every ledger
	// entry it covers gets that checkpoint and an inclusion proof in its
	// receipt, so the customer can check it offline with
	// ledger.VerifyReceipt and the log's public key.
	Ledger ledger.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service builds archives.
type Service struct {
	cfg Config
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Vault == nil {
		return nil, fmt.Errorf("export: %w: a store and a vault are required", broker.ErrInvalid)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Export builds the customer's archive. A forgotten customer has none:
// broker.ErrNotFound, as for an unknown one.
func (s *Service) Export(ctx context.Context, customer broker.CustomerID) (*Archive, error) {
	a := &Archive{Format: FormatVersion, GeneratedAt: s.cfg.Now().UTC()}
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error { return s.build(ctx, tx, customer, a) })
	if err == nil && s.cfg.Ledger != nil {
		err = addProofs(ctx, s.cfg.Ledger, a)
	}
	if err != nil {
		return nil, fmt.Errorf("export for %s: %w", customer, err)
	}
	return a, nil
}

// addProofs completes the receipt of every entry the latest checkpoint
// covers. Entries sequenced after it keep index and leaf hash only.
func addProofs(ctx context.Context, r ledger.Reader, a *Archive) error {
	size, note, err := r.ReadCheckpoint(ctx)
	if errors.Is(err, broker.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var entries []*LedgerEntry
	for i := range a.Consents {
		for j := range a.Consents[i].Ledger {
			entries = append(entries, &a.Consents[i].Ledger[j])
		}
	}
	for i := range a.Disclosures {
		if a.Disclosures[i].Ledger != nil {
			entries = append(entries, a.Disclosures[i].Ledger)
		}
	}
	entries = slices.DeleteFunc(entries, func(le *LedgerEntry) bool { return le.Index >= size })
	hashes, err := proofHashes(ctx, r, size, entries)
	if err != nil {
		return err
	}
	for _, le := range entries {
		p, err := tlog.ProveRecord(size, le.Index, hashes)
		if err != nil {
			return fmt.Errorf("prove entry %d in tree %d: %w", le.Index, size, err)
		}
		le.Checkpoint = string(note)
		le.Proof = make([]string, len(p))
		for i, h := range p {
			le.Proof[i] = base64.StdEncoding.EncodeToString(h[:])
		}
	}
	return nil
}

// proofHashes reads, in one call, every stored hash the inclusion proofs
// of entries need (found by a dry run of tlog.ProveRecord), rather than
// one read per proof, and returns a reader over them.
func proofHashes(ctx context.Context, r ledger.Reader, size int64, entries []*LedgerEntry) (tlog.HashReaderFunc, error) {
	need := map[int64]bool{}
	dry := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		for _, i := range ix {
			need[i] = true
		}
		return make([]tlog.Hash, len(ix)), nil
	})
	for _, le := range entries {
		if _, err := tlog.ProveRecord(size, le.Index, dry); err != nil {
			return nil, fmt.Errorf("prove entry %d in tree %d: %w", le.Index, size, err)
		}
	}
	ix := make([]int64, 0, len(need))
	for i := range need {
		ix = append(ix, i)
	}
	slices.Sort(ix)
	// Read in runs of nearby indexes: each is one range read in the store.
	got := make(map[int64]tlog.Hash, len(ix))
	for start := 0; start < len(ix); {
		end := start + 1
		for end < len(ix) && ix[end]-ix[end-1] <= 64 {
			end++
		}
		hs, err := r.ReadHashes(ctx, ix[start:end])
		if err != nil {
			return nil, err
		}
		for k, i := range ix[start:end] {
			got[i] = hs[k]
		}
		start = end
	}
	return func(want []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(want))
		for k, i := range want {
			h, ok := got[i]
			if !ok {
				return nil, fmt.Errorf("stored hash %d not read: %w", i, broker.ErrNotFound)
			}
			out[k] = h
		}
		return out, nil
	}, nil
}

func (s *Service) build(ctx context.Context, tx store.Tx, customer broker.CustomerID, a *Archive) (err error) {
	if a.Customer, err = tx.GetCustomer(ctx, customer); err != nil {
		return err
	}
	if a.Customer.Forgotten() {
		return fmt.Errorf("customer %s was forgotten: %w", customer, broker.ErrNotFound)
	}
	if a.Vault, err = s.cfg.Vault(ctx, tx, customer); err != nil {
		return err
	}
	if a.Terms, err = tx.ListTerms(ctx, customer); err != nil {
		return err
	}
	consents, err := allConsents(ctx, tx, customer)
	if err != nil {
		return err
	}
	if a.Disclosures, err = allDisclosures(ctx, tx, customer); err != nil {
		return err
	}
	byDisclosure := map[broker.DisclosureID]int{}
	for i, d := range a.Disclosures {
		byDisclosure[d.ID] = i
	}
	firms := map[broker.FirmID]bool{}
	for _, c := range consents {
		ec := Consent{Consent: c, Ledger: []LedgerEntry{}}
		if ec.History, err = tx.ConsentHistory(ctx, c.ID); err != nil {
			return err
		}
		entries, err := ledgerEntries(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		for _, le := range entries {
			// Only entries about this customer's consent, by construction.
			i, ok := byDisclosure[le.disclosure]
			if le.Type == broker.EntryDisclosure && ok && a.Disclosures[i].Ledger == nil {
				e := le.LedgerEntry
				a.Disclosures[i].Ledger = &e
				continue
			}
			ec.Ledger = append(ec.Ledger, le.LedgerEntry)
		}
		a.Consents = append(a.Consents, ec)
		if !firms[c.FirmID] {
			firms[c.FirmID] = true
			f, err := tx.GetFirm(ctx, c.FirmID)
			if err != nil {
				return err
			}
			a.Firms = append(a.Firms, f)
			p, err := tx.Pseudonym(ctx, customer, c.FirmID)
			switch {
			case err == nil:
				a.Pseudonyms = append(a.Pseudonyms, Pseudonym{FirmID: c.FirmID, Pseudonym: p})
			case errors.Is(err, errors.ErrUnsupported):
				// Never drawn (no entry was ever logged): nothing to report.
			default:
				return err
			}
		}
	}
	if a.Decisions, err = allDecisions(ctx, tx, customer); err != nil {
		return err
	}
	a.ConsentRecords, err = ConsentRecords(a)
	if err != nil {
		return err
	}
	emptyNotNil(a)
	return nil
}

// emptyNotNil makes empty lists [] rather than null, so consumers of the
// JSON need not tell the two apart.
func emptyNotNil(a *Archive) {
	if a.Vault == nil {
		a.Vault = []broker.Record{}
	}
	if a.Terms == nil {
		a.Terms = []broker.TermsVersion{}
	}
	if a.Firms == nil {
		a.Firms = []broker.Firm{}
	}
	if a.Pseudonyms == nil {
		a.Pseudonyms = []Pseudonym{}
	}
	if a.Consents == nil {
		a.Consents = []Consent{}
	}
	if a.Decisions == nil {
		a.Decisions = []broker.DecisionRecord{}
	}
	if a.Disclosures == nil {
		a.Disclosures = []Disclosure{}
	}
}

func allConsents(ctx context.Context, tx store.Tx, customer broker.CustomerID) ([]broker.Consent, error) {
	var out []broker.Consent
	p := store.Page{Limit: store.MaxLimit}
	for {
		page, err := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: customer, Page: p})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < p.N() {
			return out, nil
		}
		p.After = string(page[len(page)-1].ID)
	}
}

func allDisclosures(ctx context.Context, tx store.Tx, customer broker.CustomerID) ([]Disclosure, error) {
	var out []Disclosure
	p := store.Page{Limit: store.MaxLimit}
	for {
		page, err := tx.ListDisclosures(ctx, customer, p)
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			out = append(out, Disclosure{Disclosure: d})
		}
		if len(page) < p.N() {
			return out, nil
		}
		p.After = string(page[len(page)-1].ID)
	}
}

// allDecisions pages newest first by decision time. Each page asks for
// records up to and including the oldest time seen so far and drops those
// already had, so records sharing a time at a page boundary are not lost.
func allDecisions(ctx context.Context, tx store.Tx, customer broker.CustomerID) ([]broker.DecisionRecord, error) {
	var out []broker.DecisionRecord
	seen := map[string]bool{}
	f := store.DecisionFilter{CustomerID: customer, Limit: store.MaxLimit}
	for {
		page, err := tx.ListDecisions(ctx, f)
		if err != nil {
			return nil, err
		}
		added := 0
		for _, r := range page {
			h, err := r.Hash()
			if err != nil {
				return nil, err
			}
			if !seen[h] {
				seen[h] = true
				out = append(out, r)
				added++
			}
		}
		if len(page) < store.MaxLimit || added == 0 {
			return out, nil
		}
		f.Before = page[len(page)-1].Decision.DecidedAt.Add(time.Microsecond)
	}
}

type indexed struct {
	LedgerEntry
	disclosure broker.DisclosureID
}

// ledgerEntries returns the sequenced ledger entries about one consent:
// its own events and the disclosures made under it.
func ledgerEntries(ctx context.Context, tx store.Tx, id broker.ConsentID) ([]indexed, error) {
	var out []indexed
	f := store.LedgerFilter{ConsentID: id, After: -1, Limit: store.MaxLimit}
	for {
		page, err := tx.SearchLedger(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, ie := range page {
			if ie.Entry.Consent != id {
				continue // the index said so; the entry itself must agree
			}
			h, err := hex.DecodeString(ie.LeafHash)
			if err != nil {
				return nil, fmt.Errorf("ledger entry %d: leaf hash: %w", ie.Index, err)
			}
			out = append(out, indexed{LedgerEntry: LedgerEntry{
				Receipt: broker.Receipt{Index: ie.Index, LeafHash: base64.StdEncoding.EncodeToString(h)},
				Type:    ie.Entry.Type, Entry: slices.Clone(ie.Raw),
			}, disclosure: ie.Entry.Disclosure})
		}
		if len(page) < store.MaxLimit {
			return out, nil
		}
		f.After = page[len(page)-1].Index
	}
}
