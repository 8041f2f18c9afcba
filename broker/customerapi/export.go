package customerapi

import (
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
	b, err := json.MarshalIndent(ar, "", "  ")
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="steward-export-`+ar.GeneratedAt.Format("2006-01-02")+`.json"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
