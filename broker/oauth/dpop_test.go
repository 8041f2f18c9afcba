package oauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
)

// dpopKey is a client's DPoP key (RFC 9449) and the last server nonce it saw.
type dpopKey struct {
	t     testing.TB
	alg   jose.SignatureAlgorithm
	key   crypto.Signer
	nonce string
}

func newDPoPKey(t testing.TB, alg jose.SignatureAlgorithm) *dpopKey {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case jose.EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{t: t, alg: alg, key: k}
}

func (k *dpopKey) jkt() string {
	s, err := dpop.Thumbprint(&jose.JSONWebKey{Key: k.key.Public()})
	if err != nil {
		k.t.Fatal(err)
	}
	return s
}

// proof is a DPoP proof for a request to uri with method.
func (k *dpopKey) proof(method, uri string) string {
	k.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, (&jose.SignerOptions{EmbedJWK: true}).WithType(dpop.ProofType))
	if err != nil {
		k.t.Fatal(err)
	}
	claims := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(randBytes(16)), "htm": method, "htu": uri, "iat": time.Now().Unix()}
	if k.nonce != "" {
		claims["nonce"] = k.nonce
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		k.t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// postDPoP posts the form made by form (a fresh client assertion each
// time) with a proof from k, retrying once with the server's nonce when
// asked (RFC 9449 §8).
func (e *env) postDPoP(t testing.TB, k *dpopKey, path string, form func() url.Values) (int, map[string]any) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form().Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(dpop.Header, k.proof(http.MethodPost, e.srv.URL+path))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out := map[string]any{}
		_ = json.Unmarshal(body, &out)
		if n := resp.Header.Get(dpop.NonceHeader); n != "" {
			k.nonce = n
		}
		if out["error"] == dpop.CodeUseDPoPNonce && attempt == 0 {
			continue
		}
		return resp.StatusCode, out
	}
}

func newDPoPEnv(t *testing.T, s backend.Migrator) *env {
	t.Helper()
	v := newValidator(t, s)
	return newEnvConfig(t, s, func(c *oauth.Config) { c.DPoP = v })
}

