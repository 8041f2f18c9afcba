package relational

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

const consentColumns = `id, customer_id, firm_id, client_id, state, requested, granted, requested_at, decided_at, expires_at, ended_at, version`

func scanConsent(s *scanner, c *broker.Consent) *scanner {
	return s.str((*string)(&c.ID)).str((*string)(&c.CustomerID)).str((*string)(&c.FirmID)).str((*string)(&c.ClientID)).
		str((*string)(&c.State)).json(&c.Requested).json(&c.Granted).time(&c.RequestedAt).time(&c.DecidedAt).
		time(&c.ExpiresAt).time(&c.EndedAt).num(&c.Version)
}

const insertConsentSQL = `INSERT INTO consents (` + consentColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

func (tx *Tx) CreateConsent(ctx context.Context, c broker.Consent, ev broker.ConsentEvent) error {
	if c.Version != 1 || c.State != broker.ConsentRequested || ev.Seq != 1 || ev.ConsentID != c.ID {
		return fmt.Errorf("create consent %s: %w: a new consent starts requested at version 1 with event 1", c.ID, broker.ErrInvalid)
	}
	req, err := jsonText(c.Requested)
	if err != nil {
		return err
	}
	granted, err := jsonText(c.Granted)
	if err != nil {
		return err
	}
	_, err = tx.Q.Exec(ctx, insertConsentSQL, c.ID, c.CustomerID, c.FirmID, c.ClientID, string(c.State), req, granted,
		tx.t(c.RequestedAt), tx.nt(c.DecidedAt), tx.nt(c.ExpiresAt), tx.nt(c.EndedAt), c.Version)
	if err != nil {
		return fmt.Errorf("create consent %s: %w", c.ID, tx.err(err))
	}
	return tx.appendEvent(ctx, ev)
}

func (tx *Tx) GetConsent(ctx context.Context, id broker.ConsentID) (broker.Consent, error) {
	lock := ""
	if tx.Writable {
		lock = tx.D.LockSuffix
	}
	var c broker.Consent
	err := scanConsent(newScanner(tx.D), &c).from(tx.Q.QueryRow(ctx, `SELECT `+consentColumns+` FROM consents WHERE id = $1`+lock, id))
	if err != nil {
		return c, fmt.Errorf("get consent %s: %w", id, err)
	}
	return c, nil
}

const updateConsentSQL = `UPDATE consents SET state = $1, granted = $2, decided_at = $3, expires_at = $4, ended_at = $5, version = $6
WHERE id = $7 AND version = $8`

