package dataapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
)

// Disclosed is the body of a successful fetch. Data holds exactly the
// bytes the commitment covers: Commit(Salt, Data) equals Commitment, and
// Commitment is in the ledger entry of Receipt.
type Disclosed struct {
	DisclosureID broker.DisclosureID `json:"disclosure_id"`
	ConsentID    broker.ConsentID    `json:"consent_id"`
	// Customer is the pseudonym this firm knows the customer by.
	Customer broker.Pseudonym `json:"customer"`
	Purpose  string           `json:"purpose"`
	At       time.Time        `json:"disclosed_at"`
	// Data maps each disclosed category to its (minimised) fields.
	Data json.RawMessage `json:"data"`
	// Missing lists requested categories the customer holds no data for.
	Missing    []string `json:"missing,omitempty"`
	Commitment string   `json:"commitment,omitempty"`
	Salt       []byte   `json:"salt,omitempty"`
	Receipt    *Pending `json:"receipt,omitempty"`
}

// Pending is the receipt given with a response: the ledger entry itself,
// already committed, and where its inclusion proof will be served once
// the entry is sequenced and integrated (usually within a second).
type Pending struct {
	// LeafHash is the base64 RFC 6962 leaf hash of Entry (broker.Receipt.LeafHash).
	LeafHash string `json:"leaf_hash"`
	// Entry is the entry's canonical bytes, as logged.
	Entry json.RawMessage `json:"entry"`
	// URL serves the broker.Receipt with its inclusion proof.
	URL string `json:"url"`
}

// Refused is the body of a fetch the access decision refused.
type Refused struct {
	httpapi.Problem
	Reasons      []broker.Reason `json:"reasons"`
	DecisionHash string          `json:"decision_hash"`
}

// fetchRequest is what a fetch asks for, from the query string:
// category=A&category=B (or category=A,B) and fields=A.x,A.y.
type fetchRequest struct {
	Categories []string
	Fields     map[string][]string
}

// MaxQueryItems bounds the categories and fields one fetch may name.
const MaxQueryItems = 64

func parseFetch(r *http.Request) (fetchRequest, error) {
	var q fetchRequest
	vals := r.URL.Query()
	for k := range vals {
		if k != "category" && k != "fields" {
			return q, fmt.Errorf("%w: unknown query parameter %q", broker.ErrInvalid, k)
		}
	}
	split := func(name string) []string {
		var out []string
		for _, v := range vals[name] {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
		}
		return out
	}
	q.Categories = split("category")
	fields := split("fields")
	if len(q.Categories) > MaxQueryItems || len(fields) > MaxQueryItems {
		return q, fmt.Errorf("%w: at most %d categories and %d fields", broker.ErrInvalid, MaxQueryItems, MaxQueryItems)
	}
	for _, c := range q.Categories {
		if _, ok := broker.CategoryByName(c); !ok {
			return q, fmt.Errorf("%w: unknown category %q", broker.ErrInvalid, c)
		}
	}
	for _, f := range fields {
		cat, name, ok := strings.Cut(f, ".")
		if !ok || name == "" || len(name) > 64 {
			return q, fmt.Errorf("%w: field %q must be Category.field", broker.ErrInvalid, f)
		}
		if _, ok := broker.CategoryByName(cat); !ok {
			return q, fmt.Errorf("%w: unknown category %q in field %q", broker.ErrInvalid, cat, f)
		}
		if q.Fields == nil {
			q.Fields = map[string][]string{}
		}
		q.Fields[cat] = append(q.Fields[cat], name)
		if !slices.Contains(q.Categories, cat) {
			q.Categories = append(q.Categories, cat)
		}
	}
	slices.Sort(q.Categories)
	q.Categories = slices.Compact(q.Categories)
	for c, fs := range q.Fields {
		slices.Sort(fs)
		q.Fields[c] = slices.Compact(fs)
	}
	return q, nil
}

// complete fills what the request left out from the consent's granted
// scope: every granted category, and the granted fields of a category the
// consent restricts to some fields.
func (q fetchRequest) complete(granted broker.Scope) fetchRequest {
	if len(q.Categories) == 0 {
		q.Categories = slices.Clone(granted.Categories)
	}
	for _, c := range q.Categories {
		if fs, ok := granted.Fields[c]; ok && len(q.Fields[c]) == 0 {
			if q.Fields == nil {
				q.Fields = map[string][]string{}
			}
			q.Fields[c] = slices.Clone(fs)
		}
	}
	return q
}

