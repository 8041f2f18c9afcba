package dpop_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// session is a fake fosite session that can hold a key binding.
type session struct {
	fosite.DefaultSession
	jkt string
}

func (s *session) DPoPJKT() string       { return s.jkt }
func (s *session) SetDPoPJKT(jkt string) { s.jkt = jkt }

var _ dpop.Binder = (*session)(nil)

func tokenRequest(t *testing.T, grant string, sess fosite.Session, proof string) (context.Context, *fosite.AccessRequest) {
	t.Helper()
	ar := fosite.NewAccessRequest(sess)
	ar.GrantTypes = fosite.Arguments{grant}
	ar.Form = url.Values{"grant_type": {grant}}
	r := httptest.NewRequest("POST", tokenURL, nil)
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	return context.WithValue(t.Context(), fosite.RequestContextKey, r), ar
}

func newTokenHandler(t *testing.T, optional bool) (*dpop.TokenHandler, fixture) {
	t.Helper()
	f := newValidator(t, false)
	h, err := dpop.NewTokenHandler(dpop.TokenConfig{Validator: f.v, TokenURL: tokenURL, Optional: optional})
	if err != nil {
		t.Fatal(err)
	}
	return h, f
}

// run runs both halves as fosite would, with a grant handler in between
// that replaces the session (as the code and refresh handlers do).
func run(t *testing.T, h *dpop.TokenHandler, ctx context.Context, ar *fosite.AccessRequest, restored fosite.Session) (*fosite.AccessResponse, error) {
	t.Helper()
	if err := h.HandleTokenEndpointRequest(ctx, ar); err != nil {
		return nil, err
	}
	if restored != nil {
		ar.SetSession(restored)
	}
	b := h.Binding()
	if err := b.HandleTokenEndpointRequest(ctx, ar); err != nil {
		return nil, err
	}
	resp := fosite.NewAccessResponse()
	resp.SetTokenType("bearer")
	if err := b.PopulateTokenEndpointResponse(ctx, ar, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func TestTokenHandlers(t *testing.T) {
	k, other := newKey(t, jose.ES256), newKey(t, jose.EdDSA)
	proofBy := func(k key) string { return newProof(t, k, "POST", tokenURL, now).signedBy(t, k) }

	t.Run("binds a fresh grant", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		sess := &session{}
		ctx, ar := tokenRequest(t, "client_credentials", sess, proofBy(k))
		resp, err := run(t, h, ctx, ar, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sess.jkt != k.jkt(t) || resp.GetTokenType() != "DPoP" {
			t.Errorf("jkt %q, token_type %q", sess.jkt, resp.GetTokenType())
		}
		if len(ar.Form) != 1 {
			t.Errorf("the hand-over value was left in the form: %v", ar.Form)
		}
	})
	t.Run("keeps a bound grant on its key", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		ctx, ar := tokenRequest(t, "refresh_token", &session{}, proofBy(k))
		if _, err := run(t, h, ctx, ar, &session{jkt: k.jkt(t)}); err != nil {
			t.Fatal(err)
		}
	})
	for _, c := range []struct {
		name     string
		optional bool
		proof    string
		restored *session
		want     *fosite.RFC6749Error
	}{
		{"bound grant, other key", false, proofBy(other), &session{jkt: k.jkt(t)}, dpop.ErrInvalidDPoPProof},
		{"bound grant, no proof", true, "", &session{jkt: k.jkt(t)}, dpop.ErrInvalidDPoPProof},
		{"proof required", false, "", nil, dpop.ErrInvalidDPoPProof},
		{"invalid proof", true, "e30.e30.e30", nil, dpop.ErrInvalidDPoPProof},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newTokenHandler(t, c.optional)
			ctx, ar := tokenRequest(t, "authorization_code", &session{}, c.proof)
			var restored fosite.Session
			if c.restored != nil {
				restored = c.restored
			}
			if _, err := run(t, h, ctx, ar, restored); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	t.Run("optional and no proof gives a bearer token", func(t *testing.T) {
		h, _ := newTokenHandler(t, true)
		ctx, ar := tokenRequest(t, "client_credentials", &session{}, "")
		resp, err := run(t, h, ctx, ar, nil)
		if err != nil || resp.GetTokenType() != "bearer" {
			t.Fatalf("resp %v, err %v", resp, err)
		}
	})
	t.Run("binding alone refuses: a forged hand-over is ignored", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		ctx, ar := tokenRequest(t, "client_credentials", &session{}, "")
		ar.Form.Set("\x00dpop-jkt-00000000000000000000000000000000", k.jkt(t))
		if err := h.Binding().HandleTokenEndpointRequest(ctx, ar); !errors.Is(err, dpop.ErrInvalidDPoPProof) {
			t.Fatalf("err = %v, want invalid_dpop_proof", err)
		}
	})
	t.Run("session that cannot bind", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		ctx, ar := tokenRequest(t, "client_credentials", &fosite.DefaultSession{}, proofBy(k))
		if _, err := run(t, h, ctx, ar, nil); !errors.Is(err, fosite.ErrServerError) {
			t.Fatalf("err = %v, want server_error", err)
		}
	})
	t.Run("no http request in context", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		_, ar := tokenRequest(t, "client_credentials", &session{}, proofBy(k))
		if err := h.HandleTokenEndpointRequest(t.Context(), ar); !errors.Is(err, fosite.ErrServerError) {
			t.Fatalf("err = %v, want server_error", err)
		}
	})
	t.Run("other grant types are not claimed", func(t *testing.T) {
		h, _ := newTokenHandler(t, false)
		ctx, ar := tokenRequest(t, "password", &session{}, "")
		if h.CanHandleTokenEndpointRequest(ctx, ar) || h.Binding().CanHandleTokenEndpointRequest(ctx, ar) {
			t.Error("claims the password grant")
		}
		if err := h.HandleTokenEndpointRequest(ctx, ar); !errors.Is(err, fosite.ErrUnknownRequest) {
			t.Errorf("err = %v, want ErrUnknownRequest", err)
		}
	})
	if _, err := dpop.NewTokenHandler(dpop.TokenConfig{TokenURL: tokenURL}); err == nil {
		t.Error("NewTokenHandler accepted no validator")
	}
	if _, err := dpop.NewTokenHandler(dpop.TokenConfig{Validator: newValidator(t, false).v, TokenURL: "/token"}); err == nil {
		t.Error("NewTokenHandler accepted a relative token URL")
	}
}

