package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
)

// ClientMetadata is the RFC 7591 client metadata Steward accepts.
type ClientMetadata struct {
	ClientName   string   `json:"client_name"`
	RedirectURIs []string `json:"redirect_uris"`
	// JWKS (inline RFC 7517 set of public keys) or JWKSURI (https), not both.
	JWKS                        json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                     string          `json:"jwks_uri,omitempty"`
	TokenEndpointAuthMethod     string          `json:"token_endpoint_auth_method,omitempty"`
	TokenEndpointAuthSigningAlg string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	GrantTypes                  []string        `json:"grant_types,omitempty"`
	ResponseTypes               []string        `json:"response_types,omitempty"`
}

// registered is the RFC 7591 registration response.
type registered struct {
	ClientID         broker.ClientID `json:"client_id"`
	ClientIDIssuedAt int64           `json:"client_id_issued_at"`
	FirmID           broker.FirmID   `json:"firm_id,omitempty"`
	ClientMetadata
}

const (
	maxRedirectURIs    = 10
	maxRegistrationLen = 64 << 10
)

func metadataError(code, format string, args ...any) error {
	return &fosite.RFC6749Error{ErrorField: code, CodeField: http.StatusBadRequest, DescriptionField: fmt.Sprintf(format, args...)}
}

// validate checks m and fills its defaults; regulator clients have no
// redirect URIs and use client credentials only.
func (m *ClientMetadata) validate(regulator bool) error {
	const bad = "invalid_client_metadata"
	if n := utf8.RuneCountInString(m.ClientName); n < 1 || n > 200 || strings.TrimSpace(m.ClientName) != m.ClientName {
		return metadataError(bad, "client_name must be 1-200 characters.")
	}
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = "private_key_jwt"
	}
	if m.TokenEndpointAuthMethod != "private_key_jwt" {
		return metadataError(bad, "token_endpoint_auth_method must be private_key_jwt.")
	}
	if m.TokenEndpointAuthSigningAlg != "" && !slices.Contains(assertionAlgs, m.TokenEndpointAuthSigningAlg) {
		return metadataError(bad, "token_endpoint_auth_signing_alg must be one of %v.", assertionAlgs)
	}
	grants, responses := []string{"authorization_code", "refresh_token", "client_credentials"}, []string{"code"}
	if regulator {
		grants, responses = []string{"client_credentials"}, []string{}
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = grants
	}
	if m.ResponseTypes == nil {
		m.ResponseTypes = responses
	}
	for _, g := range m.GrantTypes {
		if !slices.Contains(grants, g) {
			return metadataError(bad, "grant_type %q is not supported.", g)
		}
	}
	for _, rt := range m.ResponseTypes {
		if !slices.Contains(responses, rt) {
			return metadataError(bad, "response_type %q is not supported.", rt)
		}
	}
	if regulator && len(m.RedirectURIs) > 0 {
		return metadataError("invalid_redirect_uri", "Regulator clients have no redirect URIs.")
	}
	if !regulator && (len(m.RedirectURIs) == 0 || len(m.RedirectURIs) > maxRedirectURIs) {
		return metadataError("invalid_redirect_uri", "Register 1 to %d redirect_uris.", maxRedirectURIs)
	}
	for _, s := range m.RedirectURIs {
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() || len(s) > 2000 || !redirectSecure(u) || u.RawQuery != "" && strings.Contains(u.RawQuery, "code=") {
			return metadataError("invalid_redirect_uri", "redirect_uri %q must be an absolute https URL (http only on 127.0.0.1, [::1] or localhost) without fragment.", s)
		}
	}
	switch {
	case (len(m.JWKS) > 0) == (m.JWKSURI != ""):
		return metadataError(bad, "Register exactly one of jwks and jwks_uri.")
	case m.JWKSURI != "":
		u, err := url.Parse(m.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
			return metadataError(bad, "jwks_uri must be an https URL.")
		}
	default:
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(m.JWKS, &set); err != nil || len(set.Keys) == 0 || len(set.Keys) > 10 {
			return metadataError(bad, "jwks must be a JSON Web Key Set of 1 to 10 keys.")
		}
		for _, k := range set.Keys {
			if !k.Valid() || !k.IsPublic() {
				return metadataError(bad, "jwks must hold valid public keys only.")
			}
			if k.Use != "" && k.Use != "sig" {
				return metadataError(bad, "jwks keys must be signing keys.")
			}
		}
		canon, err := json.Marshal(set)
		if err != nil {
			return metadataError(bad, "jwks cannot be stored.")
		}
		m.JWKS = canon
	}
	return nil
}

