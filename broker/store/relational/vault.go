package relational

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const putRecordSQL = `INSERT INTO records (customer_id, category, sealed, source, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (customer_id, category) DO UPDATE SET sealed = excluded.sealed, source = excluded.source, updated_at = excluded.updated_at`

func (tx *Tx) PutRecord(ctx context.Context, r broker.SealedRecord) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("put record: %w", err)
	}
	if _, err := tx.Q.Exec(ctx, putRecordSQL, r.CustomerID, r.Category, r.Sealed, r.Source, tx.t(r.UpdatedAt)); err != nil {
		return fmt.Errorf("put %s record of %s: %w", r.Category, r.CustomerID, tx.err(err))
	}
	return nil
}

func (tx *Tx) ListRecords(ctx context.Context, customer broker.CustomerID) ([]broker.SealedRecord, error) {
	var out []broker.SealedRecord
	err := queryAll(ctx, tx, `SELECT `+recordColumns+` FROM records WHERE customer_id = $1 ORDER BY category`,
		[]any{customer}, func(s *scanner) (*scanner, func()) {
			var r broker.SealedRecord
			return scanRecord(s, &r), func() { out = append(out, r) }
		})
	if err != nil {
		return nil, fmt.Errorf("list records of %s: %w", customer, err)
	}
	return out, nil
}

const recordColumns = `customer_id, category, sealed, source, updated_at`

func scanRecord(s *scanner, r *broker.SealedRecord) *scanner {
	return s.str((*string)(&r.CustomerID)).str(&r.Category).blob(&r.Sealed).str(&r.Source).time(&r.UpdatedAt)
}

const customerKeyColumns = `customer_id, wrapped, key_version, created_at`

func scanCustomerKey(s *scanner, k *broker.CustomerKey) *scanner {
	return s.str((*string)(&k.CustomerID)).blob(&k.Wrapped).num(&k.KeyVersion).time(&k.CreatedAt)
}

func (tx *Tx) EnsureCustomerKey(ctx context.Context, k broker.CustomerKey) (broker.CustomerKey, error) {
	if err := tx.mustWrite("ensure customer key"); err != nil {
		return broker.CustomerKey{}, err
	}
	if len(k.Wrapped) == 0 || k.KeyVersion <= 0 {
		return broker.CustomerKey{}, fmt.Errorf("ensure key of %s: %w: wrapped key and positive version required", k.CustomerID, broker.ErrInvalid)
	}
	_, err := tx.Q.Exec(ctx, `INSERT INTO customer_keys (`+customerKeyColumns+`) VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO NOTHING`,
		k.CustomerID, k.Wrapped, k.KeyVersion, tx.t(k.CreatedAt))
	if err != nil {
		return broker.CustomerKey{}, fmt.Errorf("ensure key of %s: %w", k.CustomerID, tx.err(err))
	}
	// Read back: a concurrent transaction may have won the insert.
	return tx.GetCustomerKey(ctx, k.CustomerID)
}

func (tx *Tx) GetCustomerKey(ctx context.Context, customer broker.CustomerID) (broker.CustomerKey, error) {
	var k broker.CustomerKey
	err := scanCustomerKey(newScanner(tx.D), &k).from(tx.Q.QueryRow(ctx, `SELECT `+customerKeyColumns+` FROM customer_keys WHERE customer_id = $1`, customer))
	if err != nil {
		return k, fmt.Errorf("key of %s: %w", customer, err)
	}
	return k, nil
}

func (tx *Tx) ListCustomerKeys(ctx context.Context, p store.Page) ([]broker.CustomerKey, error) {
	var out []broker.CustomerKey
	err := queryAll(ctx, tx, `SELECT `+customerKeyColumns+` FROM customer_keys WHERE customer_id > $1 ORDER BY customer_id LIMIT $2`,
		[]any{p.After, p.N()}, func(s *scanner) (*scanner, func()) {
			var k broker.CustomerKey
			return scanCustomerKey(s, &k), func() { out = append(out, k) }
		})
	if err != nil {
		return nil, fmt.Errorf("list customer keys: %w", err)
	}
	return out, nil
}

