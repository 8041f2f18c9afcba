package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"
)

// DefaultMaxBody is the request body limit for JSON APIs.
const DefaultMaxBody = 1 << 20

// decodeJSON reads one JSON object from the request into v, strictly: the
// Content-Type must be application/json, the body at most the limit set by
// the body-limit middleware, valid UTF-8, with no unknown fields and
// nothing after the object.
func decodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &requestError{status: http.StatusUnsupportedMediaType, kind: "unsupported-media-type",
			detail: "send the body as application/json"}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &requestError{status: http.StatusRequestEntityTooLarge, kind: "too-large",
				detail: fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit)}
		}
		return badRequest("unreadable", "the request body could not be read")
	}
	if !utf8.Valid(body) {
		return badRequest("invalid-utf8", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return badRequest("malformed-json", fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
		case errors.As(err, &typ):
			return badRequest("malformed-json", fmt.Sprintf("field %q must be %s", typ.Field, typ.Type))
		case errors.Is(err, io.EOF):
			return badRequest("malformed-json", "the body is empty")
		default:
			// Unknown fields and the like: json's message names the field.
			return badRequest("malformed-json", err.Error())
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed-json", "unexpected data after the JSON object")
	}
	return nil
}

// DecodeJSON is decodeJSON for the other API packages (dataapi, the
// customer API): strict, and its errors map to problems in WriteError.
func DecodeJSON(r *http.Request, v any) error { return decodeJSON(r, v) }
