// Package oauth is Steward's OAuth 2.0 authorization server, composed
// from fosite the FAPI 2.0 way, on Steward's own SQL storage.
//
// # Profile
//
//   - Pushed authorization requests are required (RFC 9126); the
//     authorization endpoint accepts nothing else.
//   - PKCE with S256 is required (RFC 7636); plain is refused.
//   - response_type=code only, query response mode, redirect URIs matched
//     exactly against the registered ones, iss in every authorization
//     response (RFC 9207).
//   - Clients authenticate with private_key_jwt only (RFC 7523), signed
//     with ES256, PS256 or EdDSA (only the client's registered
//     token_endpoint_auth_signing_alg, if it has one); a jti is accepted
//     once. A jwks_uri is fetched over https only, never from loopback,
//     private, link-local, shared, multicast or unspecified addresses
//     (checked as each connection is dialled), bounded in size and time.
//   - Codes are short-lived and single use: replaying one revokes every
//     token issued from it. Refresh tokens rotate on every use; presenting
//     a used one revokes the whole grant.
//   - Client credentials for firm-level APIs (scope "firm") and for
//     regulators' read-only audit access (scope "audit:read").
//   - Access and refresh tokens are opaque HMAC-SHA256 tokens whose state
//     lives in the database (only a signature of each is stored), so
//     revocation, consent withdrawal and firm suspension take effect on
//     the very next request; resource servers introspect (RFC 7662).
//     Every code and token of an authorization-code grant is stored with
//     its consent, and ends in the transaction that ends the consent.
//   - With Config.DPoP set, authorization-code and refresh tokens are
//     DPoP-bound (RFC 9449), by dpop_jkt or a proof at PAR or the token
//     endpoint, and authorization_details are validated strictly (RFC 9396);
//     see package fapi. A client-credentials token is bound when the
//     request carries a proof, and MUST be bound for scope "firm" (the
//     firm-level Data API refuses unbound tokens); regulators'
//     "audit:read" tokens may stay Bearer. Accepted proofs are remembered
//     in the database (ReplayCache), so no replica accepts one twice, and
//     the PAR and token endpoints send a fresh DPoP-Nonce on every answer.
//   - Failed customer sign-ins are throttled per handle and per client
//     address, counted in the database so the limit holds across replicas.
//
// # Use
//
//	p, err := oauth.New(oauth.Config{Issuer: "https://steward.example", SigningKey: key, Secret: secret,
//		Templates: web.Templates, Store: s}, s.OAuth(), consentFunc)
//	r.Mount("/", p.Handler())                 // public endpoints
//	r.Mount("/v1/admin/oauth", p.Operator())  // behind operator authentication
package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauth/fapi"
	"github.com/stewardhq/steward/broker/oauth/rar"
	"github.com/stewardhq/steward/broker/store"
)

// Defaults for Config's zero values.
const (
	DefaultAccessTokenLifespan        = 10 * time.Minute
	DefaultRefreshTokenLifespan       = 30 * 24 * time.Hour
	DefaultAuthorizeCodeLifespan      = time.Minute
	DefaultPARLifespan                = 90 * time.Second
	DefaultInteractionLifespan        = 15 * time.Minute
	DefaultLoginLifespan              = 30 * time.Minute
	DefaultInitialAccessTokenLifespan = 30 * 24 * time.Hour
	// MinSecretLength is the shortest Config.Secret accepted.
	MinSecretLength = 32
)

// Endpoint paths, relative to the issuer.
const (
	PathMetadata     = "/.well-known/oauth-authorization-server"
	PathOpenIDConfig = "/.well-known/openid-configuration"
	PathJWKS         = "/jwks"
	PathPAR          = "/oauth/par"
	PathAuthorize    = "/oauth/authorize"
	PathLogin        = "/oauth/login"
	PathConsent      = "/oauth/consent"
	PathToken        = "/oauth/token"
	PathIntrospect   = "/oauth/introspect"
	PathRevoke       = "/oauth/revoke"
	PathRegister     = "/oauth/register"
)

