package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
)

const (
	jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// MaxAssertionLifetime bounds how far in the future a client
	// assertion's exp may lie, which bounds the jti store too.
	MaxAssertionLifetime = 10 * time.Minute
	// assertionLeeway tolerates clock skew on exp, nbf and iat.
	assertionLeeway  = 10 * time.Second
	maxAssertionSize = 8 << 10
)

type authenticatedKey struct{}

// authenticateClient is fosite's ClientAuthenticationStrategy: RFC 7523
// private_key_jwt and nothing else. The assertion MUST be signed with
// ES256, PS256 or EdDSA (only the client's token_endpoint_auth_signing_alg
// when it registered one) by a key in the client's registered JWKS; iss and
// sub MUST be the client id; aud MUST name the issuer or the endpoint
// URL; exp MUST be set, in the future and at most MaxAssertionLifetime
// away; jti MUST be set and never seen before (recorded atomically until
// exp). Every failure is invalid_client.
func (p *Provider) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if c, ok := ctx.Value(authenticatedKey{}).(*client); ok {
		return c, nil
	}
	invalid := func(hint string, args ...any) error {
		return fosite.ErrInvalidClient.WithHintf(hint, args...)
	}
	if _, _, basic := r.BasicAuth(); basic || form.Get("client_secret") != "" {
		return nil, invalid("Only private_key_jwt client authentication is supported.")
	}
	if form.Get("client_assertion_type") != jwtBearerAssertion {
		return nil, invalid("client_assertion_type must be %s (private_key_jwt).", jwtBearerAssertion)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" || len(assertion) > maxAssertionSize || len(form["client_assertion"]) != 1 {
		return nil, invalid("client_assertion must be one JWT of at most %d bytes.", maxAssertionSize)
	}
	tok, err := jwt.ParseSigned(assertion)
	if err != nil || len(tok.Headers) != 1 {
		return nil, invalid("client_assertion is not a signed JWT.")
	}
	alg := tok.Headers[0].Algorithm
	if !slices.Contains(assertionAlgs, alg) {
		return nil, invalid("client_assertion must be signed with one of %v.", assertionAlgs)
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, invalid("client_assertion claims are malformed.")
	}
	id := unverified.Subject
	if fid := form.Get("client_id"); fid != "" && fid != id {
		return nil, invalid("client_id does not match the assertion's sub.")
	}
	c, err := p.store.client(ctx, broker.ClientID(id))
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, invalid("Unknown or inactive client.")
	} else if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	if want := c.GetTokenEndpointAuthSigningAlgorithm(); want != "" && alg != want {
		return nil, invalid("client_assertion must be signed with %s, the client's registered token_endpoint_auth_signing_alg.", want)
	}
	keys, err := p.clientKeys(ctx, c, false)
	if err != nil {
		return nil, err
	}
	var claims jwt.Claims
	verified := p.verify(tok, keys, &claims)
	if !verified && c.c.JWKSURI != "" {
		// The client may have rotated its keys: fetch once more.
		if keys, err = p.clientKeys(ctx, c, true); err != nil {
			return nil, err
		}
		verified = p.verify(tok, keys, &claims)
	}
	if !verified {
		return nil, invalid("client_assertion signature does not verify with the client's keys.")
	}
	now := p.now()
	if claims.Expiry == nil {
		return nil, invalid("client_assertion must have exp.")
	}
	if claims.ID == "" || len(claims.ID) > 256 {
		return nil, invalid("client_assertion must have a jti of at most 256 characters.")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: id, Subject: id, Time: now}, assertionLeeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, invalid("client_assertion has expired.")
	case err != nil:
		return nil, invalid("client_assertion claims are not valid: %s.", err)
	case claims.Expiry.Time().After(now.Add(MaxAssertionLifetime)):
		return nil, invalid("client_assertion exp must be within %s.", MaxAssertionLifetime)
	}
	audOK := claims.Audience.Contains(p.cfg.Issuer)
	for _, u := range p.endpointURLs() {
		audOK = audOK || claims.Audience.Contains(u)
	}
	if !audOK {
		return nil, invalid("client_assertion aud must be the issuer %s.", p.cfg.Issuer)
	}
	if err := p.storage.UseJTI(ctx, claims.ID, claims.Expiry.Time(), now); errors.Is(err, broker.ErrConflict) {
		return nil, invalid("client_assertion jti was already used.")
	} else if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	return c, nil
}

// clientKeys returns the client's registered public keys, fetching its
// jwks_uri through fosite's JWKS cache when it has no inline set.
func (p *Provider) clientKeys(ctx context.Context, c *client, force bool) (*jose.JSONWebKeySet, error) {
	if c.jwks != nil {
		return c.jwks, nil
	}
	if c.c.JWKSURI == "" {
		return nil, fosite.ErrInvalidClient.WithHint("The client has no registered keys.")
	}
	keys, err := p.fc.GetJWKSFetcherStrategy(ctx).Resolve(ctx, c.c.JWKSURI, force)
	if err != nil {
		return nil, fosite.ErrInvalidClient.WithHint("The client's jwks_uri could not be fetched.").WithWrap(err)
	}
	return keys, nil
}

// verify tries the keys that could have signed tok (matching kid when
// the header names one) and decodes the claims with the first that does.
func (p *Provider) verify(tok *jwt.JSONWebToken, keys *jose.JSONWebKeySet, claims *jwt.Claims) bool {
	h := tok.Headers[0]
	for _, k := range keys.Keys {
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if !k.IsPublic() {
			continue
		}
		if err := tok.Claims(k.Key, claims); err == nil {
			return true
		}
	}
	return false
}

// withAuthenticated lets fosite's endpoint handlers reuse a client this
// package already authenticated for the same request (the assertion's
// jti is single use, so it cannot be checked twice).
func withAuthenticated(ctx context.Context, c *client) context.Context {
	return context.WithValue(ctx, authenticatedKey{}, c)
}
