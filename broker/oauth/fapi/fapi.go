// Package fapi ties the FAPI 2.0 pieces fosite lacks into Steward's
// OAuth 2.0 authorization server (package oauth): rich authorization
// requests (sibling package rar) and DPoP-bound tokens (sibling package
// dpop), composed in the order fosite's handler chain needs them.
//
// This file holds what ties the two extensions into fosite: the Session
// type every flow MUST use, and Extensions, which yields the compose
// factories in the order fosite needs them.
//
// # Composition
//
//	ext := oauth.Extensions{DPoP: v, TokenURL: issuer + "/oauth/token", PARURL: issuer + "/oauth/par", RAR: opts}
//	before, after, err := ext.Factories()
//	provider := compose.Compose(cfg, store, strategy, slices.Concat(
//		before,
//		[]compose.Factory{
//			compose.OAuth2AuthorizeExplicitFactory, compose.OAuth2PKCEFactory,
//			compose.OAuth2RefreshTokenGrantFactory, compose.OAuth2ClientCredentialsGrantFactory,
//			compose.OAuth2TokenIntrospectionFactory, compose.PushedAuthorizeHandlerFactory,
//		},
//		after,
//	)...)
//
// Endpoints MUST pass sessions made by NewSession, MUST put the
// *http.Request in the context under fosite.RequestContextKey before
// NewPushedAuthorizeRequest (so a DPoP proof sent to PAR is checked), and
// on errors MUST copy dpop.NonceFromError into the DPoP-Nonce header.
// The authorization endpoint MUST call PushedOnly on the request's query
// first, and MUST record the customer's granted details with
// Session.SetAuthorizationDetails before NewAuthorizeResponse.
package fapi

