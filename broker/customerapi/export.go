package customerapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/stewardhq/steward/broker/httpapi"
)

// export sends the customer's complete archive (package export) as a JSON
// download, consent records in DPV JSON-LD and ledger receipts included.
func (a *api) export(w http.ResponseWriter, r *http.Request) {
	ar, err := a.cfg.Export.Export(r.Context(), customer(r.Context()).ID)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	// Compact and without HTML escaping, so each ledger entry is sent
	// byte for byte as logged and its receipt still verifies.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ar); err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="steward-export-`+ar.GeneratedAt.Format("2006-01-02")+`.json"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
