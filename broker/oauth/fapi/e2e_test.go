package fapi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauth/fapi"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

const (
	clientID     = "firm-client"
	clientSecret = "firm-secret-0123456789"
	redirectURI  = "https://firm.example/cb"
)

// server is a minimal Steward authorization and resource server: fosite
// composed with the DPoP and RAR extensions over an in-memory store.
type server struct {
	*httptest.Server
	provider fosite.OAuth2Provider
	dpop     *dpop.Validator
	rarOpts  rar.Options
	// consent narrows the requested scope, standing in for the customer.
	consent func(broker.Scope) broker.Scope
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{consent: func(s broker.Scope) broker.Scope { return s }}
	s.Server = httptest.NewUnstartedServer(nil)
	base := "http://" + s.Listener.Addr().String()

	nonces, err := dpop.NewNonces(0, []byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	s.dpop, err = dpop.NewValidator(dpop.Config{Replay: dpop.NewMemoryReplayCache(0, nil), Nonces: nonces})
	if err != nil {
		t.Fatal(err)
	}
	s.rarOpts = rar.Options{
		Locations: []string{base + "/v1/data"},
		MaxDuration: func(purpose string) (broker.Duration, bool) {
			return broker.MustParseDuration("P1Y"), broker.PurposeCovers("Marketing", purpose)
		},
	}

	hash, err := bcrypt.GenerateFromPassword([]byte(clientSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewMemoryStore()
	store.Clients[clientID] = &fosite.DefaultClient{
		ID: clientID, Secret: hash, RedirectURIs: []string{redirectURI},
		GrantTypes:    []string{"authorization_code", "refresh_token", "client_credentials"},
		ResponseTypes: []string{"code"}, Scopes: []string{"offline_access"},
	}
	cfg := &fosite.Config{
		GlobalSecret:              []byte(strings.Repeat("s", 32)),
		AccessTokenLifespan:       time.Hour,
		RefreshTokenLifespan:      24 * time.Hour,
		EnforcePKCE:               true,
		IsPushedAuthorizeEnforced: true,
		HashCost:                  bcrypt.MinCost,
	}
	ext := fapi.Extensions{
		DPoP: s.dpop, TokenURL: base + "/oauth/token", PARURL: base + "/oauth/par",
		RAR: s.rarOpts, RequireDetails: true,
	}
	before, after, err := ext.Factories()
	if err != nil {
		t.Fatal(err)
	}
	s.provider = compose.Compose(cfg, store, compose.NewOAuth2HMACStrategy(cfg), slices.Concat(
		before,
		[]compose.Factory{
			compose.OAuth2AuthorizeExplicitFactory, compose.OAuth2PKCEFactory,
			compose.OAuth2RefreshTokenGrantFactory, compose.OAuth2ClientCredentialsGrantFactory,
			compose.OAuth2TokenIntrospectionFactory, compose.PushedAuthorizeHandlerFactory,
		},
		after,
	)...)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/par", s.par)
	mux.HandleFunc("GET /oauth/authorize", s.authorize)
	mux.HandleFunc("POST /oauth/token", s.token)
	mux.HandleFunc("GET /v1/data", s.data)
	mux.HandleFunc("POST /oauth/introspect", s.introspect)
	s.Config.Handler = mux
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func setNonce(w http.ResponseWriter, err error) {
	if n, ok := dpop.NonceFromError(err); ok {
		w.Header().Set(dpop.NonceHeader, n)
	}
}

func (s *server) par(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), fosite.RequestContextKey, r)
	ar, err := s.provider.NewPushedAuthorizeRequest(ctx, r)
	if err != nil {
		setNonce(w, err)
		s.provider.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	resp, err := s.provider.NewPushedAuthorizeResponse(ctx, ar, fapi.NewSession(""))
	if err != nil {
		setNonce(w, err)
		s.provider.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	s.provider.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// authorize plays the customer: it grants the requested details as
// narrowed by s.consent.
func (s *server) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := fapi.PushedOnly(r.URL.Query()); err != nil {
		s.provider.WriteAuthorizeError(ctx, w, fosite.NewAuthorizeRequest(), err)
		return
	}
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	requested, err := rar.FromForm(ar.GetRequestForm(), s.rarOpts)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	sess := fapi.NewSession("pairwise-customer")
	var granted []rar.Detail
	for _, d := range requested {
		granted = append(granted, rar.FromScope(s.consent(rar.ToScope(d)), d))
	}
	sess.SetAuthorizationDetails(granted)
	for _, sc := range ar.GetRequestedScopes() {
		ar.GrantScope(sc)
	}
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (s *server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAccessRequest(ctx, r, fapi.NewSession(""))
	if err != nil {
		setNonce(w, err)
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, sc := range ar.GetRequestedScopes() {
			ar.GrantScope(sc)
		}
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	w.Header().Set(dpop.NonceHeader, s.dpop.Nonce())
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

func (s *server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := s.provider.NewIntrospectionRequest(ctx, r, fapi.NewSession(""))
	if err != nil {
		s.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	s.provider.WriteIntrospectionResponse(ctx, w, ir)
}

// data is a protected resource: it introspects the token, then checks the
// DPoP binding and answers with the granted details.
func (s *server) data(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	fail := func(err error) {
		setNonce(w, err)
		w.Header().Set("WWW-Authenticate", dpop.WWWAuthenticate(err, s.dpop.Algorithms()))
		w.WriteHeader(http.StatusUnauthorized)
	}
	token, _, err := dpop.AccessToken(r.Header.Get("Authorization"))
	if err != nil {
		fail(err)
		return
	}
	_, ar, err := s.provider.IntrospectToken(ctx, token, fosite.AccessToken, fapi.NewSession(""))
	if err != nil {
		fail(dpop.ErrInvalidToken)
		return
	}
	sess := ar.GetSession().(*fapi.Session)
	if _, err := s.dpop.CheckBinding(ctx, dpop.PresentationFrom(r, s.URL+r.URL.Path), sess.JKT); err != nil {
		fail(err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"authorization_details": sess.AuthorizationDetails()})
}

// client is a firm's client: it signs DPoP proofs with its key and
// retries once when the server asks for a nonce, as RFC 9449 §8 describes.
type client struct {
	t     *testing.T
	base  string
	key   crypto.Signer
	alg   jose.SignatureAlgorithm
	nonce string
	http  *http.Client
}

func newClient(t *testing.T, base string, alg jose.SignatureAlgorithm) *client {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, key: k, alg: alg, http: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *client) jkt() string {
	s, err := dpop.Thumbprint(&jose.JSONWebKey{Key: c.key.Public()})
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

func (c *client) proof(method, uri, token string) string {
	c.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: c.alg, Key: c.key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		c.t.Fatal(err)
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(jti[:]), "htm": method, "htu": uri, "iat": time.Now().Unix()}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

// send sends a request; prove says whether to attach a proof; token is
// the access token for Authorization ("DPoP <token>") and ath.
func (c *client) send(method, path string, form url.Values, prove bool, scheme, token string) response {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, c.base+path, body)
		if err != nil {
			c.t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(clientID, clientSecret)
		}
		if prove {
			req.Header.Set("DPoP", c.proof(method, c.base+strings.SplitN(path, "?", 2)[0], token))
		}
		if token != "" {
			req.Header.Set("Authorization", scheme+" "+token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := response{status: resp.StatusCode, header: resp.Header}
		_ = json.Unmarshal(b, &r.body)
		if n := resp.Header.Get(dpop.NonceHeader); n != "" {
			c.nonce = n
		}
		asked := r.str("error") == "use_dpop_nonce" || strings.Contains(resp.Header.Get("WWW-Authenticate"), "use_dpop_nonce")
		if asked && attempt == 0 && prove {
			continue
		}
		return r
	}
}

func (c *client) post(path string, form url.Values, prove bool) response {
	return c.send("POST", path, form, prove, "", "")
}

const details = `[{"type":"steward_customer_data","categories":["EmailAddress","PurchasesAndSpendingHabit"],
	"purpose":"DirectMarketing","duration":"P180D","frequency":{"max":4,"per":"P1D"},"actions":["read"]}]`

const verifier = "a-pkce-code-verifier-that-is-long-enough-0123456789"

func challenge() string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// authorizationCode runs PAR and the authorization endpoint and returns a code.
func (c *client) authorizationCode(extra url.Values, prove bool) string {
	c.t.Helper()
	form := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"scope": {"offline_access"}, "state": {"state-0123456789"},
		"code_challenge": {challenge()}, "code_challenge_method": {"S256"},
		"authorization_details": {details},
	}
	for k, v := range extra {
		form[k] = v
	}
	par := c.post("/oauth/par", form, prove)
	if par.status != http.StatusCreated {
		c.t.Fatalf("PAR: %d %v", par.status, par.body)
	}
	q := url.Values{"client_id": {clientID}, "request_uri": {par.str("request_uri")}}
	r := c.send("GET", "/oauth/authorize?"+q.Encode(), nil, false, "", "")
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		c.t.Fatalf("authorize: %d, Location %q", r.status, r.header.Get("Location"))
	}
	return loc.Query().Get("code")
}

func codeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}
}

func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %v, want %d %s", r.status, r.body, status, code)
	}
}

func TestEndToEnd(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.ES256)
	thief := newClient(t, s.URL, jose.EdDSA)
	s.consent = func(sc broker.Scope) broker.Scope { // the customer allows 30 days, email only
		sc.Categories, sc.Duration = []string{"EmailAddress"}, broker.MustParseDuration("P30D")
		return sc
	}

	code := firm.authorizationCode(url.Values{"dpop_jkt": {firm.jkt()}}, true)

	// A token request without a proof is refused before fosite touches the
	// code, so the code stays usable.
	wantError(t, firm.post("/oauth/token", codeForm(code), false), 400, "invalid_dpop_proof")

	tok := firm.post("/oauth/token", codeForm(code), true)
	if tok.status != 200 {
		t.Fatalf("token: %d %v", tok.status, tok.body)
	}
	if tok.str("token_type") != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", tok.str("token_type"))
	}
	wantDetails := []any{map[string]any{
		"type": "steward_customer_data", "actions": []any{"read"}, "categories": []any{"EmailAddress"},
		"purpose": "DirectMarketing", "duration": "P30D", "frequency": map[string]any{"max": float64(4), "per": "P1D"},
	}}
	if diff := cmp.Diff(wantDetails, tok.body["authorization_details"]); diff != "" {
		t.Errorf("token response authorization_details (-want +got):\n%s", diff)
	}
	at, rt := tok.str("access_token"), tok.str("refresh_token")

	// Introspection (RFC 7662) shows the binding and the granted details.
	in := firm.post("/oauth/introspect", url.Values{"token": {at}}, false)
	if in.status != 200 || in.body["active"] != true {
		t.Fatalf("introspect: %d %v", in.status, in.body)
	}
	if diff := cmp.Diff(map[string]any{"jkt": firm.jkt()}, in.body["cnf"]); diff != "" {
		t.Errorf("introspection cnf (-want +got):\n%s", diff)
	}
	if in.str("token_type") != "DPoP" || in.str("sub") != "pairwise-customer" {
		t.Errorf("introspection token_type %q, sub %q", in.str("token_type"), in.str("sub"))
	}
	if diff := cmp.Diff(wantDetails, in.body["authorization_details"]); diff != "" {
		t.Errorf("introspection authorization_details (-want +got):\n%s", diff)
	}

	t.Run("resource accepts the bound token with a proof", func(t *testing.T) {
		r := firm.send("GET", "/v1/data", nil, true, "DPoP", at)
		if r.status != 200 {
			t.Fatalf("data: %d %v %q", r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
		if diff := cmp.Diff(wantDetails, r.body["authorization_details"]); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	for _, c := range []struct {
		name      string
		do        func() response
		challenge string
	}{
		{"as Bearer", func() response { return firm.send("GET", "/v1/data", nil, true, "Bearer", at) }, `error="invalid_token"`},
		{"without a proof", func() response { return firm.send("GET", "/v1/data", nil, false, "DPoP", at) }, `error="invalid_dpop_proof"`},
		{"with the thief's proof", func() response { return thief.send("GET", "/v1/data", nil, true, "DPoP", at) }, `error="invalid_token"`},
	} {
		t.Run("resource refuses the token "+c.name, func(t *testing.T) {
			r := c.do()
			if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), c.challenge) {
				t.Fatalf("got %d, WWW-Authenticate %q; want 401 with %s", r.status, r.header.Get("WWW-Authenticate"), c.challenge)
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "DPoP ") {
				t.Errorf("challenge %q is not a DPoP challenge", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("resource refuses a replayed proof", func(t *testing.T) {
		proof := firm.proof("GET", s.URL+"/v1/data", at)
		do := func() *http.Response {
			req, _ := http.NewRequest("GET", s.URL+"/v1/data", nil)
			req.Header.Set("Authorization", "DPoP "+at)
			req.Header.Set("DPoP", proof)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if r := do(); r.StatusCode != 200 {
			t.Fatalf("first use: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
		if r := do(); r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
			t.Fatalf("replay: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("refresh requires the same key", func(t *testing.T) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		wantError(t, thief.post("/oauth/token", form, true), 400, "invalid_dpop_proof")
		wantError(t, firm.post("/oauth/token", form, false), 400, "invalid_dpop_proof")
		r := firm.post("/oauth/token", form, true)
		if r.status != 200 || r.str("token_type") != "DPoP" {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		if diff := cmp.Diff(wantDetails, r.body["authorization_details"]); diff != "" {
			t.Errorf("refreshed authorization_details (-want +got):\n%s", diff)
		}
		if d := firm.send("GET", "/v1/data", nil, true, "DPoP", r.str("access_token")); d.status != 200 {
			t.Errorf("refreshed token refused: %d %q", d.status, d.header.Get("WWW-Authenticate"))
		}
	})
}

func TestEndToEndBindsAtTokenEndpointWithoutDPoPJKT(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.EdDSA)
	code := firm.authorizationCode(nil, false)
	tok := firm.post("/oauth/token", codeForm(code), true)
	if tok.status != 200 || tok.str("token_type") != "DPoP" {
		t.Fatalf("token: %d %v", tok.status, tok.body)
	}
	if r := firm.send("GET", "/v1/data", nil, true, "DPoP", tok.str("access_token")); r.status != 200 {
		t.Fatalf("data: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

func TestEndToEndPAR(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.ES256)
	other := newClient(t, s.URL, jose.ES256)
	base := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"code_challenge": {challenge()}, "code_challenge_method": {"S256"}, "state": {"state-0123456789"},
	}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range base {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		prove  bool
		code   string
		reason string
	}{
		{"no authorization_details", with(), false, "invalid_authorization_details", rar.ReasonMissing},
		{"unknown category", with("authorization_details", `[{"type":"steward_customer_data","categories":["ShoeSize"],"purpose":"Marketing","duration":"P1D"}]`), false, "invalid_authorization_details", rar.ReasonUnknownCategory},
		{"duration above the bound", with("authorization_details", `[{"type":"steward_customer_data","categories":["Age"],"purpose":"DirectMarketing","duration":"P2Y"}]`), false, "invalid_authorization_details", rar.ReasonDurationBound},
		{"malformed dpop_jkt", with("authorization_details", details, "dpop_jkt", "not-a-thumbprint"), false, "invalid_request", ""},
		{"dpop_jkt differs from the proof key", with("authorization_details", details, "dpop_jkt", other.jkt()), true, "invalid_dpop_proof", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := firm.post("/oauth/par", c.form, c.prove)
			wantError(t, r, 400, c.code)
			if c.reason != "" && !strings.Contains(r.str("error_description"), c.reason+": ") {
				t.Errorf("error_description %q lacks reason %q", r.str("error_description"), c.reason)
			}
		})
	}
	t.Run("a proof at PAR binds the code", func(t *testing.T) {
		code := firm.authorizationCode(nil, true)
		if r := firm.post("/oauth/token", codeForm(code), true); r.status != 200 || r.str("token_type") != "DPoP" {
			t.Fatalf("token: %d %v", r.status, r.body)
		}
	})
	t.Run("a code bound by dpop_jkt is refused to another key, and burned", func(t *testing.T) {
		code := firm.authorizationCode(url.Values{"dpop_jkt": {firm.jkt()}}, false)
		wantError(t, other.post("/oauth/token", codeForm(code), true), 400, "invalid_dpop_proof")
		wantError(t, firm.post("/oauth/token", codeForm(code), true), 400, "invalid_grant")
	})
}

func TestEndToEndClientCredentials(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.ES256)
	form := url.Values{"grant_type": {"client_credentials"}}
	wantError(t, firm.post("/oauth/token", form, false), 400, "invalid_dpop_proof")

	// The first attempt has no nonce: the server answers use_dpop_nonce
	// with a DPoP-Nonce header, which the client's retry uses.
	firm.nonce = ""
	r := firm.post("/oauth/token", form, true)
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("token: %d %v", r.status, r.body)
	}
	if r.header.Get(dpop.NonceHeader) == "" {
		t.Error("no fresh DPoP-Nonce on the token response")
	}
	if _, ok := r.body["authorization_details"]; ok {
		t.Error("authorization_details in a client_credentials response")
	}
}

func TestEndToEndNonceChallenge(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.ES256)
	req, _ := http.NewRequest("POST", s.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	req.Header.Set("DPoP", firm.proof("POST", s.URL+"/oauth/token", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 400 || body["error"] != "use_dpop_nonce" || resp.Header.Get(dpop.NonceHeader) == "" {
		t.Fatalf("got %d %v, DPoP-Nonce %q; want 400 use_dpop_nonce with a nonce", resp.StatusCode, body, resp.Header.Get(dpop.NonceHeader))
	}
}

// TestEndToEndFrontChannelInjection checks that a dpop_jkt added to the
// authorization URL in the browser cannot bind the code to another key.
func TestEndToEndFrontChannelInjection(t *testing.T) {
	s := newServer(t)
	firm := newClient(t, s.URL, jose.ES256)
	attacker := newClient(t, s.URL, jose.ES256)
	form := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"code_challenge": {challenge()}, "code_challenge_method": {"S256"}, "state": {"state-0123456789"},
		"authorization_details": {details},
	}
	par := firm.post("/oauth/par", form, false)
	if par.status != http.StatusCreated {
		t.Fatalf("PAR: %d %v", par.status, par.body)
	}
	q := url.Values{"client_id": {clientID}, "request_uri": {par.str("request_uri")}, "dpop_jkt": {attacker.jkt()}}
	r := firm.send("GET", "/oauth/authorize?"+q.Encode(), nil, false, "", "")
	if r.header.Get("Location") != "" && strings.Contains(r.header.Get("Location"), "code=") {
		t.Fatalf("authorize issued a code despite the injected dpop_jkt: %s", r.header.Get("Location"))
	}
}