func TestAuthorizeAndPARHandlers(t *testing.T) {
	k, other := newKey(t, jose.ES256), newKey(t, jose.ES256)
	authz := func(form url.Values, sess fosite.Session) error {
		ar := fosite.NewAuthorizeRequest()
		ar.Form = form
		ar.SetSession(sess)
		return dpop.AuthorizeHandler{}.HandleAuthorizeEndpointRequest(t.Context(), ar, fosite.NewAuthorizeResponse())
	}
	sess := &session{}
	if err := authz(url.Values{"dpop_jkt": {k.jkt(t)}}, sess); err != nil || sess.jkt != k.jkt(t) {
		t.Fatalf("authorize: err %v, jkt %q", err, sess.jkt)
	}
	for name, c := range map[string]struct {
		form url.Values
		sess fosite.Session
	}{
		"malformed":          {url.Values{"dpop_jkt": {"abc"}}, &session{}},
		"repeated":           {url.Values{"dpop_jkt": {k.jkt(t), k.jkt(t)}}, &session{}},
		"conflicts":          {url.Values{"dpop_jkt": {k.jkt(t)}}, &session{jkt: other.jkt(t)}},
		"session can't bind": {url.Values{"dpop_jkt": {k.jkt(t)}}, &fosite.DefaultSession{}},
	} {
		if err := authz(c.form, c.sess); err == nil {
			t.Errorf("authorize %s: accepted", name)
		}
	}

	f := newValidator(t, false)
	par := &dpop.PARHandler{Validator: f.v, PARURL: "https://as.steward.example/oauth/par"}
	parReq := func(form url.Values, proof string) (*fosite.AuthorizeRequest, error) {
		ar := fosite.NewAuthorizeRequest()
		ar.Form = form
		r := httptest.NewRequest("POST", "/oauth/par", nil)
		if proof != "" {
			r.Header.Set("DPoP", proof)
		}
		ctx := context.WithValue(t.Context(), fosite.RequestContextKey, r)
		return ar, par.HandlePushedAuthorizeEndpointRequest(ctx, ar, &fosite.PushedAuthorizeResponse{})
	}
	parProof := func(k key) string {
		return newProof(t, k, "POST", "https://as.steward.example/oauth/par", now).signedBy(t, k)
	}
	if ar, err := parReq(url.Values{}, parProof(k)); err != nil || ar.Form.Get("dpop_jkt") != k.jkt(t) {
		t.Errorf("PAR with a proof: err %v, dpop_jkt %q", err, ar.Form.Get("dpop_jkt"))
	}
	if _, err := parReq(url.Values{"dpop_jkt": {other.jkt(t)}}, parProof(k)); !errors.Is(err, dpop.ErrInvalidDPoPProof) {
		t.Errorf("PAR with a mismatched dpop_jkt: %v", err)
	}
	if _, err := parReq(url.Values{"dpop_jkt": {"x"}}, ""); !errors.Is(err, fosite.ErrInvalidRequest) {
		t.Errorf("PAR with a malformed dpop_jkt: %v", err)
	}
	if _, err := parReq(url.Values{}, newProof(t, k, "POST", tokenURL, now).signedBy(t, k)); !errors.Is(err, dpop.ErrInvalidDPoPProof) {
		t.Errorf("PAR with a proof for another URI: %v", err)
	}
}
