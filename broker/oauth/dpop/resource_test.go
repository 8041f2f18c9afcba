package dpop_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

const resourceURL = "https://api.steward.example/v1/data"

// TestCheckBinding covers RFC 9449 §7: a DPoP-bound token MUST be refused
// as Bearer, without a proof, with a proof from another key, with a
// replayed proof, and with a proof for another token.
func TestCheckBinding(t *testing.T) {
	const token = "at-123.abc"
	k := newKey(t, jose.ES256)
	other := newKey(t, jose.EdDSA)
	good := func(t *testing.T) string {
		return goJoseProof(t, k, "GET", resourceURL, now, map[string]any{"ath": ath(token)})
	}
	cases := []struct {
		name   string
		pres   func(t *testing.T) dpop.Presentation
		jkt    string
		want   error
		hint   string
		replay bool
	}{
		{name: "as Bearer", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "Bearer " + token, Proofs: []string{good(t)}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrInvalidToken, hint: "DPoP scheme"},
		{name: "no token", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Proofs: []string{good(t)}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrInvalidToken, hint: "No access token"},
		{name: "no proof", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "DPoP " + token, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrResourceInvalidProof, hint: "No DPoP proof"},
		{name: "two proofs", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{good(t), good(t)}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrResourceInvalidProof, hint: "More than one"},
		{name: "proof from another key", pres: func(t *testing.T) dpop.Presentation {
			p := goJoseProof(t, other, "GET", resourceURL, now, map[string]any{"ath": ath(token)})
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{p}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrInvalidToken, hint: "key binding"},
		{name: "proof for another token", pres: func(t *testing.T) dpop.Presentation {
			p := goJoseProof(t, k, "GET", resourceURL, now, map[string]any{"ath": ath("other-token")})
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{p}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrResourceInvalidProof, hint: "ath"},
		{name: "proof for another method", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{good(t)}, Method: "DELETE", URL: resourceURL}
		}, want: dpop.ErrResourceInvalidProof, hint: "htm"},
		{name: "unbound token", jkt: "-", pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{good(t)}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrInvalidToken, hint: "not DPoP-bound"},
		{name: "replayed proof", replay: true, pres: func(t *testing.T) dpop.Presentation {
			return dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{good(t)}, Method: "GET", URL: resourceURL}
		}, want: dpop.ErrResourceInvalidProof, hint: "used before"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newValidator(t, false)
			jkt := k.jkt(t)
			if c.jkt == "-" {
				jkt = ""
			}
			p := c.pres(t)
			if c.replay {
				if _, err := f.v.CheckBinding(t.Context(), p, jkt); err != nil {
					t.Fatalf("first use: %v", err)
				}
			}
			_, err := f.v.CheckBinding(t.Context(), p, jkt)
			checkErr(t, err, c.want, c.hint)
			if code := errStatus(err); code != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", code)
			}
		})
	}
	t.Run("accepted", func(t *testing.T) {
		f := newValidator(t, false)
		r := httptest.NewRequest("GET", "/v1/data?x=1", nil)
		r.Header.Set("Authorization", "DPoP "+token)
		r.Header.Set("DPoP", good(t))
		p, err := f.v.CheckBinding(t.Context(), dpop.PresentationFrom(r, resourceURL), k.jkt(t))
		if err != nil {
			t.Fatalf("CheckBinding: %v", err)
		}
		if p.JKT != k.jkt(t) {
			t.Errorf("JKT = %q", p.JKT)
		}
	})
	t.Run("nonce", func(t *testing.T) {
		f := newValidator(t, true)
		p := dpop.Presentation{Authorization: "DPoP " + token, Proofs: []string{good(t)}, Method: "GET", URL: resourceURL}
		_, err := f.v.CheckBinding(t.Context(), p, k.jkt(t))
		checkErr(t, err, dpop.ErrResourceUseNonce, "nonce")
		if _, ok := dpop.NonceFromError(err); !ok {
			t.Error("no nonce in the resource server's use_dpop_nonce error")
		}
	})
}

func errStatus(err error) int {
	var e interface{ StatusCode() int }
	if errors.As(err, &e) {
		return e.StatusCode()
	}
	return 0
}

func TestWWWAuthenticate(t *testing.T) {
	algs := []string{"ES256", "EdDSA"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, `DPoP algs="ES256 EdDSA"`},
		{dpop.ErrInvalidToken.WithHint("Invalid DPoP key binding."),
			`DPoP error="invalid_token", error_description="The access token is missing, invalid, or not bound to the presented DPoP key.", algs="ES256 EdDSA"`},
		{dpop.ErrResourceUseNonce, `DPoP error="use_dpop_nonce", error_description="The resource server requires a nonce in the DPoP proof.", algs="ES256 EdDSA"`},
		{errors.New("boom"), `DPoP error="invalid_token", error_description="The error is unrecognizable", algs="ES256 EdDSA"`},
	} {
		if diff := cmp.Diff(c.want, dpop.WWWAuthenticate(c.err, algs)); diff != "" {
			t.Errorf("WWWAuthenticate(%v) (-want +got):\n%s", c.err, diff)
		}
	}
}

func TestAccessToken(t *testing.T) {
	for _, c := range []struct {
		in, token, scheme string
		ok                bool
	}{
		{"DPoP abc.def", "abc.def", "DPoP", true},
		{"Bearer abc", "abc", "Bearer", true},
		{"DPoP", "", "", false},
		{"", "", "", false},
		{"DPoP a b", "", "", false},
		{"DPoP abc==", "abc==", "DPoP", true},
	} {
		tok, scheme, err := dpop.AccessToken(c.in)
		if (err == nil) != c.ok || tok != c.token || scheme != c.scheme {
			t.Errorf("AccessToken(%q) = %q, %q, %v", c.in, tok, scheme, err)
		}
	}
}
