package dpop

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"
)

// OAuth error codes defined by RFC 9449.
const (
	// CodeInvalidDPoPProof is the error code for a missing or invalid proof (§5, §7.1).
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	// CodeUseDPoPNonce is the error code asking the client to retry with the server's nonce (§8, §9).
	CodeUseDPoPNonce = "use_dpop_nonce"
	// CodeInvalidToken is RFC 6750's error code, used by resource servers for
	// a token presented with the wrong scheme or a proof from the wrong key (§7.1).
	CodeInvalidToken = "invalid_token"
)

// Errors returned by this package. They are all *fosite.RFC6749Error so that
// fosite renders them; match them with errors.Is, which compares the error
// code and HTTP status.
var (
	// ErrInvalidDPoPProof is returned at the token endpoint (400) when the
	// DPoP proof is missing, malformed, or fails a check of RFC 9449 §4.3.
	ErrInvalidDPoPProof = &fosite.RFC6749Error{
		ErrorField:       CodeInvalidDPoPProof,
		DescriptionField: "The DPoP proof is missing or invalid.",
		CodeField:        http.StatusBadRequest,
	}
	// ErrUseDPoPNonce is returned at the token endpoint (400) when the proof
	// lacks the server's current nonce. The error carries a fresh nonce:
	// read it with NonceFromError and send it in the DPoP-Nonce header.
	ErrUseDPoPNonce = &fosite.RFC6749Error{
		ErrorField:       CodeUseDPoPNonce,
		DescriptionField: "The authorization server requires a nonce in the DPoP proof.",
		CodeField:        http.StatusBadRequest,
	}
	// ErrResourceInvalidProof is the resource-server (401) form of ErrInvalidDPoPProof.
	ErrResourceInvalidProof = &fosite.RFC6749Error{
		ErrorField:       CodeInvalidDPoPProof,
		DescriptionField: "The DPoP proof is missing or invalid.",
		CodeField:        http.StatusUnauthorized,
	}
	// ErrResourceUseNonce is the resource-server (401) form of ErrUseDPoPNonce.
	ErrResourceUseNonce = &fosite.RFC6749Error{
		ErrorField:       CodeUseDPoPNonce,
		DescriptionField: "The resource server requires a nonce in the DPoP proof.",
		CodeField:        http.StatusUnauthorized,
	}
	// ErrInvalidToken is returned by resource servers (401) when the access
	// token is missing, presented as Bearer although it is DPoP-bound, or
	// bound to a key other than the one that signed the proof.
	ErrInvalidToken = &fosite.RFC6749Error{
		ErrorField:       CodeInvalidToken,
		DescriptionField: "The access token is missing, invalid, or not bound to the presented DPoP key.",
		CodeField:        http.StatusUnauthorized,
	}
)

// nonceRequired is the cause wrapped in a use_dpop_nonce error; it carries
// the nonce the client must use next.
type nonceRequired struct{ nonce string }

func (n *nonceRequired) Error() string { return "DPoP nonce required" }

// NonceFromError returns the fresh nonce carried by a use_dpop_nonce error.
// HTTP handlers MUST send it as the DPoP-Nonce response header (RFC 9449 §8.1):
//
//	if n, ok := dpop.NonceFromError(err); ok {
//		w.Header().Set(dpop.NonceHeader, n)
//	}
func NonceFromError(err error) (string, bool) {
	var n *nonceRequired
	if errors.As(err, &n) {
		return n.nonce, true
	}
	return "", false
}

// NonceHeader is the response header that carries a server nonce.
const NonceHeader = "DPoP-Nonce"

// asResource converts an error from Validate into its resource-server form
// (status 401), keeping the hint and the wrapped cause.
func asResource(err error) error {
	var e *fosite.RFC6749Error
	if !errors.As(err, &e) || e.CodeField != http.StatusBadRequest {
		return err
	}
	r := *e
	r.CodeField = http.StatusUnauthorized
	switch e.ErrorField {
	case CodeUseDPoPNonce:
		r.DescriptionField = ErrResourceUseNonce.DescriptionField
	}
	return &r
}

// WWWAuthenticate builds the value of the WWW-Authenticate response header a
// resource server sends with a 401 for err (RFC 9449 §7.1), for example
//
//	DPoP error="invalid_token", error_description="...", algs="ES256 EdDSA"
//
// err MAY be nil (no credentials at all); then the challenge names only the
// accepted algorithms. The description is the error's fixed description,
// never the hint, so nothing from the request is echoed back.
func WWWAuthenticate(err error, algs []string) string {
	var b strings.Builder
	b.WriteString("DPoP")
	sep := " "
	param := func(k, v string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(quoteSafe(v))
		b.WriteString(`"`)
		sep = ", "
	}
	if err != nil {
		e := fosite.ErrorToRFC6749Error(err)
		code := e.ErrorField
		switch code {
		case CodeInvalidDPoPProof, CodeUseDPoPNonce, CodeInvalidToken:
		default:
			code = CodeInvalidToken
		}
		param("error", code)
		if e.DescriptionField != "" {
			param("error_description", e.DescriptionField)
		}
	}
	if len(algs) > 0 {
		param("algs", strings.Join(algs, " "))
	}
	return b.String()
}

// quoteSafe drops characters that cannot appear in an HTTP quoted-string
// without escaping; our descriptions never contain them.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
}