// Config configures the authorization server.
type Config struct {
	// Issuer is the server's issuer identifier: an https URL without
	// query, fragment or trailing slash (http only for loopback hosts, in
	// development). Endpoints live at Issuer + Path*. Required.
	Issuer string
	// SigningKey is Steward's signing key (Ed25519, ECDSA P-256 or RSA),
	// published at /jwks. Required.
	SigningKey crypto.Signer
	// SigningKeyID is the key's "kid"; empty means its RFC 7638 thumbprint.
	SigningKeyID string
	// Secret keys the HMAC of opaque tokens and the login cookie. At
	// least MinSecretLength bytes. Required; keep it across restarts and
	// identical on every replica.
	Secret []byte
	// Store is the broker's database (clients, firms, customers,
	// pseudonyms). Required.
	Store store.Store
	// Templates holds login.html and consent.html (web.Templates). Required.
	Templates fs.FS
	// Logger receives errors (rejections at Debug). Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Lifespans; zero means the Default* constant.
	AccessTokenLifespan, RefreshTokenLifespan, AuthorizeCodeLifespan, PARLifespan time.Duration
	InitialAccessTokenLifespan                                                    time.Duration
	// DPoP validates DPoP proofs (RFC 9449) at the PAR and token endpoints;
	// nil turns DPoP (and strict RAR parsing) off and issues Bearer tokens.
	DPoP *dpop.Validator
	// DPoPOptional lets authorization-code and refresh token requests
	// without a proof get Bearer tokens when their grant is unbound.
	// FAPI 2.0 deployments leave it false.
	DPoPOptional bool
	// Decoupled enables decoupled consent requests (OpenID CIBA, see
	// backchannel.go); the zero value leaves them off.
	Decoupled Decoupled
	// LoginMaxFailures and LoginMaxFailuresPerIP are how many failed
	// customer sign-ins one handle and one client address (IPv6: one /64)
	// may have within LoginFailureWindow; beyond either, the login page
	// answers 429 with Retry-After without checking the password. Zero
	// means the Default* constant.
	LoginMaxFailures, LoginMaxFailuresPerIP int
	LoginFailureWindow                      time.Duration
	// ClientIP returns the address a request comes from, for login
	// throttling; nil means the connection's peer. Behind a proxy, return
	// the address the proxy reports (and only trust a proxy you run).
	ClientIP func(*http.Request) string
	// JWKSAllowLoopback lets clients' jwks_uri reach loopback addresses,
	// for tests and the demo. Never set it in production: jwks_uri
	// fetches refuse loopback, private, link-local, shared (CGNAT),
	// multicast and unspecified addresses, checked as they are dialled.
	JWKSAllowLoopback bool
	// JWKSRootCAs verifies jwks_uri servers' certificates; nil means the
	// system roots.
	JWKSRootCAs *x509.CertPool
}

