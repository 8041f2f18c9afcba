package customerapi

import (
	"fmt"
	"net/http"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/terms"
)

func (a *api) terms(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	var tv broker.TermsVersion
	err := a.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		tv, err = tx.LatestTerms(ctx, me.ID)
		return err
	})
	if err != nil {
		httpapi.WriteError(w, r, a.log, fmt.Errorf("terms of %s: %w", me.ID, err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, tv)
}

// saveTerms stores the body, a terms document, as the customer's next
// terms version. An invalid document is a 400 problem whose detail names
// the rule at fault; nothing is stored.
func (a *api) saveTerms(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), customer(r.Context())
	doc, err := readBody(w, r, "application/json", terms.MaxDocumentBytes)
	if err != nil {
		a.writeBodyError(w, r, err)
		return
	}
	tv, err := a.cfg.Consents.SaveTerms(ctx, me.ID, doc)
	if err != nil {
		httpapi.WriteError(w, r, a.log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, tv)
}
