package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
)

// TestServeMountsOAuth: serve publishes the authorization server at its
// own URL, keeps client administration behind the operator token, and
// keeps the signing key across restarts.
func TestServeMountsOAuth(t *testing.T) {
	dir := t.TempDir()
	token := strings.Repeat("t", 40)
	start := func() (string, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		c := config{Addr: "127.0.0.1:0", DataDir: dir, OperatorToken: token, ShutdownTimeout: 5 * time.Second,
			MaxBody: 1 << 20, LedgerOrigin: DefaultLedgerOrigin}
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- serve(ctx, c, slog.New(slog.DiscardHandler), func(b string) { ready <- b }) }()
		select {
		case base := <-ready:
			return base, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		case err := <-done:
			t.Fatalf("serve: %v", err)
		}
		return "", nil
	}
	base, stop := start()
	var md map[string]any
	_ = json.Unmarshal(get(t, base+oauth.PathMetadata), &md)
	if md["issuer"] != base || md["token_endpoint"] != base+oauth.PathToken || md["backchannel_authentication_endpoint"] != base+oauth.PathBackchannel {
		t.Errorf("metadata: %v", md)
	}
	jwks := get(t, base+oauth.PathJWKS)
	if !strings.Contains(string(jwks), `"kty":"EC"`) {
		t.Errorf("jwks: %s", jwks)
	}
	resp, err := http.PostForm(base+oauth.PathPAR, url.Values{"response_type": {"code"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("PAR without client authentication: %d", resp.StatusCode)
	}
	resp, err = http.PostForm(base+oauth.PathBackchannel, url.Values{"login_hint": {"AAAAA-AAAAA"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("backchannel request without client authentication: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + oauth.PathShareCodes)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != oauth.PathAccountLogin {
		t.Errorf("share codes page without signing in: %d at %s, want the sign-in page", resp.StatusCode, resp.Request.URL.Path)
	}
	mint := func(bearer string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/oauth/firms/"+string(broker.NewFirmID())+"/initial-access-tokens", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := mint(""); st != http.StatusUnauthorized {
		t.Errorf("operator route without the token: %d", st)
	}
	if st := mint(token); st != http.StatusNotFound {
		t.Errorf("operator route for an unknown firm: %d", st)
	}
	stop()
	base, stop = start()
	defer stop()
	if again := get(t, base+oauth.PathJWKS); string(again) != string(jwks) {
		t.Errorf("signing key changed across restarts:\n%s\n%s", jwks, again)
	}
}

// TestAuditWithClientCredentials: a regulator's OAuth client (client
// credentials, private_key_jwt) reads the audit API with its access
// token; a firm's access token is refused with 403 and an unknown token
// with 401.
func TestAuditWithClientCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st, _, err := backend.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "Information Commissioner's Office", Jurisdiction: "GB", CreatedAt: time.Now()}
	firm := broker.Firm{ID: broker.NewFirmID(), LegalName: "Acme Retail Ltd", Sector: "retail", Jurisdiction: "GB", Status: broker.FirmApproved,
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	type key struct {
		id   broker.ClientID
		priv ed25519.PrivateKey
	}
	newKey := func() (key, []byte) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		k := key{id: broker.NewClientID(), priv: priv}
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"}}})
		return k, jwks
	}
	regKey, regJWKS := newKey()
	firmKey, firmJWKS := newKey()
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateRegulator(ctx, reg); err != nil {
			return err
		}
		if err := tx.CreateFirm(ctx, firm); err != nil {
			return err
		}
		return tx.CreateClient(ctx, broker.Client{ID: firmKey.id, FirmID: firm.ID, Name: "Acme app", RedirectURIs: []string{"https://acme.example/cb"},
			JWKS: firmJWKS, Status: broker.ClientActive, CreatedAt: time.Now()})
	})
	if err == nil {
		err = st.OAuth().CreateRegulatorClient(ctx, reg.ID, broker.Client{ID: regKey.id, Name: "ICO audit", JWKS: regJWKS, Status: broker.ClientActive, CreatedAt: time.Now()})
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	base := startServeWith(t, config{DataDir: dir}).base

	token := func(k key, scope, proof string) string {
		t.Helper()
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.priv, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		jti := make([]byte, 16)
		_, _ = rand.Read(jti)
		assertion, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: string(k.id), Subject: string(k.id), Audience: jwt.Audience{base},
			ID: hex.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		req, _ := http.NewRequest(http.MethodPost, base+oauth.PathToken, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proof != "" {
			req.Header.Set(dpop.Header, proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		tok, _ := out["access_token"].(string)
		if resp.StatusCode != 200 || tok == "" {
			t.Fatalf("client credentials for %s: %d %v", scope, resp.StatusCode, out)
		}
		return tok
	}
	audit := func(bearer string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/audit/entries", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := audit(token(regKey, oauth.ScopeAuditRead, "")); st != 200 {
		t.Errorf("regulator's access token on the audit API: %d, want 200", st)
	}
	// The firm scope needs a DPoP-bound token: prove a key, with the
	// server's nonce.
	proofKey, _ := newKey()
	proof := func(nonce string) string {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: proofKey.priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType(dpop.ProofType))
		if err != nil {
			t.Fatal(err)
		}
		jti := make([]byte, 16)
		_, _ = rand.Read(jti)
		payload, _ := json.Marshal(map[string]any{"jti": hex.EncodeToString(jti), "htm": "POST", "htu": base + oauth.PathToken,
			"iat": time.Now().Unix(), "nonce": nonce})
		obj, err := sig.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := obj.CompactSerialize()
		return out
	}
	nonceResp, err := http.PostForm(base+oauth.PathToken, url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	nonceResp.Body.Close()
	firmToken := token(firmKey, oauth.ScopeFirm, proof(nonceResp.Header.Get(dpop.NonceHeader)))
	if st := audit(firmToken); st != 401 && st != 403 {
		t.Errorf("firm's DPoP-bound access token on the audit API: %d, want 401 or 403", st)
	}
	regBound := token(regKey, oauth.ScopeAuditRead, proof(nonceResp.Header.Get(dpop.NonceHeader)))
	if st := audit(regBound); st != 401 {
		t.Errorf("DPoP-bound token sent as Bearer to the audit API: %d, want 401", st)
	}
	if st := audit("not-a-token"); st != 401 {
		t.Errorf("unknown token on the audit API: %d, want 401", st)
	}
}

func TestClientIPFrom(t *testing.T) {
	if clientIPFrom("") != nil {
		t.Error("no header configured: want the provider's default (nil)")
	}
	f := clientIPFrom("X-Forwarded-For")
	for _, tc := range []struct {
		xff  []string
		want string
	}{
		{nil, "192.0.2.1"},
		{[]string{"203.0.113.9"}, "203.0.113.9"},
		{[]string{"10.0.0.1, 198.51.100.7"}, "198.51.100.7"},    // the proxy's entry is the last
		{[]string{"spoofed", "198.51.100.8"}, "198.51.100.8"},   // last header line
		{[]string{"198.51.100.7, not-an-address"}, "192.0.2.1"}, // garbage: the peer
		{[]string{"2001:db8::1"}, "2001:db8::1"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "192.0.2.1:4321"
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := f(r); got != tc.want {
			t.Errorf("X-Forwarded-For %q: %q, want %q", tc.xff, got, tc.want)
		}
	}
}