func (tx *Tx) RewrapCustomerKey(ctx context.Context, k broker.CustomerKey, from int) error {
	if len(k.Wrapped) == 0 || k.KeyVersion <= 0 {
		return fmt.Errorf("rewrap key of %s: %w: wrapped key and positive version required", k.CustomerID, broker.ErrInvalid)
	}
	n, err := tx.Q.Exec(ctx, `UPDATE customer_keys SET wrapped = $1, key_version = $2 WHERE customer_id = $3 AND key_version = $4`,
		k.Wrapped, k.KeyVersion, k.CustomerID, from)
	if err != nil {
		return fmt.Errorf("rewrap key of %s: %w", k.CustomerID, tx.err(err))
	}
	if n == 0 {
		return fmt.Errorf("rewrap key of %s: %w: not at version %d", k.CustomerID, broker.ErrConflict, from)
	}
	return nil
}

// forgetSQL lists, in order, what ForgetCustomer deletes.
var forgetSQL = []string{
	`DELETE FROM records WHERE customer_id = $1`,
	`DELETE FROM customer_keys WHERE customer_id = $1`,
	`DELETE FROM terms_versions WHERE customer_id = $1`,
	`DELETE FROM pseudonyms WHERE customer_id = $1`,
	`UPDATE disclosures SET salt = NULL WHERE customer_id = $1`,
}

func (tx *Tx) ForgetCustomer(ctx context.Context, id broker.CustomerID, tombstone string) error {
	if err := tx.mustWrite("forget customer"); err != nil {
		return err
	}
	for _, q := range forgetSQL {
		if _, err := tx.Q.Exec(ctx, q, id); err != nil {
			return fmt.Errorf("forget %s: %w", id, tx.err(err))
		}
	}
	err := tx.execOne(ctx, `UPDATE customers SET handle = $1, display_name = '', email = '', password_hash = '', minor = $2 WHERE id = $3`,
		tombstone, false, id)
	if err != nil {
		return fmt.Errorf("forget %s: %w", id, err)
	}
	return nil
}

const termsColumns = `customer_id, version, raw, hash, created_at`

func scanTerms(s *scanner, t *broker.TermsVersion) *scanner {
	var raw string
	s.str((*string)(&t.CustomerID)).num(&t.Version).str(&raw).str(&t.Hash).time(&t.CreatedAt)
	s.after = append(s.after, func() error { t.Document = []byte(raw); return nil })
	return s
}

