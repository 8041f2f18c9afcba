package relational

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// The insert statements of a decision record, a disclosure and a staged
// ledger entry, to which placeholders (disclosureRows for disclosures)
// adds the rows.
const (
	insertDecisionSQL   = `INSERT INTO decision_records (hash, kind, customer_id, firm_id, consent_id, effect, raw, decided_at) VALUES `
	onDecisionConflict  = ` ON CONFLICT (hash) DO NOTHING`
	decisionColumns     = 8
	insertDisclosureSQL = `INSERT INTO disclosures (id, consent_id, firm_id, customer_id, categories, fields, at, receipt_id, purpose, commitment, salt, seq) VALUES `
	disclosureColumns   = 11
	insertStagedSQL     = `INSERT INTO ledger_staged (entry) VALUES `
)

func (tx *Tx) InsertDecision(ctx context.Context, r broker.DecisionRecord) (string, error) {
	sealed, err := broker.SealDecision(r)
	if err != nil {
		return "", err
	}
	hashes, err := tx.RecordDisclosures(ctx, []store.DisclosureWrite{{Decision: sealed}})
	if err != nil {
		return "", err
	}
	return hashes[0], nil
}

// decisionArgs are the column values that store s, and its hash.
func (tx *Tx) decisionArgs(s broker.SealedDecision) (string, []any, error) {
	raw, r := s.Canonical(), s.Record()
	if len(raw) == 0 {
		return "", nil, fmt.Errorf("%w: a decision record that was not sealed", broker.ErrInvalid)
	}
	return s.Hash(), []any{s.Hash(), string(r.Kind), r.CustomerID, r.FirmID, r.ConsentID,
		string(r.Decision.Effect), string(raw), tx.t(r.Decision.DecidedAt)}, nil
}

// RecordDisclosures writes every decision record in one statement, every
// disclosure in another and every ledger entry in a third; where the
// backend pipelines, they go to the database with the commit.
func (tx *Tx) RecordDisclosures(ctx context.Context, ws []store.DisclosureWrite) ([]string, error) {
	if err := tx.mustWrite("record disclosures"); err != nil {
		return nil, err
	}
	hashes := make([]string, len(ws))
	var decisions, disclosures, entries []any
	// nth numbers each disclosure among its consent's in ws.
	seen, nth := make(map[broker.ConsentID]int, len(ws)), []int(nil)
	for i, w := range ws {
		hash, args, err := tx.decisionArgs(w.Decision)
		if err != nil {
			return nil, err
		}
		hashes[i], decisions = hash, append(decisions, args...)
		if w.Disclosure == nil {
			if w.Entry != nil {
				return nil, fmt.Errorf("record disclosures: %w: a ledger entry without its disclosure", broker.ErrInvalid)
			}
			continue
		}
		seen[w.Disclosure.ConsentID]++
		nth = append(nth, seen[w.Disclosure.ConsentID])
		args, err = disclosureArgs(tx, *w.Disclosure)
		if err != nil {
			return nil, err
		}
		if _, err := broker.ParseEntry(w.Entry); err != nil {
			return nil, fmt.Errorf("record disclosure %s: %w", w.Disclosure.ID, err)
		}
		if err := checkEntrySize(w.Entry); err != nil {
			return nil, err
		}
		disclosures, entries = append(disclosures, args...), append(entries, w.Entry)
	}
	what := fmt.Sprintf("record %d decisions and %d disclosures", len(ws), len(entries))
	for _, st := range []Stmt{
		{insertDecisionSQL + placeholders(1, len(ws), decisionColumns) + onDecisionConflict, decisions},
		{insertDisclosureSQL + disclosureRows(nth), disclosures},
		{insertStagedSQL + placeholders(1, len(entries), 1), entries},
	} {
		if len(st.Args) == 0 {
			continue
		}
		if err := tx.deferExec(ctx, st, what, nil); err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

// disclosureRows is the VALUES of disclosures (disclosureColumns
// arguments each): the row of a consent's nth[r]-th disclosure in the
// statement is numbered nth[r] after the consent's last disclosure
// stored, the one latest in (at, seq) order. A consent's disclosures are
// recorded in time order under its row lock (see
// store.AccessContext.LastDisclosure), so seq counts them in order and a
// window's count is a difference of two seqs (countSinceStmt).
func disclosureRows(nth []int) string {
	var b strings.Builder
	for r, n := range nth {
		if r > 0 {
			b.WriteString(", ")
		}
		first := 1 + r*disclosureColumns
		b.WriteByte('(')
		for c := range disclosureColumns {
			fmt.Fprintf(&b, "$%d, ", first+c)
		}
		fmt.Fprintf(&b, "COALESCE((SELECT d.seq FROM disclosures d WHERE d.consent_id = $%d ORDER BY d.at DESC, d.seq DESC LIMIT 1), 0) + %d)", first+1, n)
	}
	return b.String()
}

func decodeDecision(raw string) (broker.DecisionRecord, error) {
	var r broker.DecisionRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return r, fmt.Errorf("decode stored decision: %w", err)
	}
	return r, nil
}

func (tx *Tx) GetDecision(ctx context.Context, hash string) (broker.DecisionRecord, error) {
	var raw string
	if err := newScanner(tx.D).str(&raw).from(tx.Q.QueryRow(ctx, `SELECT raw FROM decision_records WHERE hash = $1`, hash)); err != nil {
		return broker.DecisionRecord{}, fmt.Errorf("get decision %s: %w", hash, err)
	}
	return decodeDecision(raw)
}

func (tx *Tx) ListDecisions(ctx context.Context, f store.DecisionFilter) ([]broker.DecisionRecord, error) {
	q := `SELECT raw FROM decision_records WHERE 1 = 1`
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND %s $%d", cond, len(args))
	}
	if f.CustomerID == "" && f.FirmID == "" && f.ConsentID == "" {
		return nil, fmt.Errorf("list decisions: %w: name a customer, firm or consent", broker.ErrInvalid)
	}
	if f.CustomerID != "" {
		add("customer_id =", f.CustomerID)
	}
	if f.FirmID != "" {
		add("firm_id =", f.FirmID)
	}
	if f.ConsentID != "" {
		add("consent_id =", f.ConsentID)
	}
	if !f.Before.IsZero() {
		add("decided_at <", tx.t(f.Before))
	}
	args = append(args, store.Page{Limit: f.Limit}.N())
	q += fmt.Sprintf(" ORDER BY decided_at DESC, hash LIMIT $%d", len(args))
	var out []broker.DecisionRecord
	var derr error
	err := queryAll(ctx, tx, q, args, func(s *scanner) (*scanner, func()) {
		var raw string
		return s.str(&raw), func() {
			r, err := decodeDecision(raw)
			if err != nil && derr == nil {
				derr = err
			}
			out = append(out, r)
		}
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	return out, nil
}