// outcome is what the disclosure transaction decided.
type outcome struct {
	body    Disclosed
	refused *broker.Decision
	hash    string
	// limited is set when the refusal is the consent's frequency limit.
	limited time.Duration
	// disclosed is set when a disclosure and its ledger entry were staged.
	disclosed bool
}

func (a *API) fetch(w http.ResponseWriter, r *http.Request, tok Token) {
	q, err := parseFetch(r)
	if err == nil && tok.ConsentID == "" {
		err = fmt.Errorf("fetch with a firm token: %w", broker.ErrForbidden)
	}
	var id broker.ConsentID
	if err == nil {
		id, err = consentID(r, tok, false)
	}
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	job := &fetchJob{ctx: r.Context(), tok: tok, id: id, q: q}
	a.disclosures.do(job)
	out, err := job.out, job.err
	switch {
	case errors.Is(err, store.ErrTokenInactive):
		a.tokens.forget(tokenKey(tok.raw))
		a.refuseToken(w, r, errInactive)
		return
	case errors.Is(err, store.ErrProofReplayed):
		err = errReplayed
	}
	if err != nil {
		a.writeError(w, r, tok, err)
		return
	}
	if out.refused != nil {
		a.writeRefusal(w, r, tok, out)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out.body)
}

// plan is a fetch decided but not yet recorded: the access decision at
// this moment, its record and, if allowed, the minimised data.
type plan struct {
	ac      access
	d       broker.Decision
	rec     broker.SealedDecision
	data    json.RawMessage
	cats    []string
	fields  map[string][]string
	missing []string
}

// decide is the first half of a disclosure, which writes nothing: the
// access decision for q under the consent ac (read and locked in the
// transaction) at now, and, if it allows, the customer's data opened and
// minimised to what it allows.
func (a *API) decide(ctx context.Context, q fetchRequest, ac access, now time.Time) (plan, error) {
	c, in := ac.Consent, ac.in
	q = q.complete(c.Granted)
	in.Categories, in.Fields, in.Purpose = q.Categories, q.Fields, c.Granted.Purpose
	d, err := a.cfg.Policy.Access(ctx, in)
	if err != nil {
		// d is a deny; record it like any other refusal, and log why.
		a.cfg.Logger.ErrorContext(ctx, "access decision failed", "consent", string(c.ID), "error", err)
	}
	req := broker.DataRequest{Scope: broker.Scope{Categories: q.Categories, Fields: q.Fields, Purpose: c.Granted.Purpose}}
	rec, err := broker.SealDecision(broker.NewDecisionRecord(c.CustomerID, c.FirmID, c.ID, req, d))
	if err != nil {
		return plan{}, err
	}
	p := plan{ac: ac, d: d, rec: rec}
	if !d.Allowed() {
		return p, nil
	}
	recs, err := a.cfg.Vault.OpenRecords(ac.Key, c.CustomerID, ac.Records, d.Scope.Categories...)
	if err != nil {
		return plan{}, err
	}
	p.data, p.cats, p.fields, p.missing, err = minimise(recs, d.Scope)
	return p, err
}

// record is the second half of a disclosure: what p decided, as the rows
// to write (the decision record; on allow, the disclosure and its ledger
// entry, which carries a salted commitment to the data) and the answer to
// give once they have committed: a refusal or the response body. Only a
// missing pseudonym is written here (tx.Pseudonym); the caller writes the
// rows (Tx.RecordDisclosures) and answers nothing until the transaction
// has committed.
func (a *API) record(ctx context.Context, tx store.Tx, p plan, now time.Time) (outcome, store.DisclosureWrite, error) {
	c := p.ac.Consent
	w := store.DisclosureWrite{Decision: p.rec}
	if !p.d.Allowed() {
		return outcome{refused: &p.d, limited: frequencyHit(c, p.ac.in.Counts)}, w, nil
	}
	psn := p.ac.Pseudonym
	if psn == "" {
		var err error
		if psn, err = tx.Pseudonym(ctx, c.CustomerID, c.FirmID); err != nil {
			return outcome{}, w, err
		}
	}
	// The consent's disclosures are recorded in time order (see
	// store.AccessContext.LastDisclosure): a clock behind the one that
	// dated the last disclosure dates this one with it.
	if last := p.ac.LastDisclosure; last.After(now) {
		now = last
	}
	body := Disclosed{ConsentID: c.ID, Customer: psn, Purpose: c.Granted.Purpose, At: now, Data: p.data, Missing: p.missing}
	if len(p.cats) == 0 {
		// Nothing leaves Steward, so there is no disclosure to record;
		// the decision is recorded all the same.
		return outcome{body: body}, w, nil
	}
	salt := broker.NewSalt()
	dis := broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: c.ID, FirmID: c.FirmID, CustomerID: c.CustomerID,
		Categories: p.cats, Fields: p.fields, Purpose: c.Granted.Purpose, At: now,
		Commitment: broker.Commit(salt, p.data), Salt: salt}
	e := broker.Entry{Type: broker.EntryDisclosure, Time: now, Firm: c.FirmID, Customer: psn, Consent: c.ID, Disclosure: dis.ID,
		Categories: p.cats, Purpose: c.Granted.Purpose, DecisionHash: p.rec.Hash(), TermsHash: p.d.TermsHash, Commitment: dis.Commitment}
	entry, err := e.CanonicalBytes()
	if err != nil {
		return outcome{}, w, err
	}
	rc := a.pending(entry)
	dis.ReceiptID = rc.LeafHash
	w.Disclosure, w.Entry = &dis, entry
	body.DisclosureID, body.Commitment, body.Salt, body.Receipt = dis.ID, dis.Commitment, salt, rc
	return outcome{body: body, disclosed: true}, w, nil
}