// newValidator is a replica's DPoP validator: nonces from a key every
// replica shares, proofs remembered in the database.
func newValidator(t testing.TB, s backend.Migrator) *dpop.Validator {
	t.Helper()
	nonces, err := dpop.NewNonces(0, []byte(strings.Repeat("n", dpop.MinNonceKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := dpop.NewValidator(dpop.Config{Replay: oauth.NewReplayCache(s.OAuth(), nil), Nonces: nonces})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDPoPBoundTokens(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newDPoPEnv(t, s)
		firm, thief := newDPoPKey(t, jose.ES256), newDPoPKey(t, jose.EdDSA)

		var md map[string]any
		getJSON(t, e.srv.URL+oauth.PathMetadata, &md)
		if md["dpop_signing_alg_values_supported"] == nil {
			t.Errorf("metadata lacks dpop_signing_alg_values_supported: %v", md)
		}

		// PAR binds the code to the firm's key by dpop_jkt (RFC 9449 §10).
		pk := newPKCE()
		st, out := e.par(t, e.client, pk, func(v url.Values) { v.Set("dpop_jkt", firm.jkt()) })
		if st != http.StatusCreated {
			t.Fatalf("par: %d %v", st, out)
		}
		u := e.authorize(t, newBrowser(t), e.client, out["request_uri"].(string), true)
		code := u.Query().Get("code")
		if code == "" {
			t.Fatalf("redirect %s has no code", u)
		}
		codeForm := func() url.Values {
			return e.authForm(t, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}})
		}

		// Without a proof the request is refused before the code is used.
		st, out = e.post(t, oauth.PathToken, codeForm())
		wantError(t, "token without a proof", st, out, http.StatusBadRequest, dpop.CodeInvalidDPoPProof)

		st, tok := e.postDPoP(t, firm, oauth.PathToken, codeForm)
		if st != http.StatusOK || tok["token_type"] != "DPoP" {
			t.Fatalf("token: %d %v, want token_type DPoP", st, tok)
		}
		at, rt := tok["access_token"].(string), tok["refresh_token"].(string)

		info := e.introspect(t, e.client, at)
		if diff := cmp.Diff(map[string]any{"jkt": firm.jkt()}, info["cnf"]); diff != "" {
			t.Errorf("introspection cnf (-want +got):\n%s", diff)
		}
		if info["token_type"] != "DPoP" || info["active"] != true {
			t.Errorf("introspection: %v", info)
		}
		ti, err := e.p.IntrospectAccessToken(t.Context(), at)
		if err != nil || ti.Session == nil || ti.Session.JKT != firm.jkt() {
			t.Fatalf("IntrospectAccessToken: %+v, %v; want JKT %s", ti, err, firm.jkt())
		}
		if len(ti.Session.AuthorizationDetails()) != 1 || strings.Join(ti.Session.AuthorizationDetails()[0].Categories, ",") != "Contact" {
			t.Errorf("session authorization details: %+v", ti.Session.AuthorizationDetails())
		}

		// The refresh token is bound too: another key's proof is refused.
		refreshForm := func() url.Values {
			return e.authForm(t, e.client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		}
		st, out = e.postDPoP(t, thief, oauth.PathToken, refreshForm)
		wantError(t, "refresh with another key", st, out, http.StatusBadRequest, dpop.CodeInvalidDPoPProof)
		st, tok = e.postDPoP(t, firm, oauth.PathToken, refreshForm)
		if st != http.StatusOK || tok["token_type"] != "DPoP" {
			t.Fatalf("refresh: %d %v", st, tok)
		}

	})
}

// TestDPoPClientCredentials: a client-credentials token is bound when the
// request carries a proof; scope firm requires one, while a regulator's
// audit:read may stay Bearer (the steward audit CLI uses it).
func TestDPoPClientCredentials(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newDPoPEnv(t, s)
		k := newDPoPKey(t, jose.EdDSA)
		firmForm := func() url.Values {
			return e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}})
		}
		st, out := e.post(t, oauth.PathToken, firmForm())
		wantError(t, "firm scope without a proof", st, out, http.StatusBadRequest, dpop.CodeInvalidDPoPProof)
		st, out = e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}}))
		wantError(t, "default (firm) scope without a proof", st, out, http.StatusBadRequest, dpop.CodeInvalidDPoPProof)

		st, tok := e.postDPoP(t, k, oauth.PathToken, firmForm)
		if st != http.StatusOK || tok["token_type"] != "DPoP" {
			t.Fatalf("firm scope with a proof: %d %v, want token_type DPoP", st, tok)
		}
		info := e.introspect(t, e.client, tok["access_token"].(string))
		if diff := cmp.Diff(map[string]any{"jkt": k.jkt()}, info["cnf"]); diff != "" || info["token_type"] != "DPoP" {
			t.Errorf("introspection %v; cnf (-want +got):\n%s", info, diff)
		}
		ti, err := e.p.IntrospectAccessToken(t.Context(), tok["access_token"].(string))
		if err != nil || ti.Session.JKT != k.jkt() {
			t.Errorf("IntrospectAccessToken: %+v, %v; want JKT %s", ti, err, k.jkt())
		}

		// A regulator's audit:read: Bearer without a proof, bound with one.
		rc := e.regulatorClient(t)
		regForm := func() url.Values { return e.authForm(t, rc, url.Values{"grant_type": {"client_credentials"}}) }
		st, tok = e.post(t, oauth.PathToken, regForm())
		if st != http.StatusOK || tok["token_type"] != "bearer" || tok["scope"] != oauth.ScopeAuditRead {
			t.Fatalf("audit:read without a proof: %d %v, want a Bearer token", st, tok)
		}
		st, tok = e.postDPoP(t, k, oauth.PathToken, regForm)
		if st != http.StatusOK || tok["token_type"] != "DPoP" {
			t.Fatalf("audit:read with a proof: %d %v, want token_type DPoP", st, tok)
		}
	})
}

