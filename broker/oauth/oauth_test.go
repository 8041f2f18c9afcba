package oauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauthconsent"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
	"github.com/stewardhq/steward/web"
)

const (
	alicePassword = "correct horse battery staple"
	redirectURI   = "https://firm.example/cb"
	aliceTerms    = `{"format":"steward.terms/v1","rules":[]}`
	details       = `[{"type":"steward_customer_data","categories":["Contact","Preference"],"purpose":"Marketing","duration":"P30D"}]`
)

// env is a running authorization server with one approved firm, its
// client (ES256 keys), a customer and a real consent service.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	p        *oauth.Provider
	store    backend.Migrator
	firm     broker.Firm
	customer broker.Customer
	client   testClient
	other    testClient
	svc      *consent.Service
	decide   consent.DecideConsent
}

type testClient struct {
	id  broker.ClientID
	key any // private key
	alg jose.SignatureAlgorithm
	kid string
}

func newKeyClient(t testing.TB, alg jose.SignatureAlgorithm) (testClient, []byte) {
	t.Helper()
	var priv, pub any
	switch alg {
	case jose.PS256:
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		priv, pub = k, &k.PublicKey
	case jose.EdDSA:
		pk, sk, _ := ed25519.GenerateKey(rand.Reader)
		priv, pub = sk, pk
	default:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, pub = k, &k.PublicKey
	}
	kid := "k-" + string(alg)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Use: "sig", Algorithm: string(alg)}}})
	if err != nil {
		t.Fatal(err)
	}
	return testClient{id: broker.NewClientID(), key: priv, alg: alg, kid: kid}, jwks
}

func newEnv(t testing.TB, s backend.Migrator) *env {
	t.Helper()
	return newEnvConfig(t, s, nil)
}

