package relational

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const putRecordSQL = `INSERT INTO records (customer_id, category, value, source, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (customer_id, category) DO UPDATE SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at`

func (tx *Tx) PutRecord(ctx context.Context, r broker.Record) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("put record: %w", err)
	}
	if _, err := tx.Q.Exec(ctx, putRecordSQL, r.CustomerID, r.Category, string(r.Value), r.Source, tx.t(r.UpdatedAt)); err != nil {
		return fmt.Errorf("put %s record of %s: %w", r.Category, r.CustomerID, tx.err(err))
	}
	return nil
}

func (tx *Tx) ListRecords(ctx context.Context, customer broker.CustomerID) ([]broker.Record, error) {
	var out []broker.Record
	err := queryAll(ctx, tx, `SELECT customer_id, category, value, source, updated_at FROM records WHERE customer_id = $1 ORDER BY category`,
		[]any{customer}, func(s *scanner) (*scanner, func()) {
			var r broker.Record
			var v []byte
			s.str((*string)(&r.CustomerID)).str(&r.Category).bytes(&v).str(&r.Source).time(&r.UpdatedAt)
			return s, func() { r.Value = v; out = append(out, r) }
		})
	if err != nil {
		return nil, fmt.Errorf("list records of %s: %w", customer, err)
	}
	return out, nil
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
	cats, err := jsonText(d.Categories)
	if err != nil {
		return err
	}
	fields := d.Fields
	if fields == nil {
		fields = map[string][]string{}
	}
	fj, err := jsonText(fields)
	if err != nil {
		return err
	}
	_, err = tx.Q.Exec(ctx, `INSERT INTO disclosures (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, d.ID, d.ConsentID, d.FirmID, d.CustomerID, cats, fj, tx.t(d.At), d.ReceiptID)
	if err != nil {
		return fmt.Errorf("insert disclosure %s: %w", d.ID, tx.err(err))
	}
	return nil
}

func (tx *Tx) ListDisclosures(ctx context.Context, customer broker.CustomerID, p store.Page) ([]broker.Disclosure, error) {
	var out []broker.Disclosure
	err := queryAll(ctx, tx, `SELECT id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id
FROM disclosures WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3`, []any{customer, p.After, p.N()},
		func(s *scanner) (*scanner, func()) {
			var d broker.Disclosure
			s.str((*string)(&d.ID)).str((*string)(&d.ConsentID)).str((*string)(&d.FirmID)).str((*string)(&d.CustomerID)).
				json(&d.Categories).json(&d.Fields).time(&d.At).str(&d.ReceiptID)
			return s, func() {
				if len(d.Fields) == 0 {
					d.Fields = nil
				}
				out = append(out, d)
			}
		})
	if err != nil {
		return nil, fmt.Errorf("list disclosures of %s: %w", customer, err)
	}
	return out, nil
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