import (
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"

	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

// PushedOnly refuses an authorization request that carries parameters
// besides client_id and request_uri. fosite merges the pushed request into
// the front-channel query, so without this check a parameter absent from
// the PAR request (dpop_jkt, authorization_details, scope...) could be
// added in the browser, where an attacker may tamper with it. RFC 9126 §4
// and FAPI 2.0 have the server use only the pushed parameters.
func PushedOnly(query url.Values) error {
	for k := range query {
		if k != "client_id" && k != "request_uri" {
			return fosite.ErrInvalidRequest.WithHintf("Only client_id and request_uri may accompany a pushed authorization request; got %q.", truncate(k, 32))
		}
	}
	if len(query["request_uri"]) != 1 || len(query["client_id"]) != 1 {
		return fosite.ErrInvalidRequest.WithHint("A pushed authorization request needs exactly one client_id and one request_uri.")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Session is the fosite session of every Steward grant. Besides fosite's
// fields it carries the DPoP key binding and the granted authorization
// details, both of which survive Clone and JSON round trips and are
// exposed to introspection as cnf.jkt and authorization_details.
type Session struct {
	fosite.DefaultSession
	// JKT is the RFC 7638 thumbprint of the key the tokens are bound to.
	JKT string `json:"jkt,omitempty"`
	// Details are the granted (possibly narrowed) authorization details.
	Details []rar.Detail `json:"authorization_details,omitempty"`
}

var (
	_ fosite.Session            = (*Session)(nil)
	_ fosite.ExtraClaimsSession = (*Session)(nil)
	_ dpop.Binder               = (*Session)(nil)
	_ rar.Holder                = (*Session)(nil)
)

// NewSession returns an empty session for subject (may be empty).
func NewSession(subject string) *Session {
	return &Session{DefaultSession: fosite.DefaultSession{Subject: subject}}
}

// DPoPJKT implements dpop.Binder.
func (s *Session) DPoPJKT() string { return s.JKT }

// SetDPoPJKT implements dpop.Binder.
func (s *Session) SetDPoPJKT(jkt string) { s.JKT = jkt }

// AuthorizationDetails implements rar.Holder.
func (s *Session) AuthorizationDetails() []rar.Detail { return s.Details }

// SetAuthorizationDetails implements rar.Holder.
func (s *Session) SetAuthorizationDetails(d []rar.Detail) { s.Details = cloneDetails(d) }

// Clone implements fosite.Session with a deep copy.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := &Session{JKT: s.JKT, Details: cloneDetails(s.Details)}
	if d, ok := s.DefaultSession.Clone().(*fosite.DefaultSession); ok && d != nil {
		c.DefaultSession = *d
	}
	return c
}

// GetExtraClaims implements fosite.ExtraClaimsSession. It returns a new map
// holding the session's Extra plus, for a bound session, cnf and
// token_type DPoP (RFC 9449 §6.2), and authorization_details (RFC 9396
// §9); fosite's introspection response includes them. Changing the map
// does not change the session.
func (s *Session) GetExtraClaims() map[string]any {
	out := maps.Clone(s.Extra)
	if out == nil {
		out = map[string]any{}
	}
	if s.JKT != "" {
		out["cnf"] = map[string]any{"jkt": s.JKT}
		out["token_type"] = "DPoP"
	}
	if len(s.Details) > 0 {
		out[rar.FormKey] = cloneDetails(s.Details)
	}
	return out
}

func cloneDetails(ds []rar.Detail) []rar.Detail {
	if ds == nil {
		return nil
	}
	out := make([]rar.Detail, len(ds))
	for i, d := range ds {
		d.Locations = slices.Clone(d.Locations)
		d.Actions = slices.Clone(d.Actions)
		d.Categories = slices.Clone(d.Categories)
		if d.Fields != nil {
			f := make(map[string][]string, len(d.Fields))
			for k, v := range d.Fields {
				f[k] = slices.Clone(v)
			}
			d.Fields = f
		}
		out[i] = d
	}
	return out
}

// Extensions configures the DPoP and RAR handlers for fosite's compose.
type Extensions struct {
	// DPoP validates proofs. Required.
	DPoP *dpop.Validator
	// TokenURL and PARURL are the endpoints' absolute public URIs.
	TokenURL, PARURL string
	// DPoPOptional lets token requests without a proof get Bearer tokens.
	// FAPI 2.0 deployments leave it false.
	DPoPOptional bool
	// GrantTypes are the grant types whose token requests are held to DPoP;
	// dpop.DefaultGrantTypes if empty. Each MUST be served by a composed
	// fosite handler, or its requests fail with server_error.
	GrantTypes []string
	// RAR controls authorization_details parsing.
	RAR rar.Options
	// RequireDetails refuses PAR requests without authorization_details.
	RequireDetails bool
}

func factory(h any) compose.Factory {
	return func(fosite.Configurator, any, any) any { return h }
}

// Factories returns the factories to compose before and after fosite's own.
//
// before MUST precede fosite's PAR, authorization-code, grant and PKCE
// handlers: they validate and record dpop_jkt and authorization_details
// before fosite stores the request or the code, and validate the token
// request's DPoP proof before fosite consumes the code or its verifier.
//
// after MUST follow fosite's grant handlers: they see the session those
// handlers restore, bind it to the proof's key, and add token_type DPoP
// and authorization_details to the token response.
func (e Extensions) Factories() (before, after []compose.Factory, err error) {
	th, err := dpop.NewTokenHandler(dpop.TokenConfig{Validator: e.DPoP, TokenURL: e.TokenURL, Optional: e.DPoPOptional, GrantTypes: e.GrantTypes})
	if err != nil {
		return nil, nil, fmt.Errorf("oauth extensions: %w", err)
	}
	before = []compose.Factory{
		factory(&dpop.PARHandler{Validator: e.DPoP, PARURL: e.PARURL}),
		factory(&rar.PARHandler{Options: e.RAR, Required: e.RequireDetails}),
		factory(dpop.AuthorizeHandler{}),
		factory(&rar.AuthorizeHandler{Options: e.RAR}),
		factory(th),
	}
	after = []compose.Factory{
		factory(th.Binding()),
		factory(rar.TokenHandler{}),
	}
	return before, after, nil
}