func (c *Config) validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "" || err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.Issuer, "/"):
		return fmt.Errorf("oauth: Config.Issuer %q must be an absolute URL without query, fragment or trailing slash", c.Issuer)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return fmt.Errorf("oauth: Config.Issuer %q must use https", c.Issuer)
	case c.SigningKey == nil:
		return errors.New("oauth: Config.SigningKey is required")
	case len(c.Secret) < MinSecretLength:
		return fmt.Errorf("oauth: Config.Secret must be at least %d bytes", MinSecretLength)
	case c.Store == nil:
		return errors.New("oauth: Config.Store is required")
	case c.Templates == nil:
		return errors.New("oauth: Config.Templates is required")
	}
	switch c.SigningKey.Public().(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return fmt.Errorf("oauth: Config.SigningKey is a %T; use Ed25519, ECDSA or RSA", c.SigningKey)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AccessTokenLifespan, DefaultAccessTokenLifespan)
	def(&c.RefreshTokenLifespan, DefaultRefreshTokenLifespan)
	def(&c.AuthorizeCodeLifespan, DefaultAuthorizeCodeLifespan)
	def(&c.PARLifespan, DefaultPARLifespan)
	def(&c.InitialAccessTokenLifespan, DefaultInitialAccessTokenLifespan)
	def(&c.LoginFailureWindow, DefaultLoginFailureWindow)
	if c.LoginMaxFailures <= 0 {
		c.LoginMaxFailures = DefaultLoginMaxFailures
	}
	if c.LoginMaxFailuresPerIP <= 0 {
		c.LoginMaxFailuresPerIP = DefaultLoginMaxFailuresPerIP
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Provider is the composed authorization server.
type Provider struct {
	cfg       Config
	fc        *fosite.Config
	oauth     fosite.OAuth2Provider
	tokens    *oauth2.HMACSHAStrategy
	store     *fositeStore
	storage   Storage
	consent   ConsentFunc
	jwk       jose.JSONWebKey
	cookieKey []byte
	pages     *template.Template
	account   *template.Template
	// signingIn serializes sign-in attempts per handle (see signIn).
	signingIn keyedMutex
}

// New composes the authorization server on storage (the OAuth tables)
// and cfg.Store (the broker's), asking consent whether a customer's
// answer becomes a grant.
func New(cfg Config, storage Storage, consent ConsentFunc) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if storage == nil || consent == nil {
		return nil, errors.New("oauth: storage and consent are required")
	}
	tokenSecret, err := hkdf.Key(sha256.New, cfg.Secret, nil, "steward oauth token hmac", 32)
	if err != nil {
		return nil, err
	}
	cookieKey, err := hkdf.Key(sha256.New, cfg.Secret, nil, "steward oauth login cookie", 32)
	if err != nil {
		return nil, err
	}
	pages, err := template.ParseFS(cfg.Templates, "login.html", "consent.html")
	if err != nil {
		return nil, fmt.Errorf("oauth: templates: %w", err)
	}
	p := &Provider{cfg: cfg, storage: storage, consent: consent, cookieKey: cookieKey, pages: pages}
	if err := p.initDecoupled(); err != nil {
		return nil, err
	}
	p.jwk = jose.JSONWebKey{Key: cfg.SigningKey.Public(), KeyID: cfg.SigningKeyID, Use: "sig", Algorithm: signingAlg(cfg.SigningKey)}
	if p.jwk.KeyID == "" {
		tp, err := p.jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("oauth: signing key thumbprint: %w", err)
		}
		p.jwk.KeyID = b64(tp)
	}
	p.store = &fositeStore{s: storage, db: cfg.Store, now: cfg.Now, ttl: lifespans{
		code: cfg.AuthorizeCodeLifespan, access: cfg.AccessTokenLifespan, refresh: cfg.RefreshTokenLifespan, par: cfg.PARLifespan,
	}}
	p.fc = &fosite.Config{
		AccessTokenLifespan:             cfg.AccessTokenLifespan,
		RefreshTokenLifespan:            cfg.RefreshTokenLifespan,
		AuthorizeCodeLifespan:           cfg.AuthorizeCodeLifespan,
		ScopeStrategy:                   fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:        fosite.ExactAudienceMatchingStrategy,
		EnforcePKCE:                     true,
		EnablePKCEPlainChallengeMethod:  false,
		TokenURL:                        cfg.Issuer + PathToken,
		AccessTokenIssuer:               cfg.Issuer,
		IDTokenIssuer:                   cfg.Issuer,
		GlobalSecret:                    tokenSecret,
		TokenEntropy:                    32,
		RefreshTokenScopes:              []string{},
		ClientAuthenticationStrategy:    p.authenticateClient,
		RedirectSecureChecker:           func(_ context.Context, u *url.URL) bool { return redirectSecure(u) },
		PushedAuthorizeRequestURIPrefix: "urn:ietf:params:oauth:request_uri:",
		PushedAuthorizeContextLifespan:  cfg.PARLifespan,
		IsPushedAuthorizeEnforced:       true,
		SendDebugMessagesToClients:      false,
		JWKSFetcherStrategy:             newJWKSFetcher(cfg.JWKSAllowLoopback, cfg.JWKSRootCAs, cfg.Now),
	}
	// fapi's before handlers check dpop_jkt, authorization_details and the
	// token request's proof before fosite's handlers store or consume
	// anything; its after handlers bind the session fosite restored.
	var before, after []compose.Factory
	if cfg.DPoP != nil {
		ext := fapi.Extensions{DPoP: cfg.DPoP, TokenURL: cfg.Issuer + PathToken, PARURL: cfg.Issuer + PathPAR,
			DPoPOptional: cfg.DPoPOptional, GrantTypes: []string{"authorization_code", "refresh_token", GrantTypeCIBA}, RAR: rar.Options{}}
		if before, after, err = ext.Factories(); err != nil {
			return nil, fmt.Errorf("oauth: %w", err)
		}
		// Client credentials: a proof, when sent, binds the token; the
		// token endpoint then refuses an unbound token for scope firm.
		cc, err := dpop.NewTokenHandler(dpop.TokenConfig{Validator: cfg.DPoP, TokenURL: cfg.Issuer + PathToken, Optional: true,
			GrantTypes: []string{"client_credentials"}})
		if err != nil {
			return nil, fmt.Errorf("oauth: %w", err)
		}
		before = append(before, func(fosite.Configurator, any, any) any { return ccProof{cc} })
		after = append(after, func(fosite.Configurator, any, any) any { return ccBinding{cc.Binding()} })
	}
	p.tokens = compose.NewOAuth2HMACStrategy(p.fc)
	p.oauth = compose.Compose(p.fc, p.store, p.tokens, slices.Concat(
		[]compose.Factory{func(fosite.Configurator, any, any) any { return parPolicy{} }},
		before,
		[]compose.Factory{
			compose.OAuth2AuthorizeExplicitFactory,
			compose.OAuth2PKCEFactory,
			compose.OAuth2RefreshTokenGrantFactory,
			compose.OAuth2ClientCredentialsGrantFactory,
			compose.OAuth2TokenIntrospectionFactory,
			compose.OAuth2TokenRevocationFactory,
			compose.PushedAuthorizeHandlerFactory,
			func(_ fosite.Configurator, _, strategy any) any {
				return &cibaGrant{p: p, strategy: strategy.(oauth2.CoreStrategy)}
			},
		},
		after,
	)...)
	return p, nil
}

