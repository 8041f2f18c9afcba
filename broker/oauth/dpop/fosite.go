package dpop

import (
	"context"
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

// TokenHandler is a fosite.TokenEndpointHandler that validates the DPoP
// proof of a token request and binds the issued tokens to its key (RFC 9449
// §5): the session records the thumbprint, and the response's token_type
// becomes DPoP.
//
// When the session restored by the grant handler is already bound (a code
// issued for dpop_jkt, or a refresh token bound at first issue) the proof
// MUST be signed by that same key. Compose it AFTER fosite's grant handlers;
// the session MUST implement Binder. fosite puts the *http.Request in the
// context it passes (fosite.RequestContextKey), which is where the proof is
// read from.
type TokenHandler struct {
	// Validator checks proofs. Required.
	Validator *Validator
	// TokenURL is the token endpoint's absolute public URI (the expected htu). Required.
	TokenURL string
	// Optional lets a request without a proof get an unbound (Bearer) token
	// when its grant is not already bound. FAPI 2.0 deployments leave it false.
	Optional bool
	// GrantTypes are the grant types checked. Each MUST also be served by
	// another handler, since this one claims to handle the request.
	// DefaultGrantTypes if empty.
	GrantTypes []string
}

var _ fosite.TokenEndpointHandler = (*TokenHandler)(nil)

func (h *TokenHandler) grantTypes() []string {
	if len(h.GrantTypes) == 0 {
		return DefaultGrantTypes
	}
	return h.GrantTypes
}

// CanSkipClientAuth implements fosite.TokenEndpointHandler; it never can.
func (h *TokenHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *TokenHandler) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	return req.GetGrantTypes().HasOneOf(h.grantTypes()...)
}

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *TokenHandler) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	b, ok := req.GetSession().(Binder)
	if !ok {
		return fosite.ErrServerError.WithDebug("dpop: the session cannot record a key binding")
	}
	r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request)
	if !ok {
		return fosite.ErrServerError.WithDebug("dpop: no *http.Request in the context")
	}
	proof, err := ProofFromHeader(r.Header)
	if err != nil {
		return err
	}
	bound := b.DPoPJKT()
	if proof == "" {
		if bound != "" {
			return invalid("This grant is bound to a DPoP key; send a DPoP proof.")
		}
		if !h.Optional {
			return invalid("A DPoP proof is required.")
		}
		return nil
	}
	p, err := h.Validator.Validate(ctx, Request{Proof: proof, Method: r.Method, URL: h.TokenURL})
	if err != nil {
		return err
	}
	if bound != "" && bound != p.JKT {
		return invalid("The DPoP proof is signed by a key other than the one this grant is bound to.")
	}
	b.SetDPoPJKT(p.JKT)
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler: a
// bound token is of type DPoP (RFC 9449 §5).
func (h *TokenHandler) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	if b, ok := req.GetSession().(Binder); ok && b.DPoPJKT() != "" {
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