func (m ClientMetadata) client(firm broker.FirmID, now time.Time) broker.Client {
	return broker.Client{ID: broker.NewClientID(), FirmID: firm, Name: m.ClientName, RedirectURIs: m.RedirectURIs,
		JWKS: m.JWKS, JWKSURI: m.JWKSURI, TokenEndpointAuthSigningAlg: m.TokenEndpointAuthSigningAlg, Status: broker.ClientActive, CreatedAt: now}
}

// NewInitialAccessToken draws an RFC 7591 initial access token and returns
// it with the hash that storage keeps (CreateInitialAccessToken); the
// token itself is shown once, to the firm, and never stored.
func NewInitialAccessToken() (token, hash string) {
	token = "stia_" + randomToken()
	return token, hashToken(token)
}

// HashInitialAccessToken is the hash storage keeps for an initial access token.
func HashInitialAccessToken(token string) string { return hashToken(token) }

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeRegistrationError renders an RFC 7591 error through fosite.
func (p *Provider) writeRegistrationError(w http.ResponseWriter, r *http.Request, err error) {
	p.logReject(r.Context(), "client registration", err)
	p.oauth.WriteAccessError(r.Context(), w, fosite.NewAccessRequest(nil), err)
}

// Register is the dynamic client registration endpoint (RFC 7591). The
// caller presents, as a Bearer token, an initial access token the
// operator minted for an approved firm; the client belongs to that firm.
func (p *Provider) Register() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			p.writeRegistrationError(w, r, fosite.ErrInvalidClient.WithHint("Present an initial access token as a Bearer token."))
			return
		}
		firmID, err := p.storage.InitialAccessTokenFirm(ctx, hashToken(tok), p.now())
		if errors.Is(err, broker.ErrNotFound) {
			p.writeRegistrationError(w, r, fosite.ErrInvalidClient.WithHint("The initial access token is unknown or expired."))
			return
		} else if err != nil {
			p.writeRegistrationError(w, r, fosite.ErrServerError.WithWrap(err))
			return
		}
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			p.writeRegistrationError(w, r, metadataError("invalid_client_metadata", "Send the metadata as application/json."))
			return
		}
		var m ClientMetadata
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil || dec.More() {
			p.writeRegistrationError(w, r, metadataError("invalid_client_metadata", "The body is not one JSON object of known client metadata."))
			return
		}
		if err := m.validate(false); err != nil {
			p.writeRegistrationError(w, r, err)
			return
		}
		now := p.now()
		c := m.client(firmID, now)
		err = p.cfg.Store.Update(ctx, func(tx store.Tx) error {
			f, err := tx.GetFirm(ctx, firmID)
			if err != nil {
				return err
			}
			if f.Status != broker.FirmApproved {
				return fmt.Errorf("%w: firm %s is %s", broker.ErrForbidden, f.ID, f.Status)
			}
			return tx.CreateClient(ctx, c)
		})
		if errors.Is(err, broker.ErrForbidden) {
			p.writeRegistrationError(w, r, fosite.ErrAccessDenied.WithHint("The firm is not approved."))
			return
		} else if err != nil {
			p.writeRegistrationError(w, r, fosite.ErrServerError.WithWrap(err))
			return
		}
		writeJSON(w, http.StatusCreated, registered{ClientID: c.ID, ClientIDIssuedAt: now.Unix(), FirmID: firmID, ClientMetadata: m})
	}), maxRegistrationLen)
}