func (tx *Tx) AddTerms(ctx context.Context, customer broker.CustomerID, doc []byte, at time.Time) (broker.TermsVersion, error) {
	if err := tx.mustWrite("add terms"); err != nil {
		return broker.TermsVersion{}, err
	}
	// Lock the customer row so concurrent saves get consecutive versions.
	var id string
	if err := newScanner(tx.D).str(&id).from(tx.Q.QueryRow(ctx, `SELECT id FROM customers WHERE id = $1`+tx.D.LockSuffix, customer)); err != nil {
		return broker.TermsVersion{}, fmt.Errorf("add terms for %s: %w", customer, err)
	}
	var next int
	if err := newScanner(tx.D).num(&next).from(tx.Q.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM terms_versions WHERE customer_id = $1`, customer)); err != nil {
		return broker.TermsVersion{}, fmt.Errorf("add terms for %s: %w", customer, err)
	}
	tv := broker.TermsVersion{CustomerID: customer, Version: next, Document: doc, Hash: broker.HashDocument(doc), CreatedAt: T(at)}
	_, err := tx.Q.Exec(ctx, `INSERT INTO terms_versions (customer_id, version, document, raw, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		customer, next, string(doc), string(doc), tv.Hash, tx.t(at))
	if err != nil {
		return broker.TermsVersion{}, fmt.Errorf("add terms version %d for %s: %w", next, customer, tx.err(err))
	}
	return tv, nil
}

func (tx *Tx) LatestTerms(ctx context.Context, customer broker.CustomerID) (broker.TermsVersion, error) {
	var t broker.TermsVersion
	err := scanTerms(newScanner(tx.D), &t).from(tx.Q.QueryRow(ctx,
		`SELECT `+termsColumns+` FROM terms_versions WHERE customer_id = $1 ORDER BY version DESC LIMIT 1`, customer))
	if err != nil {
		return t, fmt.Errorf("latest terms of %s: %w", customer, err)
	}
	return t, nil
}

func (tx *Tx) ListTerms(ctx context.Context, customer broker.CustomerID) ([]broker.TermsVersion, error) {
	var out []broker.TermsVersion
	err := queryAll(ctx, tx, `SELECT `+termsColumns+` FROM terms_versions WHERE customer_id = $1 ORDER BY version`, []any{customer},
		func(s *scanner) (*scanner, func()) {
			var t broker.TermsVersion
			return scanTerms(s, &t), func() { out = append(out, t) }
		})
	if err != nil {
		return nil, fmt.Errorf("list terms of %s: %w", customer, err)
	}
	return out, nil
}

func (tx *Tx) InsertDisclosure(ctx context.Context, d broker.Disclosure) error {
	args, err := disclosureArgs(tx, d)
	if err != nil {
		return err
	}
	return tx.deferExec(ctx, Stmt{insertDisclosureSQL + disclosureRows([]int{1}), args}, "insert disclosure "+string(d.ID), nil)
}

// disclosureArgs are the column values that store d.
func disclosureArgs(tx *Tx, d broker.Disclosure) ([]any, error) {
	cats, err := jsonText(d.Categories)
	if err != nil {
		return nil, err
	}
	fields := d.Fields
	if fields == nil {
		fields = map[string][]string{}
	}
	fj, err := jsonText(fields)
	if err != nil {
		return nil, err
	}
	return []any{d.ID, d.ConsentID, d.FirmID, d.CustomerID, cats, fj, tx.t(d.At), d.ReceiptID, d.Purpose, d.Commitment, d.Salt}, nil
}

func (tx *Tx) ListDisclosures(ctx context.Context, customer broker.CustomerID, p store.Page) ([]broker.Disclosure, error) {
	var out []broker.Disclosure
	err := queryAll(ctx, tx, `SELECT id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id, purpose, commitment, salt
FROM disclosures WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3`, []any{customer, p.After, p.N()},
		func(s *scanner) (*scanner, func()) {
			var d broker.Disclosure
			s.str((*string)(&d.ID)).str((*string)(&d.ConsentID)).str((*string)(&d.FirmID)).str((*string)(&d.CustomerID)).
				json(&d.Categories).json(&d.Fields).time(&d.At).str(&d.ReceiptID).str(&d.Purpose).str(&d.Commitment).blob(&d.Salt)
			return s, func() {
				if len(d.Fields) == 0 {
					d.Fields = nil
				}
				if len(d.Salt) == 0 {
					d.Salt = nil
				}
				out = append(out, d)
			}
		})
	if err != nil {
		return nil, fmt.Errorf("list disclosures of %s: %w", customer, err)
	}
	return out, nil
}

func (tx *Tx) AttestDeletion(ctx context.Context, a broker.DeletionAttestation) error {
	cats, err := jsonText(a.Categories)
	if err != nil {
		return err
	}
	_, err = tx.Q.Exec(ctx, `INSERT INTO deletion_attestations (consent_id, firm_id, categories, at) VALUES ($1, $2, $3, $4)`,
		a.ConsentID, a.FirmID, cats, tx.t(a.At))
	if err != nil {
		return fmt.Errorf("attest deletion for %s: %w", a.ConsentID, tx.err(err))
	}
	return nil
}

func (tx *Tx) GetDeletionAttestation(ctx context.Context, consent broker.ConsentID) (broker.DeletionAttestation, error) {
	var a broker.DeletionAttestation
	err := newScanner(tx.D).str((*string)(&a.ConsentID)).str((*string)(&a.FirmID)).json(&a.Categories).time(&a.At).
		from(tx.Q.QueryRow(ctx, `SELECT consent_id, firm_id, categories, at FROM deletion_attestations WHERE consent_id = $1`, consent))
	if err != nil {
		return broker.DeletionAttestation{}, fmt.Errorf("deletion attestation of %s: %w", consent, err)
	}
	return a, nil
}

const insertPseudonymSQL = `INSERT INTO pseudonyms (customer_id, firm_id, pseudonym) VALUES ($1, $2, $3)
ON CONFLICT (customer_id, firm_id) DO NOTHING`

func (tx *Tx) Pseudonym(ctx context.Context, customer broker.CustomerID, firm broker.FirmID) (broker.Pseudonym, error) {
	var p string
	err := newScanner(tx.D).str(&p).from(tx.Q.QueryRow(ctx, `SELECT pseudonym FROM pseudonyms WHERE customer_id = $1 AND firm_id = $2`, customer, firm))
	if err == nil {
		return broker.Pseudonym(p), nil
	}
	if err := tx.mustWrite("create pseudonym"); err != nil {
		return "", err
	}
	if _, err := tx.Q.Exec(ctx, insertPseudonymSQL, customer, firm, string(broker.NewPseudonym())); err != nil {
		return "", fmt.Errorf("pseudonym of %s for %s: %w", customer, firm, tx.err(err))
	}
	// Read back: a concurrent transaction may have won the insert.
	if err := newScanner(tx.D).str(&p).from(tx.Q.QueryRow(ctx, `SELECT pseudonym FROM pseudonyms WHERE customer_id = $1 AND firm_id = $2`, customer, firm)); err != nil {
		return "", fmt.Errorf("pseudonym of %s for %s: %w", customer, firm, err)
	}
	return broker.Pseudonym(p), nil
}

func (tx *Tx) LookupPseudonym(ctx context.Context, customer broker.CustomerID, firm broker.FirmID) (broker.Pseudonym, error) {
	var p string
	err := newScanner(tx.D).str(&p).from(tx.Q.QueryRow(ctx, `SELECT pseudonym FROM pseudonyms WHERE customer_id = $1 AND firm_id = $2`, customer, firm))
	if err != nil {
		return "", fmt.Errorf("pseudonym of %s for %s: %w", customer, firm, err)
	}
	return broker.Pseudonym(p), nil
}

func (tx *Tx) ResolvePseudonym(ctx context.Context, firm broker.FirmID, p broker.Pseudonym) (broker.CustomerID, error) {
	var c string
	err := newScanner(tx.D).str(&c).from(tx.Q.QueryRow(ctx, `SELECT customer_id FROM pseudonyms WHERE firm_id = $1 AND pseudonym = $2`, firm, string(p)))
	if err != nil {
		return "", fmt.Errorf("resolve pseudonym for %s: %w", firm, err)
	}
	return broker.CustomerID(c), nil
}

func (tx *Tx) ListCategories(ctx context.Context) ([]broker.Category, error) {
	var out []broker.Category
	err := queryAll(ctx, tx, `SELECT name, label, COALESCE(parent, ''), special FROM categories ORDER BY name`, nil,
		func(s *scanner) (*scanner, func()) {
			var c broker.Category
			return s.str(&c.Name).str(&c.Label).str(&c.Parent).flag(&c.Special), func() { out = append(out, c) }
		})
	if err != nil {
		return nil, fmt.Errorf("list categories: %w", err)
	}
	return out, nil
}

func (tx *Tx) ListPurposes(ctx context.Context) ([]broker.Purpose, error) {
	var out []broker.Purpose
	err := queryAll(ctx, tx, `SELECT name, label, COALESCE(parent, '') FROM purposes ORDER BY name`, nil,
		func(s *scanner) (*scanner, func()) {
			var p broker.Purpose
			return s.str(&p.Name).str(&p.Label).str(&p.Parent), func() { out = append(out, p) }
		})
	if err != nil {
		return nil, fmt.Errorf("list purposes: %w", err)
	}
	return out, nil
}
