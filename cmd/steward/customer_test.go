package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/customerapi"
	"github.com/stewardhq/steward/broker/dataapi"
	"github.com/stewardhq/steward/broker/firmclient"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
)

// TestServeCustomerAPI: a demo customer signs in on the real login page
// (reached through a firm's pushed authorization request), turns the
// login into an API session and reads /v1/me, their decrypted vault and
// their export; a state change needs the CSRF token and Steward's Origin.
func TestServeCustomerAPI(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	vcfg, err := loadVaultKey(config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	creds := demoCredentials{Passwords: map[string]string{}}
	for _, c := range demoCustomers {
		creds.Passwords[c.handle] = c.handle + "-correct-horse"
	}
	if err := seedDemo(ctx, dir, creds, vcfg); err != nil {
		t.Fatal(err)
	}
	// The demo retail firm's OAuth client, to start a sign-in with.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}}})
	clientID := broker.NewClientID()
	st, _, err := backend.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		fs, err := tx.ListFirms(ctx, store.Page{})
		if err != nil {
			return err
		}
		for _, f := range fs {
			if f.LegalName == "Acme Retail Ltd" {
				return tx.CreateClient(ctx, broker.Client{ID: clientID, FirmID: f.ID, Name: "Acme app", RedirectURIs: []string{"https://acme.example/cb"},
					JWKS: jwks, Status: broker.ClientActive, CreatedAt: time.Now()})
			}
		}
		return broker.ErrNotFound
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	base := startServeWith(t, config{DataDir: dir}).base

	// The firm pushes an authorization request (private_key_jwt).
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := time.Now()
	assertion, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: string(clientID), Subject: string(clientID), Audience: jwt.Audience{base},
		ID: hex.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(base+oauth.PathPAR, url.Values{"response_type": {"code"}, "client_id": {string(clientID)},
		"redirect_uri": {"https://acme.example/cb"}, "state": {"state-1234567890"}, "code_challenge_method": {"S256"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"authorization_details": {`[{"type":"steward_customer_data","categories":["Contact"],"purpose":"Marketing","duration":"P30D"}]`},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	var par map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&par)
	resp.Body.Close()
	requestURI, _ := par["request_uri"].(string)
	if resp.StatusCode != http.StatusCreated || requestURI == "" {
		t.Fatalf("PAR: %d %v", resp.StatusCode, par)
	}

	// The customer's browser: authorize → login page → sign in.
	b := signIn(t, base, oauth.PathAuthorize+"?"+url.Values{"client_id": {string(clientID)}, "request_uri": {requestURI}}.Encode(),
		"alice", creds.Passwords["alice"])
	send := b.send
	// The login cookie is scoped to /oauth/: the API needs the session.
	if status, body := send("GET", "/v1/me", "", "", nil); status != http.StatusUnauthorized {
		t.Errorf("/v1/me before the session: %d %s", status, body)
	}
	sess := b.session()

	status, body := send("GET", "/v1/me", "", "", nil)
	var me map[string]any
	if err := json.Unmarshal(body, &me); status != http.StatusOK || err != nil || me["handle"] != "alice" || me["id"] != string(sess.CustomerID) ||
		me["csrf_token"] != sess.CSRFToken || bytes.Contains(body, []byte("argon2")) {
		t.Fatalf("/v1/me: %d %s", status, body)
	}
	status, body = send("GET", "/v1/me/vault", "", "", nil)
	if status != http.StatusOK || !bytes.Contains(body, []byte("12 Elm Row")) {
		t.Errorf("/v1/me/vault: %d %s", status, body)
	}
	status, body = send("GET", "/v1/me/export", "", "", nil)
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"consent_records"`)) {
		t.Errorf("/v1/me/export: %d %.200s", status, body)
	}

	terms := `{"format":"steward.terms/v1","rules":[{"effect":"deny","match":{"categories":["Health"]}}]}`
	if status, body := send("PUT", "/v1/me/terms", "application/json", terms, map[string]string{"Origin": base}); status != http.StatusForbidden {
		t.Errorf("terms without the CSRF token: %d %s", status, body)
	}
	if status, body := send("PUT", "/v1/me/terms", "application/json", terms,
		map[string]string{"Origin": "https://evil.example", oauth.CSRFHeader: sess.CSRFToken}); status != http.StatusForbidden {
		t.Errorf("terms from another origin: %d %s", status, body)
	}
	status, body = send("PUT", "/v1/me/terms", "application/json", terms, map[string]string{"Origin": base, oauth.CSRFHeader: sess.CSRFToken})
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"version":1`)) {
		t.Errorf("terms: %d %s", status, body)
	}
}

// browser is a customer's browser with a cookie jar.
type browser struct {
	t      *testing.T
	base   string
	client *http.Client
}

// signIn opens authorizePath (an authorization request some firm pushed),
// signs in on the login page it leads to, and returns the browser.
func signIn(t *testing.T, base, authorizePath, handle, password string) *browser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, base: base, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	status, loc := b.send("GET", strings.TrimPrefix(authorizePath, base), "", "", nil)
	login, err := url.Parse(string(loc))
	if status != http.StatusSeeOther || err != nil || login.Path != oauth.PathLogin {
		t.Fatalf("authorize: %d %s", status, loc)
	}
	interaction := login.Query().Get("interaction")
	status, page := b.send("GET", oauth.PathLogin+"?interaction="+url.QueryEscape(interaction), "", "", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if status != http.StatusOK || m == nil {
		t.Fatalf("login page: %d %s", status, page)
	}
	form := url.Values{"csrf": {string(m[1])}, "interaction": {interaction}, "handle": {handle}, "password": {password}}
	if status, body := b.send("POST", oauth.PathLogin, "application/x-www-form-urlencoded", form.Encode(), nil); status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", status, body)
	}
	return b
}

