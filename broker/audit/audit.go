// Package audit answers regulators' questions about the consent ledger:
// searching entries by firm, purpose, category, type, period and consent,
// aggregate reports for a period, and CSV or JSON exports of both. It is
// read-only: it runs only View transactions.
//
// The answers come from the ledger's audit index, which the sequencer
// writes beside each leaf. The index is a convenience; the leaves and
// signed checkpoints are the record, and `steward audit verify` checks
// those without trusting Steward.
package audit

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Service runs audit queries against a store.
type Service struct{ store store.Store }

// New returns a Service.
func New(s store.Store) *Service { return &Service{store: s} }

// Entry is one ledger entry as the audit API shows it: its index, leaf
// hash and the canonical entry JSON exactly as logged.
type Entry struct {
	Index    int64           `json:"index"`
	LeafHash string          `json:"leaf_hash"`
	Entry    json.RawMessage `json:"entry"`
	parsed   broker.Entry
}

// Search returns the entries matching f, in log order.
func (s *Service) Search(ctx context.Context, f store.LedgerFilter) ([]Entry, error) {
	if f.Purpose != "" {
		if _, ok := broker.PurposeByName(f.Purpose); !ok {
			return nil, fmt.Errorf("%w: unknown purpose %q", broker.ErrInvalid, f.Purpose)
		}
	}
	if f.Category != "" {
		if _, ok := broker.CategoryByName(f.Category); !ok {
			return nil, fmt.Errorf("%w: unknown category %q", broker.ErrInvalid, f.Category)
		}
	}
	for _, t := range f.Types {
		if !isEntryType(t) {
			return nil, fmt.Errorf("%w: unknown entry type %q", broker.ErrInvalid, t)
		}
	}
	var found []store.IndexedEntry
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { found, err = tx.SearchLedger(ctx, f); return err }); err != nil {
		return nil, err
	}
	out := make([]Entry, len(found))
	for i, e := range found {
		out[i] = Entry{Index: e.Index, LeafHash: e.LeafHash, Entry: e.Raw, parsed: e.Entry}
	}
	return out, nil
}

func isEntryType(t broker.EntryType) bool {
	for _, k := range broker.EntryTypes() {
		if k == t {
			return true
		}
	}
	return false
}

// Report aggregates [from, to).
func (s *Service) Report(ctx context.Context, from, to time.Time) (store.LedgerReport, error) {
	if !from.Before(to) {
		return store.LedgerReport{}, fmt.Errorf("%w: the period must start before it ends", broker.ErrInvalid)
	}
	var r store.LedgerReport
	err := s.store.View(ctx, func(tx store.Tx) (err error) { r, err = tx.LedgerReport(ctx, from, to); return err })
	return r, err
}

// cell neutralises spreadsheet formula injection (OWASP): a value that a
// spreadsheet would evaluate is prefixed with a single quote.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// EntriesCSVHeader names the columns of WriteEntriesCSV.
var EntriesCSVHeader = []string{"index", "leaf_hash", "type", "time", "firm", "customer_pseudonym", "purpose", "categories",
	"consent", "disclosure", "decision_hash", "terms_hash", "commitment", "bundle_hash"}

// WriteEntriesCSV writes entries as RFC 4180 CSV with a header row.
func WriteEntriesCSV(w io.Writer, entries []Entry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(EntriesCSVHeader); err != nil {
		return err
	}
	for _, e := range entries {
		p := e.parsed
		row := []string{strconv.FormatInt(e.Index, 10), e.LeafHash, string(p.Type), p.Time.UTC().Format(broker.EntryTimeFormat),
			string(p.Firm), string(p.Customer), p.Purpose, strings.Join(p.Categories, ";"), string(p.Consent), string(p.Disclosure),
			p.DecisionHash, p.TermsHash, p.Commitment, p.BundleHash}
		for i := range row {
			row[i] = cell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteReportCSV writes a report as CSV sections separated by a blank row:
// consents per firm and purpose, disclosures per firm, disclosures after
// revocation, refusals after end.
func WriteReportCSV(w io.Writer, r store.LedgerReport) error {
	cw := csv.NewWriter(w)
	rows := [][]string{{"section", "firm", "purpose", "granted", "denied", "revoked", "expired"}}
	for _, c := range r.Consents {
		rows = append(rows, []string{"consents", cell(string(c.FirmID)), cell(c.Purpose), strconv.Itoa(c.Granted), strconv.Itoa(c.Denied),
			strconv.Itoa(c.Revoked), strconv.Itoa(c.Expired)})
	}
	rows = append(rows, nil, []string{"section", "firm", "disclosures"})
	for _, d := range r.Disclosures {
		rows = append(rows, []string{"disclosures", cell(string(d.FirmID)), strconv.Itoa(d.Disclosures)})
	}
	rows = append(rows, nil, []string{"section", "index", "consent", "firm"})
	for _, d := range r.AfterRevocation {
		rows = append(rows, []string{"disclosures_after_revocation", strconv.FormatInt(d.Index, 10), cell(string(d.ConsentID)), cell(string(d.FirmID))})
	}
	rows = append(rows, nil, []string{"section", "consent", "firm", "ended", "ended_at", "last_refused_at", "seconds_after_end"})
	for _, v := range r.RefusalsAfterEnd {
		rows = append(rows, []string{"refusals_after_end", cell(string(v.ConsentID)), cell(string(v.FirmID)), string(v.Ended),
			v.EndedAt.Format(time.RFC3339Nano), v.LastRefusedAt.Format(time.RFC3339Nano), strconv.FormatFloat(v.Seconds, 'f', 3, 64)})
	}
	for _, row := range rows {
		if row == nil {
			row = []string{}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