func (tx *Tx) UpdateConsent(ctx context.Context, c broker.Consent, ev broker.ConsentEvent) error {
	if ev.ConsentID != c.ID || ev.Seq != c.Version || ev.To != c.State {
		return fmt.Errorf("update consent %s: %w: event does not describe this version", c.ID, broker.ErrInvalid)
	}
	granted, err := jsonText(c.Granted)
	if err != nil {
		return err
	}
	err = tx.execOne(ctx, updateConsentSQL, string(c.State), granted, tx.nt(c.DecidedAt), tx.nt(c.ExpiresAt), tx.nt(c.EndedAt),
		c.Version, c.ID, c.Version-1)
	if errors.Is(err, broker.ErrNotFound) {
		// Either no such consent or someone else moved it first.
		if _, gerr := tx.GetConsent(ctx, c.ID); gerr != nil {
			return gerr
		}
		return fmt.Errorf("update consent %s from version %d: %w", c.ID, c.Version-1, broker.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update consent %s: %w", c.ID, err)
	}
	return tx.appendEvent(ctx, ev)
}

func (tx *Tx) appendEvent(ctx context.Context, ev broker.ConsentEvent) error {
	scope, err := jsonText(ev.Scope)
	if err != nil {
		return err
	}
	_, err = tx.Q.Exec(ctx, `INSERT INTO consent_events (consent_id, seq, from_state, to_state, scope, at, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, ev.ConsentID, ev.Seq, string(ev.From), string(ev.To), scope, tx.t(ev.At), ev.Actor, ev.Reason)
	if err != nil {
		return fmt.Errorf("append consent %s event %d: %w", ev.ConsentID, ev.Seq, tx.err(err))
	}
	return nil
}

func (tx *Tx) ListConsents(ctx context.Context, f store.ConsentFilter) ([]broker.Consent, error) {
	q := `SELECT ` + consentColumns + ` FROM consents WHERE id > $1`
	args := []any{f.Page.After}
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND %s $%d", cond, len(args))
	}
	if f.CustomerID != "" {
		add("customer_id =", f.CustomerID)
	}
	if f.FirmID != "" {
		add("firm_id =", f.FirmID)
	}
	if f.State != "" {
		add("state =", string(f.State))
	}
	if !f.ExpiringBy.IsZero() {
		add("state = 'granted' AND expires_at <=", tx.t(f.ExpiringBy))
	}
	args = append(args, f.Page.N())
	q += fmt.Sprintf(" ORDER BY id LIMIT $%d", len(args))
	var out []broker.Consent
	err := queryAll(ctx, tx, q, args, func(s *scanner) (*scanner, func()) {
		var c broker.Consent
		return scanConsent(s, &c), func() { out = append(out, c) }
	})
	if err != nil {
		return nil, fmt.Errorf("list consents: %w", err)
	}
	return out, nil
}

func (tx *Tx) ConsentHistory(ctx context.Context, id broker.ConsentID) ([]broker.ConsentEvent, error) {
	var out []broker.ConsentEvent
	err := queryAll(ctx, tx, `SELECT consent_id, seq, from_state, to_state, scope, at, actor, reason
FROM consent_events WHERE consent_id = $1 ORDER BY seq`, []any{id}, func(s *scanner) (*scanner, func()) {
		var e broker.ConsentEvent
		s.str((*string)(&e.ConsentID)).num(&e.Seq).str((*string)(&e.From)).str((*string)(&e.To)).json(&e.Scope).
			time(&e.At).str(&e.Actor).str(&e.Reason)
		return s, func() { out = append(out, e) }
	})
	if err != nil {
		return nil, fmt.Errorf("history of consent %s: %w", id, err)
	}
	return out, nil
}

// prefixed qualifies each of a column list's names with alias.
func prefixed(cols, alias string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = alias + "." + p
	}
	return strings.Join(parts, ", ")
}

// accessContextSQL reads a consent with its firm, customer, the customer's
// newest terms version and the firm's pseudonym for the customer in one
// round trip. Only the consent row is locked (FOR UPDATE OF c): locking
// the firm or customer rows would serialize all of a firm's disclosures.
var accessContextSQL = `SELECT ` + prefixed(consentColumns, "c") + `, ` + prefixed(firmColumns, "f") + `, ` + prefixed(customerColumns, "u") + `,
COALESCE(t.customer_id, ''), COALESCE(t.version, 0), COALESCE(t.raw, ''), COALESCE(t.hash, ''), t.created_at, COALESCE(p.pseudonym, ''),
COALESCE(k.customer_id, ''), k.wrapped, COALESCE(k.key_version, 0), k.created_at,
EXISTS (SELECT 1 FROM consent_events e WHERE e.consent_id = c.id AND e.from_state = 'requested' AND e.to_state = 'granted'
	AND e.actor LIKE 'customer:%')
FROM consents c
JOIN firms f ON f.id = c.firm_id
JOIN customers u ON u.id = c.customer_id
LEFT JOIN terms_versions t ON t.customer_id = c.customer_id AND t.version = (SELECT MAX(version) FROM terms_versions WHERE customer_id = c.customer_id)
LEFT JOIN pseudonyms p ON p.customer_id = c.customer_id AND p.firm_id = c.firm_id
LEFT JOIN customer_keys k ON k.customer_id = c.customer_id
WHERE c.id = $1`

func (tx *Tx) ReadAccessContext(ctx context.Context, id broker.ConsentID, q store.AccessQuery) (store.AccessContext, error) {
	acs, errs, err := tx.ReadAccessContexts(ctx, []store.AccessRead{{Consent: id, AccessQuery: q}})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return store.AccessContext{}, err
	}
	return acs[0], nil
}

// accessPart is what one statement of ReadAccessContexts reads for one
// consent.
type accessPart int

const (
	partToken accessPart = iota
	partProof
	partContext
	partCounts
	partRecords
)

func (tx *Tx) ReadAccessContexts(ctx context.Context, reads []store.AccessRead) ([]store.AccessContext, []error, error) {
	for _, r := range reads {
		if r.Proof == nil {
			continue
		}
		if err := tx.mustWrite("use dpop proof"); err != nil {
			return nil, nil, err
		}
	}
	lock := ""
	if tx.Writable && tx.D.LockSuffix != "" {
		lock = tx.D.LockSuffix + " OF c"
	}
	// Lock in ascending id order: two transactions reading overlapping
	// sets then wait for each other instead of deadlocking.
	order := make([]int, len(reads))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(string(reads[i].Consent), string(reads[j].Consent)) })
	type part struct {
		read int
		what accessPart
	}
	var (
		queries []Stmt
		parts   []part
	)
	acs, errs := make([]store.AccessContext, len(reads)), make([]error, len(reads))
	// found: the consent exists; live: the token is; fresh: the proof is.
	found, live, fresh := make([]bool, len(reads)), make([]bool, len(reads)), make([]bool, len(reads))
	windows := make([]windowCounts, len(reads))
	for _, i := range order {
		r := reads[i]
		if r.Token != "" {
			queries = append(queries, Stmt{liveTokenSQL, []any{r.Token, tx.t(r.Now)}})
			parts = append(parts, part{i, partToken})
		}
		if r.Proof != nil {
			queries = append(queries, Stmt{useDPoPProofSQL + ` RETURNING 1`, []any{r.Proof.Key, tx.t(r.Proof.Expires), tx.t(r.Now)}})
			parts = append(parts, part{i, partProof})
		}
		queries = append(queries, Stmt{accessContextSQL + lock, []any{r.Consent}})
		parts = append(parts, part{i, partContext})
		queries = append(queries, countSinceStmt(tx, r.Consent, r.Since))
		parts = append(parts, part{i, partCounts})
		windows[i].firsts = make([]int64, len(r.Since))
		if r.Records {
			queries = append(queries, Stmt{consentRecordsSQL, []any{r.Consent}})
			parts = append(parts, part{i, partRecords})
		}
	}
	err := tx.queryEach(ctx, queries, func(k int, rows Rows) error {
		i, a := parts[k].read, &acs[parts[k].read]
		switch parts[k].what {
		case partToken:
			live[i] = rows.Next()
			return nil
		case partProof:
			fresh[i] = rows.Next()
			return nil
		case partRecords:
			for rows.Next() {
				var r broker.SealedRecord
				if err := scanRecord(newScanner(tx.D), &r).from(rows); err != nil {
					return err
				}
				a.Records = append(a.Records, r)
			}
			return nil
		case partCounts:
			if !rows.Next() {
				return nil // no disclosure yet
			}
			return windows[i].scan(newScanner(tx.D)).from(rows)
		}
		if !rows.Next() {
			return nil // no such consent
		}
		found[i] = true
		var psn string
		s := scanConsent(newScanner(tx.D), &a.Consent)
		s = scanFirm(s, &a.Firm)
		s = scanCustomer(s, &a.Customer)
		s = scanTerms(s, &a.Terms).str(&psn)
		s = scanCustomerKey(s, &a.Key).flag(&a.Explicit)
		err := s.from(rows)
		a.Pseudonym = broker.Pseudonym(psn)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("access contexts of %d consents: %w", len(reads), tx.err(err))
	}
	for i, a := range acs {
		r := reads[i]
		switch {
		case r.Token != "" && !live[i]:
			errs[i] = store.ErrTokenInactive
		case r.Proof != nil && !fresh[i]:
			errs[i] = store.ErrProofReplayed
		case !found[i]:
			errs[i] = broker.ErrNotFound
		}
		switch {
		case errs[i] != nil:
			errs[i] = fmt.Errorf("access context of %s: %w", r.Consent, errs[i])
			acs[i] = store.AccessContext{}
		default:
			acs[i].LastDisclosure = windows[i].lastAt
			if len(r.Since) > 0 {
				acs[i].Counts = windows[i].counts()
			}
			if a.Terms.Version == 0 {
				acs[i].Terms = broker.TermsVersion{}
			}
			if a.Key.CustomerID == "" {
				acs[i].Key = broker.CustomerKey{}
			}
		}
	}
	return acs, errs, nil
}

// liveTokenSQL finds an access token (kind 'access', as oauth stores it)
// that is live at $2, with its client active and its firm approved.
const liveTokenSQL = `SELECT 1 FROM oauth_requests r
JOIN clients cl ON cl.id = r.client_id
JOIN firms f ON f.id = cl.firm_id
WHERE r.kind = 'access' AND r.signature = $1 AND r.active AND r.expires_at > $2
	AND cl.status = 'active' AND f.status = 'approved'`

// consentRecordsSQL reads the sealed vault records of a consent's customer.
const consentRecordsSQL = `SELECT ` + recordColumns + ` FROM records
WHERE customer_id = (SELECT customer_id FROM consents WHERE id = $1) ORDER BY category`

// countSinceStmt reads a consent's last disclosure and, for each of
// since, the first disclosure at or after it (see windowCounts). Each is
// one probe of the index on (consent_id, at, seq), however many
// disclosures the consent has.
func countSinceStmt(tx *Tx, consent broker.ConsentID, since []time.Time) Stmt {
	var b strings.Builder
	args := []any{consent}
	b.WriteString("SELECT l.seq, l.at")
	for _, t := range since {
		args = append(args, tx.t(t))
		fmt.Fprintf(&b, ", COALESCE((SELECT f.seq FROM disclosures f WHERE f.consent_id = $1 AND f.at >= $%d ORDER BY f.at, f.seq LIMIT 1), 0)", len(args))
	}
	b.WriteString(" FROM (SELECT seq, at FROM disclosures WHERE consent_id = $1 ORDER BY at DESC, seq DESC LIMIT 1) l")
	return Stmt{b.String(), args}
}

// windowCounts is what countSinceStmt reads: the seq and time of the
// consent's last disclosure and the seq of the first in each window (0
// when the window holds none). Seqs number a consent's disclosures in
// (at, seq) order, so a window holds last-first+1 of them.
type windowCounts struct {
	last   int64
	lastAt time.Time
	firsts []int64
}

func (w *windowCounts) scan(s *scanner) *scanner {
	s = s.num64(&w.last).time(&w.lastAt)
	for i := range w.firsts {
		s = s.num64(&w.firsts[i])
	}
	return s
}

// counts are the disclosures in each window.
func (w *windowCounts) counts() []int {
	out := make([]int, len(w.firsts))
	for i, f := range w.firsts {
		if f > 0 {
			out[i] = int(w.last - f + 1)
		}
	}
	return out
}

func (tx *Tx) CountDisclosuresSince(ctx context.Context, consent broker.ConsentID, since []time.Time) ([]int, error) {
	if len(since) == 0 {
		return nil, nil
	}
	w := windowCounts{firsts: make([]int64, len(since))}
	st := countSinceStmt(tx, consent, since)
	err := w.scan(newScanner(tx.D)).from(tx.Q.QueryRow(ctx, st.SQL, st.Args...))
	if errors.Is(err, broker.ErrNotFound) {
		return make([]int, len(since)), nil // no disclosure yet
	}
	if err != nil {
		return nil, fmt.Errorf("count disclosures of %s: %w", consent, err)
	}
	return w.counts(), nil
}