// Operator returns the operator's client administration routes, to be
// mounted behind operator authentication (e.g. at /v1/admin/oauth):
//
//	POST   /firms/{id}/initial-access-tokens  mint a registration token for an approved firm
//	POST   /firms/{id}/clients                register a client for a firm
//	POST   /regulators/{id}/clients           register a regulator's client (audit:read)
//	POST   /clients/{id}/suspend              suspend a client (its tokens stop working)
//	POST   /clients/{id}/activate             activate it again
//	DELETE /clients/{id}                      delete a client and everything issued to it
func (p *Provider) Operator() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /firms/{id}/initial-access-tokens", p.mintInitialAccessToken)
	mux.HandleFunc("POST /firms/{id}/clients", p.operatorRegister(false))
	mux.HandleFunc("POST /regulators/{id}/clients", p.operatorRegister(true))
	mux.HandleFunc("POST /clients/{id}/suspend", p.setClientStatus(broker.ClientSuspended))
	mux.HandleFunc("POST /clients/{id}/activate", p.setClientStatus(broker.ClientActive))
	mux.HandleFunc("DELETE /clients/{id}", p.deleteClient)
	return http.MaxBytesHandler(mux, maxRegistrationLen)
}

func (p *Provider) operatorError(w http.ResponseWriter, r *http.Request, err error) {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		err = fmt.Errorf("%w: %s", broker.ErrInvalid, rfc.DescriptionField)
	}
	httpapi.WriteError(w, r, p.cfg.Logger, err)
}

func (p *Provider) mintInitialAccessToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	firm, err := broker.ParseFirmID(r.PathValue("id"))
	if err != nil {
		p.operatorError(w, r, err)
		return
	}
	var f broker.Firm
	err = p.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		f, err = tx.GetFirm(ctx, firm)
		return err
	})
	if err == nil && f.Status != broker.FirmApproved {
		err = fmt.Errorf("%w: firm %s is %s", broker.ErrForbidden, f.ID, f.Status)
	}
	if err != nil {
		p.operatorError(w, r, err)
		return
	}
	tok, hash := NewInitialAccessToken()
	now := p.now()
	exp := now.Add(p.cfg.InitialAccessTokenLifespan)
	if err := p.storage.CreateInitialAccessToken(ctx, hash, firm, now, exp); err != nil {
		p.operatorError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"initial_access_token": tok, "firm_id": firm, "expires_at": exp})
}

func (p *Provider) operatorRegister(regulator bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var m ClientMetadata
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			p.operatorError(w, r, fmt.Errorf("%w: body: %w", broker.ErrInvalid, err))
			return
		}
		if err := m.validate(regulator); err != nil {
			p.operatorError(w, r, err)
			return
		}
		now := p.now()
		var out registered
		if regulator {
			reg := broker.RegulatorID(r.PathValue("id"))
			c := m.client("", now)
			if err := p.storage.CreateRegulatorClient(ctx, reg, c); err != nil {
				p.operatorError(w, r, err)
				return
			}
			out = registered{ClientID: c.ID, ClientIDIssuedAt: now.Unix(), ClientMetadata: m}
		} else {
			firm, err := broker.ParseFirmID(r.PathValue("id"))
			if err != nil {
				p.operatorError(w, r, err)
				return
			}
			c := m.client(firm, now)
			if err := p.cfg.Store.Update(ctx, func(tx store.Tx) error { return tx.CreateClient(ctx, c) }); err != nil {
				p.operatorError(w, r, err)
				return
			}
			out = registered{ClientID: c.ID, ClientIDIssuedAt: now.Unix(), FirmID: firm, ClientMetadata: m}
		}
		writeJSON(w, http.StatusCreated, out)
	}
}

func (p *Provider) setClientStatus(status broker.ClientStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := broker.ParseClientID(r.PathValue("id"))
		if err == nil {
			err = p.storage.SetClientStatus(r.Context(), id, status)
		}
		if err != nil {
			p.operatorError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"client_id": id, "status": status})
	}
}

func (p *Provider) deleteClient(w http.ResponseWriter, r *http.Request) {
	id, err := broker.ParseClientID(r.PathValue("id"))
	if err == nil {
		err = p.storage.DeleteClient(r.Context(), id)
	}
	if err != nil {
		p.operatorError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
