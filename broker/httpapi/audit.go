package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/audit"
	"github.com/stewardhq/steward/broker/store"
)

// DefaultReportPeriod is the report window when ?from= is not given.
const DefaultReportPeriod = 30 * 24 * time.Hour

type auditAPI struct {
	cfg Config
	svc *audit.Service
}

// mountAudit serves the regulator's read-only API. Only GET routes exist,
// so any write is 405.
func mountAudit(r chi.Router, cfg Config) {
	a := auditAPI{cfg: cfg, svc: audit.New(cfg.Store)}
	r.Get("/entries", a.entries)
	r.Get("/reports", a.report)
}

func (a auditAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, a.cfg.Logger, err)
}

func parseTime(q, name string) (time.Time, error) {
	if q == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, q)
	if err != nil {
		return t, badRequest("invalid-query", name+" must be an RFC 3339 time such as 2026-11-01T00:00:00Z")
	}
	return t, nil
}

// format reads ?format=json|csv (default json).
func format(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		return "json", nil
	case "csv":
		return "csv", nil
	default:
		return "", badRequest("invalid-query", "format must be json or csv")
	}
}

func (a auditAPI) entries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.LedgerFilter{FirmID: broker.FirmID(q.Get("firm")), Purpose: q.Get("purpose"), Category: q.Get("category"),
		ConsentID: broker.ConsentID(q.Get("consent")), After: -1}
	for _, t := range q["type"] {
		for _, one := range strings.Split(t, ",") {
			f.Types = append(f.Types, broker.EntryType(one))
		}
	}
	var err error
	if f.From, err = parseTime(q.Get("from"), "from"); err != nil {
		a.fail(w, r, err)
		return
	}
	if f.To, err = parseTime(q.Get("to"), "to"); err != nil {
		a.fail(w, r, err)
		return
	}
	if s := q.Get("after"); s != "" {
		if f.After, err = strconv.ParseInt(s, 10, 64); err != nil || f.After < 0 {
			a.fail(w, r, badRequest("invalid-query", "after must be an entry index"))
			return
		}
	}
	p, err := page(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f.Limit = p.Limit
	fm, err := format(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	found, err := a.svc.Search(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if fm == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="steward-ledger-entries.csv"`)
		if err := audit.WriteEntriesCSV(w, found); err != nil {
			a.cfg.Logger.ErrorContext(r.Context(), "write csv", "error", err)
		}
		return
	}
	out := listResponse[audit.Entry]{Items: found}
	if out.Items == nil {
		out.Items = []audit.Entry{}
	}
	if len(found) == store.Page(p).N() {
		out.Next = strconv.FormatInt(found[len(found)-1].Index, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a auditAPI) report(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := parseTime(q.Get("from"), "from")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	to, err := parseTime(q.Get("to"), "to")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if to.IsZero() {
		to = a.cfg.Now()
	}
	if from.IsZero() {
		from = to.Add(-DefaultReportPeriod)
	}
	fm, err := format(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := a.svc.Report(r.Context(), from, to)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if fm == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="steward-ledger-report.csv"`)
		if err := audit.WriteReportCSV(w, rep); err != nil {
			a.cfg.Logger.ErrorContext(r.Context(), "write csv", "error", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