// newEnvConfig is newEnv with mod applied to the provider's Config.
func newEnvConfig(t testing.TB, s backend.Migrator, mod func(*oauth.Config)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{store: s}
	if tt, ok := t.(*testing.T); ok {
		e.t = tt
	}
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)

	e.customer = storetest.NewCustomer("alice")
	hash, err := password.Hash(alicePassword, password.Params{Memory: 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.customer.PasswordHash = hash
	e.firm = storetest.NewFirm("Acme Retail Ltd", "retail")
	var jwks, otherJWKS []byte
	e.client, jwks = newKeyClient(t, jose.ES256)
	e.other, otherJWKS = newKeyClient(t, jose.EdDSA)
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, e.customer); err != nil {
			return err
		}
		if err := tx.CreateFirm(ctx, e.firm); err != nil {
			return err
		}
		if _, err := tx.AddTerms(ctx, e.customer.ID, []byte(aliceTerms), storetest.Now); err != nil {
			return err
		}
		for _, c := range []broker.Client{
			{ID: e.client.id, FirmID: e.firm.ID, Name: "Acme app", RedirectURIs: []string{redirectURI}, JWKS: jwks, Status: broker.ClientActive, CreatedAt: storetest.Now},
			{ID: e.other.id, FirmID: e.firm.ID, Name: "Other app", RedirectURIs: []string{"https://other.example/cb"}, JWKS: otherJWKS, Status: broker.ClientActive, CreatedAt: storetest.Now},
		} {
			if err := tx.CreateClient(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(ctx, policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.decide = func(ctx context.Context, c broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
		return eng.Consent(ctx, policy.ConsentRequest{Customer: c, Firm: f, Terms: tv, Request: req, Now: now})
	}
	svc := consent.New(s, e.decide, nil)
	e.svc = svc
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := oauth.Config{Issuer: e.srv.URL, SigningKey: key, Secret: []byte(strings.Repeat("s", 32)), Store: s, Templates: web.Templates}
	if mod != nil {
		mod(&cfg)
	}
	e.p, err = oauth.New(cfg, s.OAuth(), consentFunc(svc))
	if err != nil {
		t.Fatal(err)
	}
	h = e.p.Handler()
	return e
}

// consentFunc is the adapter cmd/steward wires: the real consent flow.
func consentFunc(svc *consent.Service) oauth.ConsentFunc { return oauthconsent.Func(svc) }

// regulatorClient registers a regulator with an EdDSA client and returns it.
func (e *env) regulatorClient(t testing.TB) testClient {
	t.Helper()
	reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "ICO", Jurisdiction: "GB", CreatedAt: storetest.Now}
	if err := e.store.Update(t.Context(), func(tx store.Tx) error { return tx.CreateRegulator(t.Context(), reg) }); err != nil {
		t.Fatal(err)
	}
	rc, jwks := newKeyClient(t, jose.EdDSA)
	if err := e.store.OAuth().CreateRegulatorClient(t.Context(), reg.ID, broker.Client{ID: rc.id, Name: "ICO audit", JWKS: jwks,
		Status: broker.ClientActive, CreatedAt: storetest.Now}); err != nil {
		t.Fatal(err)
	}
	return rc
}

// assertion is a private_key_jwt client assertion (RFC 7523).
func (e *env) assertion(t testing.TB, c testClient, mod func(*jwt.Claims)) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: c.alg, Key: jose.JSONWebKey{Key: c.key, KeyID: c.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := jwt.Claims{Issuer: string(c.id), Subject: string(c.id), Audience: jwt.Audience{e.srv.URL},
		ID: base64.RawURLEncoding.EncodeToString(randBytes(16)), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	if mod != nil {
		mod(&claims)
	}
	s, err := jwt.Signed(sig).Claims(claims).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func (e *env) authForm(t testing.TB, c testClient, v url.Values) url.Values {
	if v == nil {
		v = url.Values{}
	}
	v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	v.Set("client_assertion", e.assertion(t, c, nil))
	return v
}

// post sends a form and decodes a JSON answer.
func (e *env) post(t testing.TB, path string, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+path, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(body) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode, out
}

type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := base64.RawURLEncoding.EncodeToString(randBytes(32))
	s := sha256.Sum256([]byte(v))
	return pkce{v, base64.RawURLEncoding.EncodeToString(s[:])}
}

// par pushes an authorization request and returns its request_uri.
func (e *env) par(t testing.TB, c testClient, pk pkce, mod func(url.Values)) (int, map[string]any) {
	t.Helper()
	v := url.Values{"response_type": {"code"}, "client_id": {string(c.id)}, "redirect_uri": {redirectURI},
		"code_challenge": {pk.challenge}, "code_challenge_method": {"S256"}, "state": {"state-1234567890"},
		"authorization_details": {details}}
	if mod != nil {
		mod(v)
	}
	return e.post(t, oauth.PathPAR, e.authForm(t, c, v))
}

type browser struct {
	*http.Client
	t testing.TB
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) postForm(u string, v url.Values) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.PostForm(u, v)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func formToken(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf token in page:\n%s", page)
	}
	return m[1]
}

// authorize drives the browser from request_uri to the redirect back to
// the client and returns that redirect's URL.
func (e *env) authorize(t testing.TB, b *browser, c testClient, requestURI string, approve bool) *url.URL {
	t.Helper()
	resp, body := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(c.id)}, "request_uri": {requestURI}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	interaction := loc.Query().Get("interaction")
	if loc.Path == oauth.PathLogin {
		_, page := b.get(loc.String())
		resp, body = b.postForm(e.srv.URL+oauth.PathLogin, url.Values{"csrf": {formToken(t, page)}, "interaction": {interaction},
			"handle": {"alice"}, "password": {alicePassword}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d %s", resp.StatusCode, body)
		}
	}
	resp, page := b.get(e.srv.URL + oauth.PathConsent + "?interaction=" + url.QueryEscape(interaction))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Acme Retail Ltd") || !strings.Contains(page, "Marketing") {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	decision := "deny"
	if approve {
		decision = "approve"
	}
	resp, body = b.postForm(e.srv.URL+oauth.PathConsent, url.Values{"csrf": {formToken(t, page)}, "interaction": {interaction},
		"decision": {decision}, "category.0": {"Contact"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("consent: %d %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// code runs PAR and the browser flow and returns a code with its verifier.
func (e *env) code(t testing.TB) (string, pkce) {
	t.Helper()
	pk := newPKCE()
	st, out := e.par(t, e.client, pk, nil)
	if st != http.StatusCreated {
		t.Fatalf("par: %d %v", st, out)
	}
	u := e.authorize(t, newBrowser(t), e.client, out["request_uri"].(string), true)
	if u.Scheme+"://"+u.Host+u.Path != redirectURI || u.Query().Get("code") == "" {
		t.Fatalf("redirect %s has no code", u)
	}
	if got := u.Query().Get("iss"); got != e.srv.URL {
		t.Fatalf("iss = %q, want %q (RFC 9207)", got, e.srv.URL)
	}
	if got := u.Query().Get("state"); got != "state-1234567890" {
		t.Fatalf("state = %q", got)
	}
	return u.Query().Get("code"), pk
}

func (e *env) exchange(t testing.TB, c testClient, code, verifier string) (int, map[string]any) {
	t.Helper()
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	return e.post(t, oauth.PathToken, e.authForm(t, c, v))
}

func (e *env) introspect(t testing.TB, c testClient, token string) map[string]any {
	t.Helper()
	st, out := e.post(t, oauth.PathIntrospect, e.authForm(t, c, url.Values{"token": {token}}))
	if st != http.StatusOK {
		t.Fatalf("introspect: %d %v", st, out)
	}
	return out
}

func (e *env) refresh(t testing.TB, c testClient, rt string) (int, map[string]any) {
	t.Helper()
	return e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}))
}

func wantError(t testing.TB, what string, st int, out map[string]any, status int, code string) {
	t.Helper()
	if st != status || out["error"] != code {
		t.Errorf("%s: got %d %v, want %d %s", what, st, out, status, code)
	}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		code, pk := e.code(t)
		st, tok := e.exchange(t, e.client, code, pk.verifier)
		if st != http.StatusOK || tok["access_token"] == nil || tok["refresh_token"] == nil || tok["token_type"] != "bearer" {
			t.Fatalf("exchange: %d %v", st, tok)
		}
		at, rt := tok["access_token"].(string), tok["refresh_token"].(string)

		info := e.introspect(t, e.client, at)
		if info["active"] != true || info["client_id"] != string(e.client.id) || info["consent_id"] == nil {
			t.Fatalf("introspection: %v", info)
		}
		// The subject is the firm's pairwise pseudonym, never the customer id.
		var psn broker.Pseudonym
		_ = s.Update(t.Context(), func(tx store.Tx) (err error) {
			psn, err = tx.Pseudonym(t.Context(), e.customer.ID, e.firm.ID)
			return err
		})
		if info["sub"] != string(psn) {
			t.Errorf("sub = %v, want pseudonym %s", info["sub"], psn)
		}
		// The customer unticked Preference: only Contact was granted.
		granted, _ := json.Marshal(info["authorization_details"])
		if !strings.Contains(string(granted), "Contact") || strings.Contains(string(granted), "Preference") {
			t.Errorf("granted details = %s, want Contact only", granted)
		}
		var c broker.Consent
		_ = s.View(t.Context(), func(tx store.Tx) (err error) {
			c, err = tx.GetConsent(t.Context(), broker.ConsentID(info["consent_id"].(string)))
			return err
		})
		if c.State != broker.ConsentGranted || strings.Join(c.Granted.Categories, ",") != "Contact" {
			t.Errorf("stored consent: %s %v", c.State, c.Granted.Categories)
		}

		// Refresh rotates: new pair, old access token dead.
		st, tok2 := e.refresh(t, e.client, rt)
		if st != http.StatusOK || tok2["refresh_token"] == rt {
			t.Fatalf("refresh: %d %v", st, tok2)
		}
		if e.introspect(t, e.client, at)["active"] != false {
			t.Error("old access token still active after rotation")
		}
		at2 := tok2["access_token"].(string)
		if info := e.introspect(t, e.client, at2); info["active"] != true || info["consent_id"] != string(c.ID) {
			t.Errorf("rotated access token: %v", info)
		}

		// Revocation of the refresh token ends the grant.
		st, out := e.post(t, oauth.PathRevoke, e.authForm(t, e.client, url.Values{"token": {tok2["refresh_token"].(string)}, "token_type_hint": {"refresh_token"}}))
		if st != http.StatusOK {
			t.Fatalf("revoke: %d %v", st, out)
		}
		if e.introspect(t, e.client, at2)["active"] != false {
			t.Error("access token active after its refresh token was revoked")
		}
		st, out = e.refresh(t, e.client, tok2["refresh_token"].(string))
		wantError(t, "refresh after revocation", st, out, http.StatusBadRequest, "invalid_grant")
	})
}

func TestCustomerRefuses(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		_, out := e.par(t, e.client, newPKCE(), nil)
		u := e.authorize(t, newBrowser(t), e.client, out["request_uri"].(string), false)
		if u.Query().Get("error") != "access_denied" || u.Query().Get("code") != "" || u.Query().Get("iss") != e.srv.URL {
			t.Errorf("refusal redirect: %s", u)
		}
	})
}