// TestDPoPProofAtPAR binds the code by a proof sent to the PAR endpoint,
// and refuses a front-channel parameter the PAR request did not carry.
func TestDPoPProofAtPAR(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newDPoPEnv(t, s)
		firm, thief := newDPoPKey(t, jose.ES256), newDPoPKey(t, jose.ES256)
		pk := newPKCE()
		parForm := func() url.Values {
			return e.authForm(t, e.client, url.Values{"response_type": {"code"}, "client_id": {string(e.client.id)},
				"redirect_uri": {redirectURI}, "code_challenge": {pk.challenge}, "code_challenge_method": {"S256"},
				"state": {"state-1234567890"}, "authorization_details": {details}})
		}
		st, out := e.postDPoP(t, firm, oauth.PathPAR, parForm)
		if st != http.StatusCreated {
			t.Fatalf("par: %d %v", st, out)
		}
		requestURI := out["request_uri"].(string)

		b := newBrowser(t)
		resp, _ := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.client.id)},
			"request_uri": {requestURI}, "dpop_jkt": {thief.jkt()}}.Encode())
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("authorize with an injected dpop_jkt: %d, want 400", resp.StatusCode)
		}

		u := e.authorize(t, b, e.client, requestURI, true)
		codeForm := func() url.Values {
			return e.authForm(t, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")},
				"redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}})
		}
		st, out = e.postDPoP(t, thief, oauth.PathToken, codeForm)
		wantError(t, "code with another key", st, out, http.StatusBadRequest, dpop.CodeInvalidDPoPProof)
	})
}

// sendDPoP posts form once with a proof from k (no retry) and returns the
// status, the decoded answer and the DPoP-Nonce header.
func (e *env) sendDPoP(t testing.TB, k *dpopKey, path string, form url.Values) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if k != nil {
		req.Header.Set(dpop.Header, k.proof(http.MethodPost, e.srv.URL+path))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out, resp.Header.Get(dpop.NonceHeader)
}

// TestDPoPNonceOnSuccess checks RFC 9449 §8: the server supplies a fresh
// nonce on successful PAR and token responses as well as with
// use_dpop_nonce, and a client that uses it is not refused first.
func TestDPoPNonceOnSuccess(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newDPoPEnv(t, s)
		k := newDPoPKey(t, jose.ES256)
		pk := newPKCE()
		parForm := url.Values{"response_type": {"code"}, "client_id": {string(e.client.id)},
			"redirect_uri": {redirectURI}, "code_challenge": {pk.challenge}, "code_challenge_method": {"S256"},
			"state": {"state-1234567890"}, "authorization_details": {details}}

		st, out, nonce := e.sendDPoP(t, k, oauth.PathPAR, e.authForm(t, e.client, parForm))
		if st != http.StatusBadRequest || out["error"] != dpop.CodeUseDPoPNonce || nonce == "" {
			t.Fatalf("proof without nonce: %d %v nonce %q, want 400 use_dpop_nonce with a nonce", st, out, nonce)
		}
		k.nonce = nonce
		st, out, nonce = e.sendDPoP(t, k, oauth.PathPAR, e.authForm(t, e.client, parForm))
		if st != http.StatusCreated || nonce == "" {
			t.Fatalf("par: %d %v nonce %q, want 201 with a DPoP-Nonce", st, out, nonce)
		}
		k.nonce = nonce
		u := e.authorize(t, newBrowser(t), e.client, out["request_uri"].(string), true)
		st, tok, nonce := e.sendDPoP(t, k, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"authorization_code"},
			"code": {u.Query().Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}}))
		if st != http.StatusOK || tok["token_type"] != "DPoP" || nonce == "" {
			t.Fatalf("token: %d %v nonce %q, want 200 DPoP with a DPoP-Nonce", st, tok, nonce)
		}
		// The nonce from the success works at once for the next request.
		k.nonce = nonce
		st, tok, nonce = e.sendDPoP(t, k, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {tok["refresh_token"].(string)}}))
		if st != http.StatusOK || nonce == "" {
			t.Fatalf("refresh with the nonce of a successful response: %d %v nonce %q", st, tok, nonce)
		}
		// Without DPoP configured, no nonce is sent.
		plain := newEnv(t, backendtest.Open(t, ""))
		if _, _, nonce := plain.sendDPoP(t, nil, oauth.PathToken, plain.authForm(t, plain.client, url.Values{"grant_type": {"client_credentials"}})); nonce != "" {
			t.Errorf("server without DPoP sent DPoP-Nonce %q", nonce)
		}
	})
}