// apiSession is the answer of oauth.PathCustomerSession.
type apiSession struct {
	CustomerID broker.CustomerID `json:"customer_id"`
	CSRFToken  string            `json:"csrf_token"`
}

// session turns the browser's login into a customer API session.
func (b *browser) session() apiSession {
	b.t.Helper()
	status, body := b.send("GET", oauth.PathCustomerSession, "", "", nil)
	var s apiSession
	if err := json.Unmarshal(body, &s); status != http.StatusOK || err != nil || s.CSRFToken == "" {
		b.t.Fatalf("session: %d %s", status, body)
	}
	return s
}

// send makes a request; for a 303 it returns the Location as the body.
func (b *browser) send(method, path, contentType, body string, header map[string]string) (int, []byte) {
	b.t.Helper()
	req, err := http.NewRequestWithContext(b.t.Context(), method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, []byte(resp.Header.Get("Location"))
	}
	return resp.StatusCode, out
}

// TestCustomerSeesDataAPIDisclosure: a firm fetches a customer's data
// through the Data API; the customer, signed in to the portal API, sees
// that disclosure with the same commitment (their salt opens it over the
// data the firm got) and a receipt that verifies against the ledger key
// on disk; another customer sees nothing of it; and the customer's
// one-click revocation refuses the firm's very next fetch.
func TestCustomerSeesDataAPIDisclosure(t *testing.T) {
	e := newDataEnv(t, onSQLite)
	ctx := t.Context()
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
	r := e.fetch(t, e.client, id, "fields=Contact.email", tok.AccessToken)
	var got dataapi.Disclosed
	if err := r.JSON(&got); r.Status != http.StatusOK || err != nil || got.Receipt == nil {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}

	// The portal's sign-in goes through an authorization request too.
	portal := func(who broker.Customer) (*browser, apiSession) {
		authURL, err := e.client.PAR(ctx, dataRedirect, details("P30D", 100), firmclient.NewPKCE())
		if err != nil {
			t.Fatal(err)
		}
		b := signIn(t, e.base, authURL, who.Handle, dataPassword)
		return b, b.session()
	}
	alice, aliceSess := portal(e.alice)

	type page struct{ Items []customerapi.Disclosure }
	var d customerapi.Disclosure
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, body := alice.send("GET", "/v1/me/disclosures", "", "", nil)
		var p page
		if err := json.Unmarshal(body, &p); status != http.StatusOK || err != nil || len(p.Items) != 1 {
			t.Fatalf("disclosures: %d %s", status, body)
		}
		if d = p.Items[0]; d.ReceiptStatus == "integrated" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt never integrated: %s", body)
		}
	}
	if d.ID != got.DisclosureID || d.ConsentID != id || d.Firm.ID != e.firm.ID || d.Firm.Name != "Acme Retail Ltd" ||
		d.Purpose != got.Purpose || d.Commitment != got.Commitment || !bytes.Equal(d.Entry, got.Receipt.Entry) {
		t.Errorf("the customer's disclosure %+v differs from the firm's %+v", d, got)
	}
	if !broker.CheckCommitment(d.Salt, got.Data, d.Commitment) {
		t.Error("the customer's salt does not open the commitment over the data the firm received")
	}
	keyFile, err := os.ReadFile(filepath.Join(e.dir, "ledger.key"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(keyFile)), "\n")
	v, err := note.NewVerifier(lines[len(lines)-1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.VerifyReceipt(*d.Receipt, d.Entry, v); err != nil {
		t.Errorf("receipt: %v", err)
	}

	bob, bobSess := portal(e.bob)
	status, body := bob.send("GET", "/v1/me/disclosures", "", "", nil)
	if status != http.StatusOK || bytes.Contains(body, []byte(got.DisclosureID)) || !bytes.Contains(body, []byte(`"items":[]`)) {
		t.Errorf("bob's disclosures: %d %s", status, body)
	}
	csrf := func(s apiSession) map[string]string {
		return map[string]string{"Origin": e.base, oauth.CSRFHeader: s.CSRFToken}
	}
	if status, body := bob.send("GET", "/v1/me/consents/"+string(id), "", "", nil); status != http.StatusNotFound {
		t.Errorf("bob reads alice's consent: %d %s", status, body)
	}
	if status, body := bob.send("POST", "/v1/me/consents/"+string(id)+"/revoke", "", "", csrf(bobSess)); status != http.StatusNotFound {
		t.Errorf("bob revokes alice's consent: %d %s", status, body)
	}
	if r := e.fetch(t, e.client, id, "fields=Contact.email", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch after bob's attempt: %d %s", r.Status, r.Body)
	}

	status, body = alice.send("POST", "/v1/me/consents/"+string(id)+"/revoke", "", "", csrf(aliceSess))
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"state":"revoked"`)) {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
		t.Errorf("fetch after the customer revoked: %d %s", r.Status, r.Body)
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 2 {
		t.Errorf("%d disclosures, want 2 (nothing after the revocation)", n)
	}
}
