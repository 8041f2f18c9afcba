package relational

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const insertDecisionSQL = `INSERT INTO decision_records (hash, kind, customer_id, firm_id, consent_id, effect, raw, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (hash) DO NOTHING`

func (tx *Tx) InsertDecision(ctx context.Context, r broker.DecisionRecord) (string, error) {
	hash, st, err := tx.decisionStmt(r)
	if err != nil {
		return "", err
	}
	if err := tx.deferExec(ctx, st, "insert decision "+hash, nil); err != nil {
		return "", err
	}
	return hash, nil
}

// decisionStmt is the statement that stores r, and r's hash.
func (tx *Tx) decisionStmt(r broker.DecisionRecord) (string, Stmt, error) {
	raw, err := r.Canonical()
	if err != nil {
		return "", Stmt{}, err
	}
	hash := broker.HashDocument(raw)
	return hash, Stmt{insertDecisionSQL, []any{hash, string(r.Kind), r.CustomerID, r.FirmID, r.ConsentID,
		string(r.Decision.Effect), string(raw), tx.t(r.Decision.DecidedAt)}}, nil
}

// RecordDisclosure stores the allow decision a disclosure was made under,
// the disclosure and its ledger entry; where the backend pipelines, they
// go to the database with the commit.
func (tx *Tx) RecordDisclosure(ctx context.Context, r broker.DecisionRecord, d broker.Disclosure, entry []byte) (string, error) {
	if err := tx.mustWrite("record disclosure"); err != nil {
		return "", err
	}
	hash, dec, err := tx.decisionStmt(r)
	if err != nil {
		return "", err
	}
	dis, err := disclosureStmt(tx, d)
	if err != nil {
		return "", err
	}
	if _, err := broker.ParseEntry(entry); err != nil {
		return "", fmt.Errorf("record disclosure %s: %w", d.ID, err)
	}
	stage, err := stageStmt(entry)
	if err != nil {
		return "", err
	}
	what := "record disclosure " + string(d.ID)
	for _, st := range []Stmt{dec, dis, stage} {
		if err := tx.deferExec(ctx, st, what, nil); err != nil {
			return "", err
		}
	}
	return hash, nil
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
