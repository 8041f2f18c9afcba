package dpop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/ory/fosite"
)

// Binder is what the fosite handlers need from a session: a place for the
// thumbprint of the key a grant and its tokens are bound to. The value MUST
// survive Clone and storage round trips; "" means unbound.
type Binder interface {
	DPoPJKT() string
	SetDPoPJKT(jkt string)
}

// FormJKT is the PAR / authorization request parameter that binds the
// authorization code to a key (RFC 9449 §10).
const FormJKT = "dpop_jkt"

// DefaultGrantTypes are the grant types TokenHandler checks when its
// GrantTypes is empty.
var DefaultGrantTypes = []string{"authorization_code", "refresh_token", "client_credentials"}

// TokenConfig configures the token endpoint handlers.
type TokenConfig struct {
	// Validator checks proofs. Required.
	Validator *Validator
	// TokenURL is the token endpoint's absolute public URI (the expected htu). Required.
	TokenURL string
	// Optional lets a request without a proof get an unbound (Bearer) token
	// when its grant is not already bound. FAPI 2.0 deployments leave it false.
	Optional bool
	// GrantTypes are the grant types checked. Each MUST also be served by
	// another handler, since these handlers claim the request.
	// DefaultGrantTypes if empty.
	GrantTypes []string
}

// TokenHandler and TokenBinding are the two halves of DPoP at the token
// endpoint (RFC 9449 §5); fosite.TokenEndpointHandlers run in order, and
// each half needs its own place in that order.
//
// TokenHandler MUST be composed BEFORE fosite's grant and PKCE handlers.
// It validates the proof (including nonce and replay) before those
// handlers consume any state, so that a use_dpop_nonce round trip does not
// burn an authorization code. It passes the proof's key thumbprint on to
// TokenBinding inside the request form, under a name private to this
// process that no client can forge.
//
// TokenBinding MUST be composed AFTER fosite's grant handlers, so that it
// sees the session they restore. When that session is already bound (a
// code issued for a dpop_jkt, or a refresh token bound at first issue) the
// proof MUST come from that same key; otherwise the session is bound to the
// proof's key. Its response sets token_type DPoP. A code presented with a
// proof from the wrong key is burned, since fosite's PKCE handler has then
// already consumed its verifier.
//
// The session MUST implement Binder. fosite passes the *http.Request in the
// handlers' context (fosite.RequestContextKey); the proof is read from it.
type TokenHandler struct {
	c     TokenConfig
	stash string
}

// TokenBinding is the second half of TokenHandler.
type TokenBinding struct{ h *TokenHandler }

var (
	_ fosite.TokenEndpointHandler = (*TokenHandler)(nil)
	_ fosite.TokenEndpointHandler = (*TokenBinding)(nil)
)

// NewTokenHandler returns the first half of DPoP at the token endpoint;
// its Binding method returns the second.
func NewTokenHandler(c TokenConfig) (*TokenHandler, error) {
	if c.Validator == nil {
		return nil, errors.New("dpop: token handler needs a validator")
	}
	if _, err := NormalizeURI(c.TokenURL); err != nil {
		return nil, fmt.Errorf("dpop: token URL: %w", err)
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = DefaultGrantTypes
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("dpop: %w", err)
	}
	return &TokenHandler{c: c, stash: "\x00dpop-jkt-" + hex.EncodeToString(b[:])}, nil
}

// Binding returns the TokenBinding paired with h.
func (h *TokenHandler) Binding() *TokenBinding { return &TokenBinding{h: h} }

// CanSkipClientAuth implements fosite.TokenEndpointHandler; it never can.
func (h *TokenHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *TokenHandler) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	return req.GetGrantTypes().HasOneOf(h.c.GrantTypes...)
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler: it
// validates the proof, if any, and records its thumbprint for TokenBinding.
func (h *TokenHandler) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	form := req.GetRequestForm()
	form.Del(h.stash)
	r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request)
	if !ok {
		return fosite.ErrServerError.WithDebug("dpop: no *http.Request in the context")
	}
	proof, err := ProofFromHeader(r.Header)
	if err != nil {
		return err
	}
	if proof == "" {
		if !h.c.Optional {
			return invalid("A DPoP proof is required.")
		}
		return nil
	}
	p, err := h.c.Validator.Validate(ctx, Request{Proof: proof, Method: r.Method, URL: h.c.TokenURL})
	if err != nil {
		return err
	}
	form.Set(h.stash, p.JKT)
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler.
func (h *TokenHandler) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, _ fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	return nil
}

