// Package firmclient is a small firm-side client of Steward: it
// authenticates with private_key_jwt (RFC 7523), proves possession of its
// DPoP key on every call (RFC 9449, retrying once with the server's nonce),
// pushes authorization requests (RFC 9126), exchanges codes, gets
// client-credentials tokens and calls the Data API. Steward's own tests,
// load harness and crash test use it; a firm may read it as a reference.
package firmclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
)

// Client is one OAuth client of one firm.
type Client struct {
	// Base is Steward's issuer URL (no trailing slash).
	Base string
	// ID is the client id.
	ID string
	// Key signs client assertions (EdDSA), published as KID in the client's JWKS.
	Key ed25519.PrivateKey
	KID string
	// DPoP is the key tokens are bound to.
	DPoP ed25519.PrivateKey
	HTTP *http.Client

	mu    sync.Mutex
	nonce string
}

// NewKey draws an Ed25519 key and returns it with its public JWKS.
func NewKey(kid string) (ed25519.PrivateKey, []byte) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}}})
	return priv, jwks
}

// New returns a client with a fresh DPoP key. key signs its assertions.
func New(base, id string, key ed25519.PrivateKey, kid string) *Client {
	_, dk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Client{Base: strings.TrimSuffix(base, "/"), ID: id, Key: key, KID: kid, DPoP: dk,
		HTTP: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Assertion is a fresh private_key_jwt client assertion for the issuer.
func (c *Client) Assertion() (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: c.Key, KeyID: c.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(jwt.Claims{Issuer: c.ID, Subject: c.ID, Audience: jwt.Audience{c.Base}, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).CompactSerialize()
}

// JKT is the RFC 7638 thumbprint of the DPoP key.
func (c *Client) JKT() string {
	tp, err := (&jose.JSONWebKey{Key: c.DPoP.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// Proof is a DPoP proof for method and uri (no query or fragment); token,
// if set, is hashed into ath. The last nonce the server gave is included.
func (c *Client) Proof(method, uri, token string) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: c.DPoP}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return "", err
	}
	claims := map[string]any{"jti": randomID(), "htm": method, "htu": uri, "iat": time.Now().Unix()}
	c.mu.Lock()
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	c.mu.Unlock()
	if token != "" {
		h := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// Response is an HTTP answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Do sends a request to path with a DPoP proof (and, when token is set,
// "Authorization: DPoP token"), retrying once if the server asks for a
// nonce. form, if set, is sent as a form body with client authentication;
// otherwise body (JSON) if set.
func (c *Client) Do(ctx context.Context, method, path string, form url.Values, body []byte, token string) (Response, error) {
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		ctype := ""
		switch {
		case form != nil:
			a, err := c.Assertion()
			if err != nil {
				return Response{}, err
			}
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			f.Set("client_assertion", a)
			rd, ctype = strings.NewReader(f.Encode()), "application/x-www-form-urlencoded"
		case body != nil:
			rd, ctype = bytes.NewReader(body), "application/json"
		}
		p, err := c.ProofFor(method, path, token)
		if err != nil {
			return Response{}, err
		}
		r, err := c.Send(ctx, method, path, rd, ctype, p, token)
		if err != nil {
			return Response{}, err
		}
		asked := strings.Contains(r.Header.Get("WWW-Authenticate"), "use_dpop_nonce") || bytes.Contains(r.Body, []byte(`"use_dpop_nonce"`))
		if asked && attempt == 0 {
			continue
		}
		return r, nil
	}
}

// ProofFor is a DPoP proof for a request of method to path (which may
// carry a query; htu leaves it out), as Do would send it.
func (c *Client) ProofFor(method, path, token string) (string, error) {
	htu, _, _ := strings.Cut(c.Base+path, "?")
	return c.Proof(method, htu, token)
}

// Send sends one request to path with the DPoP proof given (made by
// ProofFor, perhaps ahead of time) and, when token is set,
// "Authorization: DPoP token"; body, if set, is sent with Content-Type
// ctype. It remembers a nonce the server gives but does not retry: Do
// does.
func (c *Client) Send(ctx context.Context, method, path string, body io.Reader, ctype, proof, token string) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return Response{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("DPoP", proof)
	if token != "" {
		req.Header.Set("Authorization", "DPoP "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Response{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return Response{}, err
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		c.mu.Lock()
		c.nonce = n
		c.mu.Unlock()
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Token is a token endpoint response.
type Token struct {
	AccessToken          string          `json:"access_token"`
	TokenType            string          `json:"token_type"`
	ExpiresIn            int             `json:"expires_in"`
	RefreshToken         string          `json:"refresh_token,omitempty"`
	Scope                string          `json:"scope,omitempty"`
	AuthorizationDetails json.RawMessage `json:"authorization_details,omitempty"`
}

func (c *Client) token(ctx context.Context, form url.Values) (Token, error) {
	r, err := c.Do(ctx, http.MethodPost, "/oauth/token", form, nil, "")
	if err != nil {
		return Token{}, err
	}
	var t Token
	if r.Status != http.StatusOK || r.JSON(&t) != nil || t.AccessToken == "" {
		return Token{}, fmt.Errorf("token endpoint: %d %s", r.Status, r.Body)
	}
	return t, nil
}

// ClientCredentials gets a client-credentials token for scope.
func (c *Client) ClientCredentials(ctx context.Context, scope string) (Token, error) {
	return c.token(ctx, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}})
}

// Exchange trades an authorization code for tokens bound to the DPoP key.
func (c *Client) Exchange(ctx context.Context, code, verifier, redirectURI string) (Token, error) {
	return c.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}})
}

// PKCE is a code verifier and its S256 challenge.
type PKCE struct{ Verifier, Challenge string }

// NewPKCE draws a verifier.
func NewPKCE() PKCE {
	v := randomID() + randomID()
	h := sha256.Sum256([]byte(v))
	return PKCE{Verifier: v, Challenge: base64.RawURLEncoding.EncodeToString(h[:])}
}

// PAR pushes an authorization request for authorization_details (RFC
// 9396 JSON) with PKCE and the DPoP key's thumbprint, and returns the URL
// of the authorization endpoint to send the customer to.
func (c *Client) PAR(ctx context.Context, redirectURI, details string, pk PKCE) (string, error) {
	form := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirectURI},
		"code_challenge": {pk.Challenge}, "code_challenge_method": {"S256"}, "state": {randomID()},
		"authorization_details": {details}, "dpop_jkt": {c.JKT()}}
	r, err := c.Do(ctx, http.MethodPost, "/oauth/par", form, nil, "")
	if err != nil {
		return "", err
	}
	var out struct {
		RequestURI string `json:"request_uri"`
	}
	if r.Status != http.StatusCreated || r.JSON(&out) != nil || out.RequestURI == "" {
		return "", fmt.Errorf("PAR: %d %s", r.Status, r.Body)
	}
	return c.Base + "/oauth/authorize?" + url.Values{"client_id": {c.ID}, "request_uri": {out.RequestURI}}.Encode(), nil
}