// ccProof and ccBinding are the DPoP token handlers of client-credentials
// requests. fosite's compose keeps one handler per Go type, so these
// must not be *dpop.TokenHandler and *dpop.TokenBinding, which serve the
// authorization-code and refresh grants.
type (
	ccProof   struct{ *dpop.TokenHandler }
	ccBinding struct{ *dpop.TokenBinding }
)

func signingAlg(k crypto.Signer) string {
	switch k.Public().(type) {
	case ed25519.PublicKey:
		return string(jose.EdDSA)
	case *ecdsa.PublicKey:
		return string(jose.ES256)
	}
	return string(jose.PS256)
}

func (p *Provider) now() time.Time { return p.cfg.Now().UTC() }

func (p *Provider) endpointURLs() []string {
	return []string{p.cfg.Issuer + PathToken, p.cfg.Issuer + PathPAR, p.cfg.Issuer + PathIntrospect, p.cfg.Issuer + PathRevoke, p.cfg.Issuer + PathBackchannel}
}

// redirectSecure allows https redirect URIs, and http ones only on
// loopback hosts (RFC 8252 § 7.3) for development.
func redirectSecure(u *url.URL) bool {
	switch {
	case u == nil || u.Fragment != "" || u.User != nil:
		return false
	case u.Scheme == "https":
		return u.Host != ""
	case u.Scheme == "http":
		return isLoopback(u.Hostname())
	}
	return false
}

// Cleanup deletes expired codes, tokens, requests, jtis, DPoP proofs (of
// a ReplayCache on the same Storage), login failures that left the
// throttling window and initial access tokens. Run it periodically
// (every few minutes).
func (p *Provider) Cleanup(ctx context.Context) (int64, error) {
	n, err := p.storage.Cleanup(ctx, p.now())
	if err != nil {
		return n, err
	}
	m, err := p.cleanupDecoupled(ctx)
	return n + m, err
}

// Handler returns the public endpoints (discovery, JWKS, PAR, authorize,
// login, consent, token, introspection, revocation, registration) on one
// mux, at the Path* constants.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetadata, p.Metadata())
	mux.Handle("GET "+PathOpenIDConfig, p.Metadata())
	mux.Handle("GET "+PathJWKS, p.JWKS())
	mux.Handle(PathPAR, p.PAR())
	mux.Handle(PathAuthorize, p.Authorize())
	mux.Handle(PathLogin, p.Login())
	mux.Handle(PathConsent, p.Consent())
	mux.Handle(PathToken, p.Token())
	mux.Handle(PathIntrospect, p.Introspect())
	mux.Handle(PathRevoke, p.Revoke())
	mux.Handle(PathRegister, p.Register())
	p.decoupledRoutes(mux)
	return mux
}
