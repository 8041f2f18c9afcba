package dpop

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Presentation is what a client sent to a resource server with a request.
type Presentation struct {
	// Authorization is the Authorization header value ("DPoP <token>").
	Authorization string
	// Proofs are all values of the DPoP header; exactly one is accepted.
	Proofs []string
	// Method is the request's HTTP method.
	Method string
	// URL is the absolute URI of the resource as the client addressed it.
	URL string
}

// PresentationFrom collects a Presentation from r. publicURL is the
// resource's absolute URI, built from the server's configured origin and
// r.URL.Path (never from the Host header).
func PresentationFrom(r *http.Request, publicURL string) Presentation {
	return Presentation{
		Authorization: r.Header.Get("Authorization"),
		Proofs:        r.Header.Values(Header),
		Method:        r.Method,
		URL:           publicURL,
	}
}

// AccessToken returns the token and the scheme ("DPoP", "Bearer", ...) of an
// Authorization header value. It fails with ErrInvalidToken when the header
// is empty or not "<scheme> <token68>".
func AccessToken(authorization string) (token, scheme string, err error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	token = strings.TrimLeft(token, " ")
	if !ok || scheme == "" || token == "" || !isToken68(token) {
		return "", "", ErrInvalidToken.WithHint("No access token in the Authorization header.")
	}
	return token, scheme, nil
}

// CheckBinding checks a request presenting an access token bound to the key
// with thumbprint jkt (the token's cnf.jkt, from introspection or the JWT).
// It refuses, with errors for a 401 response:
//
//   - no token, or the token under any scheme but DPoP (invalid_token);
//   - an empty jkt: the token is not DPoP-bound (invalid_token);
//   - no proof, several proofs, or a proof failing Validate, including a
//     replayed one or one whose ath does not match the token
//     (invalid_dpop_proof, or use_dpop_nonce);
//   - a valid proof signed by a key other than jkt (invalid_token).
//
// Callers send WWWAuthenticate(err, v.Algorithms()) as the challenge, and
// the DPoP-Nonce header when NonceFromError reports one.
func (v *Validator) CheckBinding(ctx context.Context, p Presentation, jkt string) (Proof, error) {
	token, scheme, err := AccessToken(p.Authorization)
	if err != nil {
		return Proof{}, err
	}
	if !strings.EqualFold(scheme, "DPoP") {
		return Proof{}, ErrInvalidToken.WithHint("A DPoP-bound access token MUST be sent with the DPoP scheme.")
	}
	if jkt == "" {
		return Proof{}, ErrInvalidToken.WithHint("The access token is not DPoP-bound.")
	}
	switch {
	case len(p.Proofs) == 0:
		return Proof{}, ErrResourceInvalidProof.WithHint("No DPoP proof.")
	case len(p.Proofs) > 1 || strings.Contains(p.Proofs[0], ","):
		return Proof{}, ErrResourceInvalidProof.WithHint("More than one DPoP header.")
	}
	proof, err := v.Validate(ctx, Request{Proof: strings.TrimSpace(p.Proofs[0]), Method: p.Method, URL: p.URL, AccessToken: token})
	if err != nil {
		return Proof{}, asResource(err)
	}
	if subtle.ConstantTimeCompare([]byte(proof.JKT), []byte(jkt)) != 1 {
		return Proof{}, ErrInvalidToken.WithHint("Invalid DPoP key binding.")
	}
	return proof, nil
}

// isToken68 reports whether s matches RFC 9110 token68.
func isToken68(s string) bool {
	i := len(s)
	for i > 0 && s[i-1] == '=' {
		i--
	}
	if i == 0 {
		return false
	}
	for _, c := range []byte(s[:i]) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