// CanSkipClientAuth implements fosite.TokenEndpointHandler; it never can.
func (b *TokenBinding) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (b *TokenBinding) CanHandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) bool {
	return b.h.CanHandleTokenEndpointRequest(ctx, req)
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler: it
// binds the session restored by the grant handler to the proof's key.
func (b *TokenBinding) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !b.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	s, ok := req.GetSession().(Binder)
	if !ok {
		return fosite.ErrServerError.WithDebug("dpop: the session cannot record a key binding")
	}
	form := req.GetRequestForm()
	jkt := form.Get(b.h.stash)
	form.Del(b.h.stash)
	bound := s.DPoPJKT()
	switch {
	case jkt == "" && bound != "":
		return invalid("This grant is bound to a DPoP key; send a DPoP proof.")
	case jkt == "" && !b.h.c.Optional:
		return invalid("A DPoP proof is required.")
	case jkt == "":
		return nil
	case bound != "" && bound != jkt:
		return invalid("The DPoP proof is signed by a key other than the one this grant is bound to.")
	}
	s.SetDPoPJKT(jkt)
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler: a
// bound token is of type DPoP (RFC 9449 §5).
func (b *TokenBinding) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !b.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	if s, ok := req.GetSession().(Binder); ok && s.DPoPJKT() != "" {
		resp.SetTokenType("DPoP")
	}
	return nil
}

// PARHandler is a fosite.PushedAuthorizeEndpointHandler for the dpop_jkt
// parameter (RFC 9449 §10). It refuses a malformed or repeated dpop_jkt.
// When the PAR request itself carries a DPoP proof (the caller put the
// *http.Request in the context under fosite.RequestContextKey) and
// Validator is set, the proof is validated against PARURL and its key
// thumbprint becomes dpop_jkt; a different dpop_jkt is refused.
//
// Compose it BEFORE fosite's PAR handler, which stores the request.
type PARHandler struct {
	// Validator checks proofs sent to the PAR endpoint; nil ignores them.
	Validator *Validator
	// PARURL is the PAR endpoint's absolute public URI.
	PARURL string
}

var _ fosite.PushedAuthorizeEndpointHandler = (*PARHandler)(nil)

// HandlePushedAuthorizeEndpointRequest implements fosite.PushedAuthorizeEndpointHandler.
func (h *PARHandler) HandlePushedAuthorizeEndpointRequest(ctx context.Context, ar fosite.AuthorizeRequester, _ fosite.PushedAuthorizeResponder) error {
	form := ar.GetRequestForm()
	jkt, err := formJKT(form[FormJKT])
	if err != nil {
		return err
	}
	r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request)
	if !ok || h.Validator == nil {
		return nil
	}
	proof, err := ProofFromHeader(r.Header)
	if err != nil || proof == "" {
		return err
	}
	p, err := h.Validator.Validate(ctx, Request{Proof: proof, Method: r.Method, URL: h.PARURL})
	if err != nil {
		return err
	}
	if jkt != "" && jkt != p.JKT {
		return invalid("dpop_jkt does not match the key of the DPoP proof.")
	}
	form.Set(FormJKT, p.JKT)
	return nil
}

// AuthorizeHandler is a fosite.AuthorizeEndpointHandler that binds the
// session behind an authorization code to the request's dpop_jkt, so the
// token request MUST then prove possession of that key. Compose it BEFORE
// fosite's authorization-code handler, which stores the session.
type AuthorizeHandler struct{}

var _ fosite.AuthorizeEndpointHandler = AuthorizeHandler{}

// HandleAuthorizeEndpointRequest implements fosite.AuthorizeEndpointHandler.
func (AuthorizeHandler) HandleAuthorizeEndpointRequest(_ context.Context, ar fosite.AuthorizeRequester, _ fosite.AuthorizeResponder) error {
	jkt, err := formJKT(ar.GetRequestForm()[FormJKT])
	if err != nil || jkt == "" {
		return err
	}
	b, ok := ar.GetSession().(Binder)
	if !ok {
		return fosite.ErrServerError.WithDebug("dpop: the session cannot record a key binding")
	}
	if cur := b.DPoPJKT(); cur != "" && cur != jkt {
		return fosite.ErrInvalidRequest.WithHint("dpop_jkt conflicts with the session's key binding.")
	}
	b.SetDPoPJKT(jkt)
	return nil
}

func formJKT(vs []string) (string, error) {
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", fosite.ErrInvalidRequest.WithHint("dpop_jkt is repeated.")
	case !ValidJKT(vs[0]):
		return "", fosite.ErrInvalidRequest.WithHint("dpop_jkt is not a base64url SHA-256 JWK thumbprint.")
	}
	return vs[0], nil
}
