package relational

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// indexEntries writes the audit index rows for entries sequenced at
// indices start, start+1, …, with a few multi-row INSERTs per batch since
// it runs inside every sequencing transaction. An entry that does not
// parse (only possible if staged around StageLedgerEntry) is left out of
// the index; the verifier will name it.
func (tx *Tx) indexEntries(ctx context.Context, start int64, entries [][]byte) error {
	var rows, cats []any
	purposes := map[broker.ConsentID]string{} // the batch's own consents
	for i, b := range entries {
		e, err := broker.ParseEntry(b)
		if err != nil {
			continue
		}
		idx := start + int64(i)
		purpose := e.Purpose
		if e.Consent != "" {
			if purpose == "" {
				// Revocations and expiries carry no purpose; file them
				// under the consent's, so reports count them per purpose.
				if purpose, err = tx.consentPurpose(ctx, e.Consent, purposes); err != nil {
					return err
				}
			} else if _, ok := purposes[e.Consent]; !ok {
				purposes[e.Consent] = purpose
			}
		}
		rows = append(rows, idx, string(e.Type), tx.t(e.Time), e.Firm, string(e.Customer), purpose, e.Consent)
		for _, c := range e.Categories {
			cats = append(cats, idx, c)
		}
	}
	if err := tx.insertRows(ctx, `INSERT INTO ledger_index (idx, type, at, firm_id, customer, purpose, consent_id) VALUES `, 7, rows); err != nil {
		return fmt.Errorf("index entries from %d: %w", start, err)
	}
	if err := tx.insertRows(ctx, `INSERT INTO ledger_index_categories (idx, category) VALUES `, 2, cats); err != nil {
		return fmt.Errorf("index entry categories from %d: %w", start, err)
	}
	return nil
}

// consentPurpose is the purpose of the consent's first indexed entry that
// has one, looking first at the batch being indexed.
func (tx *Tx) consentPurpose(ctx context.Context, id broker.ConsentID, batch map[broker.ConsentID]string) (string, error) {
	if p, ok := batch[id]; ok {
		return p, nil
	}
	var purpose string
	err := newScanner(tx.D).str(&purpose).from(tx.Q.QueryRow(ctx,
		`SELECT purpose FROM ledger_index WHERE consent_id = $1 AND purpose <> '' ORDER BY idx LIMIT 1`, id))
	if errors.Is(err, broker.ErrNotFound) {
		return "", nil
	}
	return purpose, err
}

