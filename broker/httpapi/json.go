package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// WriteJSON writes v as JSON with status and Cache-Control: no-store, as
// this package's own APIs answer; other API packages (the customer API,
// the Data API) use it.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// PageParams reads a listing's ?after= (the id the previous page ended
// with) and ?limit= (1 to store.MaxLimit); bad values are broker.ErrInvalid.
func PageParams(r *http.Request) (store.Page, error) {
	p := store.Page{After: r.URL.Query().Get("after")}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxLimit {
			return p, fmt.Errorf("%w: limit must be a whole number from 1 to %d", broker.ErrInvalid, store.MaxLimit)
		}
		p.Limit = n
	}
	if len(p.After) > 200 {
		return p, fmt.Errorf("%w: after is not an id", broker.ErrInvalid)
	}
	return p, nil
}
