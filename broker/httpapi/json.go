package httpapi

import "net/http"

// WriteJSON writes v as JSON with status and Cache-Control: no-store, as
// this package's own APIs answer; other API packages (the customer API)
// use it.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }
