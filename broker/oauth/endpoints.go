package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// maxFormBody bounds the body of every form endpoint.
const maxFormBody = 64 << 10

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// parPolicy is composed before fosite's PAR handler and enforces what
// fosite leaves open: response_type=code exactly, a redirect_uri equal to
// a registered one (no loopback port leniency), PKCE with S256, no
// request objects, and authorization_details that are a JSON array.
type parPolicy struct{}

var _ fosite.PushedAuthorizeEndpointHandler = parPolicy{}

func (parPolicy) HandlePushedAuthorizeEndpointRequest(_ context.Context, ar fosite.AuthorizeRequester, _ fosite.PushedAuthorizeResponder) error {
	form := ar.GetRequestForm()
	for _, k := range []string{"response_type", "redirect_uri", "code_challenge", "code_challenge_method", "state", "authorization_details", "scope"} {
		if len(form[k]) > 1 {
			return fosite.ErrInvalidRequest.WithHintf("Parameter '%s' is repeated.", k)
		}
	}
	switch {
	case !ar.GetResponseTypes().ExactOne("code"):
		return fosite.ErrUnsupportedResponseType.WithHint("Only response_type=code is supported.")
	case form.Get("request") != "" || form.Get("request_uri") != "":
		return fosite.ErrInvalidRequest.WithHint("request and request_uri are not accepted at the PAR endpoint.")
	case form.Get("redirect_uri") == "" || !slices.Contains(ar.GetClient().GetRedirectURIs(), form.Get("redirect_uri")):
		return fosite.ErrInvalidRequest.WithHint("redirect_uri must be given and equal one of the client's registered redirect URIs.")
	case form.Get("code_challenge") == "":
		return fosite.ErrInvalidRequest.WithHint("PKCE is required: send code_challenge with code_challenge_method=S256.")
	case form.Get("code_challenge_method") != "S256":
		return fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256.")
	case len(form.Get("code_challenge")) != 43:
		return fosite.ErrInvalidRequest.WithHint("code_challenge must be a base64url SHA-256 (43 characters).")
	}
	if d := form.Get("authorization_details"); d != "" {
		var details []map[string]json.RawMessage
		if len(d) > 16<<10 || json.Unmarshal([]byte(d), &details) != nil || len(details) == 0 || slices.ContainsFunc(details, func(m map[string]json.RawMessage) bool { return m == nil }) {
			return &fosite.RFC6749Error{ErrorField: "invalid_authorization_details", CodeField: http.StatusBadRequest,
				DescriptionField: "authorization_details must be a non-empty JSON array of objects (RFC 9396)."}
		}
	}
	return nil
}

// setNonce sends a DPoP-Nonce header (RFC 9449 §8) on every answer of
// the PAR and token endpoints when the server uses nonces: the nonce a
// use_dpop_nonce error carries, or else a fresh one, so a client keeps a
// current nonce from its successful requests too and need not be refused
// once per nonce rotation. err may be nil.
func (p *Provider) setNonce(w http.ResponseWriter, err error) {
	if n, ok := dpop.NonceFromError(err); ok {
		w.Header().Set(dpop.NonceHeader, n)
		return
	}
	if p.cfg.DPoP == nil {
		return
	}
	if n := p.cfg.DPoP.Nonce(); n != "" {
		w.Header().Set(dpop.NonceHeader, n)
	}
}

// logReject logs a refused request at Debug (client error) or Error.
func (p *Provider) logReject(ctx context.Context, what string, err error) {
	lvl := slog.LevelDebug
	if e := fosite.ErrorToRFC6749Error(err); e.CodeField >= 500 {
		lvl = slog.LevelError
	}
	p.cfg.Logger.LogAttrs(ctx, lvl, what+" refused", slog.Any("error", err))
}

// PAR is the pushed authorization request endpoint (RFC 9126).
func (p *Provider) PAR() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		ctx = context.WithValue(ctx, fosite.RequestContextKey, r) // for the DPoP proof
		ar, err := p.oauth.NewPushedAuthorizeRequest(ctx, r)
		if err != nil {
			p.logReject(ctx, "pushed authorization request", err)
			p.setNonce(w, err)
			p.oauth.WritePushedAuthorizeError(ctx, w, ar, err)
			return
		}
		resp, err := p.oauth.NewPushedAuthorizeResponse(ctx, ar, NewSession(""))
		if err != nil {
			p.logReject(ctx, "pushed authorization request", err)
			p.setNonce(w, err)
			p.oauth.WritePushedAuthorizeError(ctx, w, ar, err)
			return
		}
		p.setNonce(w, nil)
		p.oauth.WritePushedAuthorizeResponse(ctx, w, ar, resp)
	}), maxFormBody)
}

// Token is the token endpoint: authorization_code, refresh_token and
// client_credentials grants.
func (p *Provider) Token() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		ctx = context.WithValue(ctx, fosite.RequestContextKey, r) // for the DPoP proof
		sess := NewSession("")
		ar, err := p.oauth.NewAccessRequest(ctx, r, sess)
		if err != nil {
			p.logReject(ctx, "token request", err)
			p.setNonce(w, err)
			p.oauth.WriteAccessError(ctx, w, ar, err)
			return
		}
		if ar.GetGrantTypes().ExactOne("client_credentials") {
			c := ar.GetClient().(*client)
			sess.Subject = string(c.c.ID)
			sess.FirmID = c.c.FirmID
			if len(ar.GetRequestedScopes()) == 0 {
				for _, s := range c.GetScopes() {
					ar.GrantScope(s)
				}
			}
			for _, s := range ar.GetRequestedScopes() {
				ar.GrantScope(s)
			}
			if p.cfg.DPoP != nil && ar.GetGrantedScopes().Has(ScopeFirm) && sess.JKT == "" {
				err := dpop.ErrInvalidDPoPProof.WithHint("A client-credentials token for scope firm must be DPoP-bound: send a DPoP proof.")
				p.logReject(ctx, "token request", err)
				p.setNonce(w, err)
				p.oauth.WriteAccessError(ctx, w, ar, err)
				return
			}
		}
		resp, err := p.oauth.NewAccessResponse(ctx, ar)
		if err != nil {
			p.logReject(ctx, "token request", err)
			p.setNonce(w, err)
			p.oauth.WriteAccessError(ctx, w, ar, err)
			return
		}
		p.setNonce(w, nil)
		p.oauth.WriteAccessResponse(ctx, w, ar, resp)
	}), maxFormBody)
}

// Introspect is the token introspection endpoint (RFC 7662). The caller
// authenticates with private_key_jwt and learns only about tokens issued
// to itself; any other token is reported inactive.
func (p *Provider) Introspect() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		if r.Method != http.MethodPost {
			p.oauth.WriteIntrospectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("Use POST."))
			return
		}
		if err := r.ParseForm(); err != nil {
			p.oauth.WriteIntrospectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("The body is not a form.").WithWrap(err))
			return
		}
		caller, err := p.authenticateClient(ctx, r, r.PostForm)
		if err != nil {
			p.logReject(ctx, "introspection", err)
			p.oauth.WriteIntrospectionError(ctx, w, err)
			return
		}
		token := r.PostForm.Get("token")
		if token == "" || len(r.PostForm["token"]) != 1 {
			p.oauth.WriteIntrospectionError(ctx, w, fosite.ErrInvalidRequest.WithHint("Send exactly one token."))
			return
		}
		tu, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), NewSession(""))
		if err != nil || ar.GetClient().GetID() != caller.GetID() {
			p.oauth.WriteIntrospectionResponse(ctx, w, &fosite.IntrospectionResponse{Active: false})
			return
		}
		resp := &fosite.IntrospectionResponse{Active: true, AccessRequester: ar, TokenUse: tu}
		if tu == fosite.AccessToken {
			resp.AccessTokenType = fosite.BearerAccessToken
		}
		p.oauth.WriteIntrospectionResponse(ctx, w, resp)
	}), maxFormBody)
}

// Revoke is the token revocation endpoint (RFC 7009). Revoking a refresh
// token ends its whole grant; a client may only revoke its own tokens.
func (p *Provider) Revoke() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		err := p.oauth.NewRevocationRequest(ctx, r)
		if err != nil {
			p.logReject(ctx, "revocation", err)
		}
		p.oauth.WriteRevocationResponse(ctx, w, err)
	}), maxFormBody)
}

// TokenInfo is what a resource server learns about a live access token.
type TokenInfo struct {
	ClientID string
	Scopes   []string
	Session  *Session
	// Signature is the key the token is stored under: a resource server
	// that remembers what introspection said of a token checks, in its own
	// transaction, that the stored token is still live (see
	// store.AccessQuery.Token).
	Signature string
}

// ErrInactive means an access token is unknown, expired or revoked.
var ErrInactive = errors.New("oauth: token inactive")

// IntrospectAccessToken checks an access token for an in-process resource
// server (the data API): ErrInactive unless it is live now and its client
// is still active.
func (p *Provider) IntrospectAccessToken(ctx context.Context, token string) (TokenInfo, error) {
	_, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, NewSession(""))
	if err != nil {
		if e := fosite.ErrorToRFC6749Error(err); e.CodeField >= 500 {
			return TokenInfo{}, err
		}
		return TokenInfo{}, ErrInactive
	}
	sess, _ := ar.GetSession().(*Session)
	return TokenInfo{ClientID: ar.GetClient().GetID(), Scopes: ar.GetGrantedScopes(), Session: sess,
		Signature: p.tokens.AccessTokenSignature(ctx, token)}, nil
}

// Metadata serves the authorization server metadata (RFC 8414), also at
// the OpenID discovery path.
func (p *Provider) Metadata() http.Handler {
	iss := p.cfg.Issuer
	m := map[string]any{
		"issuer":                                                   iss,
		"authorization_endpoint":                                   iss + PathAuthorize,
		"token_endpoint":                                           iss + PathToken,
		"pushed_authorization_request_endpoint":                    iss + PathPAR,
		"require_pushed_authorization_requests":                    true,
		"introspection_endpoint":                                   iss + PathIntrospect,
		"revocation_endpoint":                                      iss + PathRevoke,
		"registration_endpoint":                                    iss + PathRegister,
		"jwks_uri":                                                 iss + PathJWKS,
		"response_types_supported":                                 []string{"code"},
		"response_modes_supported":                                 []string{"query"},
		"grant_types_supported":                                    []string{"authorization_code", "refresh_token", "client_credentials"},
		"scopes_supported":                                         []string{ScopeFirm, ScopeAuditRead},
		"code_challenge_methods_supported":                         []string{"S256"},
		"token_endpoint_auth_methods_supported":                    []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported":         assertionAlgs,
		"introspection_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"revocation_endpoint_auth_methods_supported":               []string{"private_key_jwt"},
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"authorization_response_iss_parameter_supported":           true,
		"authorization_details_types_supported":                    []string{"steward_customer_data"},
	}
	if p.cfg.DPoP != nil {
		m["dpop_signing_alg_values_supported"] = p.cfg.DPoP.Algorithms()
	}
	p.decoupledMetadata(m)
	doc, err := json.Marshal(m)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			http.Error(w, "metadata unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}

// JWKS serves Steward's public signing keys.
func (p *Provider) JWKS() http.Handler {
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{p.jwk}})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			http.Error(w, "keys unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}