func TestClientCredentials(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		st, tok := e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}}))
		if st != http.StatusOK || tok["scope"] != oauth.ScopeFirm || tok["refresh_token"] != nil {
			t.Fatalf("client credentials: %d %v", st, tok)
		}
		if info := e.introspect(t, e.client, tok["access_token"].(string)); info["active"] != true || info["sub"] != string(e.client.id) {
			t.Errorf("introspection: %v", info)
		}
		st, out := e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeAuditRead}}))
		wantError(t, "firm asking for audit:read", st, out, http.StatusBadRequest, "invalid_scope")

		// Every accepted assertion algorithm works.
		for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA} {
			c, jwks := newKeyClient(t, alg)
			if err := s.Update(t.Context(), func(tx store.Tx) error {
				return tx.CreateClient(t.Context(), broker.Client{ID: c.id, FirmID: e.firm.ID, Name: "app " + string(alg),
					RedirectURIs: []string{redirectURI}, JWKS: jwks, Status: broker.ClientActive, CreatedAt: storetest.Now})
			}); err != nil {
				t.Fatal(err)
			}
			if st, out := e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"client_credentials"}})); st != http.StatusOK {
				t.Errorf("%s assertion: %d %v", alg, st, out)
			}
		}

		// A regulator's client gets audit:read and nothing else.
		reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "ICO", Jurisdiction: "GB", CreatedAt: storetest.Now}
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateRegulator(t.Context(), reg) }); err != nil {
			t.Fatal(err)
		}
		rc, jwks := newKeyClient(t, jose.EdDSA)
		if err := s.OAuth().CreateRegulatorClient(t.Context(), reg.ID, broker.Client{ID: rc.id, Name: "ICO audit", JWKS: jwks, Status: broker.ClientActive, CreatedAt: storetest.Now}); err != nil {
			t.Fatal(err)
		}
		st, tok = e.post(t, oauth.PathToken, e.authForm(t, rc, url.Values{"grant_type": {"client_credentials"}}))
		if st != http.StatusOK || tok["scope"] != oauth.ScopeAuditRead {
			t.Fatalf("regulator client credentials: %d %v", st, tok)
		}
		st, out = e.post(t, oauth.PathToken, e.authForm(t, rc, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}}))
		wantError(t, "regulator asking for firm", st, out, http.StatusBadRequest, "invalid_scope")

		// Suspending the firm stops its tokens at once.
		if _, err := e.p.IntrospectAccessToken(t.Context(), tok["access_token"].(string)); err != nil {
			t.Fatalf("regulator token: %v", err)
		}
		st, tok = e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}}))
		if st != http.StatusOK {
			t.Fatal(st, tok)
		}
		if err := s.Update(t.Context(), func(tx store.Tx) error {
			_, err := tx.SetFirmStatus(t.Context(), e.firm.ID, broker.FirmSuspended, time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.p.IntrospectAccessToken(t.Context(), tok["access_token"].(string)); err != oauth.ErrInactive {
			t.Errorf("token of a suspended firm: %v, want ErrInactive", err)
		}
	})
}
