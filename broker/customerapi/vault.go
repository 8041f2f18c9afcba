package customerapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/vault"
)

// RowsProblem is a problem that lists what was wrong, row by row (an
// import) or field by field (a record).
type RowsProblem struct {
	httpapi.Problem
	Errors []vault.RowError `json:"errors"`
	// More is set when more rows failed than are listed.
	More bool `json:"more,omitempty"`
}

func writeRows(w http.ResponseWriter, r *http.Request, p RowsProblem) {
	p.Instance = r.URL.Path
	p.RequestID = middleware.GetReqID(r.Context())
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeVaultError answers a refused record or import with its rows, and
// anything else through httpapi.WriteError.
func (a *api) writeVaultError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *vault.ImportError
	var re *vault.RecordError
	switch {
	case errors.As(err, &ie):
		writeRows(w, r, RowsProblem{Problem: httpapi.Problem{Status: http.StatusUnprocessableEntity, Type: httpapi.ProblemType + "import-refused",
			Title: "Import refused", Detail: "nothing was stored; fix the rows listed and send the whole file again"}, Errors: ie.Rows, More: ie.More})
	case errors.As(err, &re):
		rows := make([]vault.RowError, len(re.Fields))
		for i, f := range re.Fields {
			rows[i] = vault.RowError{Field: f.Field, Message: f.Message}
		}
		writeRows(w, r, RowsProblem{Problem: httpapi.Problem{Status: http.StatusUnprocessableEntity, Type: httpapi.ProblemType + "record-refused",
			Title: "Record refused", Detail: "nothing was stored: the " + re.Category + " record does not match its schema"}, Errors: rows})
	default:
		httpapi.WriteError(w, r, a.log, err)
	}
}

func (a *api) vault(w http.ResponseWriter, r *http.Request) {
	recs, err := a.cfg.Vault.Records(r.Context(), customer(r.Context()).ID)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	if recs == nil {
		recs = []broker.Record{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"records": recs})
}

// readBody reads a body of media type want, at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, want string, limit int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		return nil, unsupported(want)
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// unsupported is a body of the wrong media type.
type unsupported string

func (u unsupported) Error() string { return "send the body as " + string(u) }

// writeBodyError answers a body that could not be read (415, 413) or was
// refused.
func (a *api) writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	var u unsupported
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &u):
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusUnsupportedMediaType, Type: httpapi.ProblemType + "unsupported-media-type", Detail: u.Error()})
	case errors.As(err, &tooBig):
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusRequestEntityTooLarge, Type: httpapi.ProblemType + "too-large",
			Detail: fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)})
	default:
		a.writeVaultError(w, r, err)
	}
}

func (a *api) putRecord(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	cat := chi.URLParam(r, "category")
	if _, ok := vault.Schemas[cat]; !ok {
		httpapi.WriteError(w, r, a.log, fmt.Errorf("vault category %q: %w", cat, broker.ErrNotFound))
		return
	}
	body, err := readBody(w, r, "application/json", broker.MaxRecordBytes)
	if err != nil {
		a.writeBodyError(w, r, err)
		return
	}
	if err := a.cfg.Vault.Put(ctx, me.ID, cat, body, "customer"); err != nil {
		a.writeVaultError(w, r, err)
		return
	}
	recs, err := a.cfg.Vault.Records(ctx, me.ID, cat)
	if err == nil && len(recs) != 1 {
		err = fmt.Errorf("%d %s records after put", len(recs), cat)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.log, fmt.Errorf("read back %s record: %w", cat, err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, recs[0])
}

// ImportResult names the categories an import stored.
type ImportResult struct {
	Imported []string `json:"imported"`
}

func (a *api) importVault(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var format vault.Format
	switch {
	case err != nil:
	case mt == "application/json":
		format = vault.JSON
	case mt == "text/csv":
		format = vault.CSV
	}
	if format == "" {
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusUnsupportedMediaType, Type: httpapi.ProblemType + "unsupported-media-type",
			Detail: "send the file as application/json or text/csv"})
		return
	}
	// vault.Import reads at most vault.MaxImportBytes+1 and refuses more.
	body := http.MaxBytesReader(w, r.Body, vault.MaxImportBytes+1)
	cats, err := a.cfg.Vault.Import(ctx, me.ID, format, body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = &vault.ImportError{Rows: []vault.RowError{{Message: fmt.Sprintf("the file is larger than %d bytes", vault.MaxImportBytes)}}}
		}
		a.writeVaultError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, ImportResult{Imported: cats})
}