func (tx *Tx) SearchLedger(ctx context.Context, f store.LedgerFilter) ([]store.IndexedEntry, error) {
	q := `SELECT i.idx, l.entry FROM ledger_index i JOIN ledger_leaves l ON l.idx = i.idx WHERE i.idx > $1`
	args := []any{f.After}
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if len(f.Types) > 0 {
		var ph []string
		for _, t := range f.Types {
			args = append(args, string(t))
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		q += " AND i.type IN (" + strings.Join(ph, ", ") + ")"
	}
	if f.FirmID != "" {
		add("i.firm_id = $%d", f.FirmID)
	}
	if f.Purpose != "" {
		add("i.purpose = $%d", f.Purpose)
	}
	if f.ConsentID != "" {
		add("i.consent_id = $%d", f.ConsentID)
	}
	if f.Category != "" {
		add("EXISTS (SELECT 1 FROM ledger_index_categories c WHERE c.idx = i.idx AND c.category = $%d)", f.Category)
	}
	if !f.From.IsZero() {
		add("i.at >= $%d", tx.t(f.From))
	}
	if !f.To.IsZero() {
		add("i.at < $%d", tx.t(f.To))
	}
	args = append(args, store.Page{Limit: f.Limit}.N())
	q += fmt.Sprintf(" ORDER BY i.idx LIMIT $%d", len(args))
	var out []store.IndexedEntry
	var perr error
	err := queryAll(ctx, tx, q, args, func(s *scanner) (*scanner, func()) {
		var ie store.IndexedEntry
		var b []byte
		return s.num64(&ie.Index).blob(&b), func() {
			e, err := broker.ParseEntry(b)
			if err != nil && perr == nil {
				perr = fmt.Errorf("entry %d: %w", ie.Index, err)
			}
			h := tlog.RecordHash(b)
			ie.LeafHash, ie.Raw, ie.Entry = hex.EncodeToString(h[:]), b, e
			out = append(out, ie)
		}
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("search ledger: %w", err)
	}
	return out, nil
}

func (tx *Tx) LedgerReport(ctx context.Context, from, to time.Time) (store.LedgerReport, error) {
	r := store.LedgerReport{From: T(from), To: T(to), Consents: []store.ConsentCounts{}, Disclosures: []store.DisclosureCount{},
		AfterRevocation: []store.LateDisclosure{}, RefusalsAfterEnd: []store.RefusalAfterEnd{}}
	window := ` AND at >= $1 AND at < $2`
	args := []any{tx.t(from), tx.t(to)}
	pos := map[[2]string]int{}
	err := queryAll(ctx, tx, `SELECT firm_id, purpose, type, COUNT(*) FROM ledger_index
WHERE type IN ('consent.granted', 'consent.denied', 'consent.revoked', 'consent.expired')`+window+`
GROUP BY firm_id, purpose, type ORDER BY firm_id, purpose, type`, args, func(s *scanner) (*scanner, func()) {
		var firm, purpose, typ string
		var n int
		return s.str(&firm).str(&purpose).str(&typ).num(&n), func() {
			k := [2]string{firm, purpose}
			i, ok := pos[k]
			if !ok {
				i = len(r.Consents)
				pos[k] = i
				r.Consents = append(r.Consents, store.ConsentCounts{FirmID: broker.FirmID(firm), Purpose: purpose})
			}
			c := &r.Consents[i]
			switch broker.EntryType(typ) {
			case broker.EntryConsentGranted:
				c.Granted = n
			case broker.EntryConsentDenied:
				c.Denied = n
			case broker.EntryConsentRevoked:
				c.Revoked = n
			case broker.EntryConsentExpired:
				c.Expired = n
			}
		}
	})
	if err != nil {
		return r, fmt.Errorf("consent counts: %w", err)
	}
	err = queryAll(ctx, tx, `SELECT firm_id, COUNT(*) FROM ledger_index WHERE type = 'disclosure'`+window+` GROUP BY firm_id ORDER BY firm_id`, args,
		func(s *scanner) (*scanner, func()) {
			var d store.DisclosureCount
			return s.str((*string)(&d.FirmID)).num(&d.Disclosures), func() { r.Disclosures = append(r.Disclosures, d) }
		})
	if err != nil {
		return r, fmt.Errorf("disclosure counts: %w", err)
	}
	// Disclosures recorded after their consent was revoked or expired.
	// Invariant 1 says there are none; the report proves it.
	err = queryAll(ctx, tx, `SELECT d.idx, d.consent_id, d.firm_id FROM ledger_index d
JOIN ledger_index e ON e.consent_id = d.consent_id AND e.type IN ('consent.revoked', 'consent.expired') AND e.idx < d.idx
WHERE d.type = 'disclosure' AND d.at >= $1 AND d.at < $2 ORDER BY d.idx`, args, func(s *scanner) (*scanner, func()) {
		var v store.LateDisclosure
		return s.num64(&v.Index).str((*string)(&v.ConsentID)).str((*string)(&v.FirmID)), func() { r.AfterRevocation = append(r.AfterRevocation, v) }
	})
	if err != nil {
		return r, fmt.Errorf("disclosures after revocation: %w", err)
	}
	// For each consent ended in the window: the last access refused under
	// it (from the access decision records) and how long after the end.
	err = queryAll(ctx, tx, `SELECT e.consent_id, e.firm_id, e.type, e.at, MAX(d.decided_at) FROM ledger_index e
JOIN decision_records d ON d.consent_id = e.consent_id AND d.kind = 'access' AND d.effect = 'deny' AND d.decided_at >= e.at
WHERE e.type IN ('consent.revoked', 'consent.expired') AND e.at >= $1 AND e.at < $2
GROUP BY e.consent_id, e.firm_id, e.type, e.at ORDER BY e.at`, args, func(s *scanner) (*scanner, func()) {
		var v store.RefusalAfterEnd
		var typ string
		s.str((*string)(&v.ConsentID)).str((*string)(&v.FirmID)).str(&typ).time(&v.EndedAt).time(&v.LastRefusedAt)
		return s, func() {
			v.Ended = broker.EntryType(typ)
			v.Seconds = v.LastRefusedAt.Sub(v.EndedAt).Seconds()
			r.RefusalsAfterEnd = append(r.RefusalsAfterEnd, v)
		}
	})
	if err != nil {
		return r, fmt.Errorf("refusals after end: %w", err)
	}
	return r, nil
}