// frequencyHit returns the consent's frequency window when the count in it
// has reached the limit, so the refusal can say when to retry.
func frequencyHit(c broker.Consent, counts map[broker.Duration]int) time.Duration {
	f := c.Granted.Frequency
	if f.Max > 0 && !f.Per.IsZero() && counts[f.Per] >= f.Max {
		return f.Per.Approx()
	}
	return 0
}

// minimise keeps, of the customer's records, only the categories and
// fields the decision allows. It returns the canonical JSON of the data
// (object keys sorted, as encoding/json writes maps), the categories and
// fields actually disclosed, and the allowed categories with no record.
func minimise(recs []broker.Record, scope broker.Scope) (data json.RawMessage, cats []string, fields map[string][]string, missing []string, err error) {
	byCat := make(map[string]broker.Record, len(recs))
	for _, rec := range recs {
		byCat[rec.Category] = rec
	}
	out := map[string]map[string]json.RawMessage{}
	for _, c := range scope.Categories {
		rec, ok := byCat[c]
		if !ok {
			missing = append(missing, c)
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(rec.Value, &obj); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("vault record %s: %w", c, err)
		}
		if allowed, ok := scope.Fields[c]; ok {
			maps.DeleteFunc(obj, func(k string, _ json.RawMessage) bool { return !slices.Contains(allowed, k) })
			if fields == nil {
				fields = map[string][]string{}
			}
			fields[c] = slices.Sorted(maps.Keys(obj))
		}
		if len(obj) == 0 {
			missing = append(missing, c)
			continue
		}
		out[c] = obj
		cats = append(cats, c)
	}
	data, err = json.Marshal(out)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	slices.Sort(cats)
	return data, cats, fields, missing, nil
}

// stage writes e to the ledger in tx and returns the pending receipt.
func (a *API) stage(ctx context.Context, tx store.Tx, e broker.Entry) (*Pending, error) {
	b, err := e.CanonicalBytes()
	if err != nil {
		return nil, err
	}
	if err := tx.StageLedgerEntry(ctx, b); err != nil {
		return nil, err
	}
	return a.pending(b), nil
}

// pending is the receipt given for the entry with canonical bytes b.
func (a *API) pending(b []byte) *Pending {
	h := tlog.RecordHash(b)
	return &Pending{LeafHash: LeafHash(h), Entry: b, URL: a.cfg.PublicURL + "/ledger/receipt/" + hex.EncodeToString(h[:])}
}

func (a *API) writeRefusal(w http.ResponseWriter, r *http.Request, tok Token, out outcome) {
	status, kind, title := http.StatusForbidden, "access-refused", "Access refused"
	if out.limited > 0 {
		status, kind, title = http.StatusTooManyRequests, "frequency-limit", "Frequency limit reached"
		w.Header().Set("Retry-After", strconv.Itoa(int(out.limited.Seconds())))
	}
	reasons := out.refused.Reasons
	texts := make([]string, len(reasons))
	for i, rs := range reasons {
		texts[i] = rs.Text
	}
	a.cfg.Logger.LogAttrs(r.Context(), slogInfo, "data api access refused", attrs(tok, r, out.hash)...)
	body := Refused{Problem: httpapi.Problem{Type: httpapi.ProblemType + kind, Title: title, Status: status,
		Detail: strings.Join(texts, " "), Instance: r.URL.Path}, Reasons: reasons, DecisionHash: out.hash}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
