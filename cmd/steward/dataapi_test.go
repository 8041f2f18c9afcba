package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/dataapi"
	"github.com/stewardhq/steward/broker/firmclient"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
	"github.com/stewardhq/steward/broker/vault"
)

// dataEnv is a running `steward serve` on its embedded store, seeded with
// two firms (each with a client), and two customers with vault data.
type dataEnv struct {
	base string
	dir  string
	// dbURL is the PostgreSQL database, or "" for SQLite in dir.
	dbURL    string
	operator string
	st       backend.Migrator
	firm     broker.Firm
	other    broker.Firm
	client   *firmclient.Client
	otherCl  *firmclient.Client
	// regulator is a regulator's OAuth client (client credentials, audit:read).
	regulator *firmclient.Client
	// keys and clientIDs are the two firms' and the regulator's client keys and ids.
	keys      [3]ed25519.PrivateKey
	clientIDs [3]string
	alice     broker.Customer
	bob       broker.Customer
}

const (
	dataRedirect = "https://firm.example/callback"
	dataPassword = "correct horse battery staple"
)

// backendURL gives a test its store: "" for the SQLite file in the data
// directory, or a fresh PostgreSQL database (pgtest.URL).
type backendURL func(t *testing.T) string

func onSQLite(*testing.T) string { return "" }

func onPostgres(t *testing.T) string { return pgtest.URL(t) }

// backends are the stores a test runs on, by name.
var backends = []struct {
	name string
	db   backendURL
}{{"sqlite", onSQLite}, {"postgres", onPostgres}}

// TestDataAPI runs the Data API's tests over real HTTP, real OAuth flows
// and real OPA on each store: the embedded SQLite file and PostgreSQL
// (which pipelines and group-commits disclosures; see dataapi.committer).
func TestDataAPI(t *testing.T) {
	tests := []struct {
		name string
		run  func(*testing.T, backendURL)
	}{
		{"Disclosure", testDataAPIDisclosure},
		{"RefusesWithoutAllowNow", testDataAPIRefusesWithoutAllowNow},
		{"Authorization", testDataAPIAuthorization},
		{"ExpiredToken", testDataAPIExpiredToken},
		{"FirmView", testDataAPIFirmView},
		{"DeletionAfterRevocation", testDataAPIDeletionAfterRevocation},
		{"ReplayedProof", testDataAPIReplayedProof},
		{"AfterErasure", testDataAPIAfterErasure},
		{"UnknownPaths", testDataAPIUnknownPaths},
		{"ConcurrentFetches", testDataAPIConcurrentFetches},
		{"BatchRefused", testDataAPIBatchRefused},
		{"RememberedToken", testDataAPIRememberedToken},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, b.db) })
			}
		})
	}
}

func newDataEnv(t *testing.T, db backendURL) *dataEnv { return newDataEnvWith(t, db, nil) }

// newDataEnvWith is newDataEnv with mod applied to the server's config.
func newDataEnvWith(t *testing.T, db backendURL, mod func(*config)) *dataEnv {
	t.Helper()
	e := seedDataEnv(t, t.TempDir(), db(t))
	c := config{DataDir: e.dir, DatabaseURL: e.dbURL, OperatorToken: e.operator}
	if mod != nil {
		mod(&c)
	}
	e.base = startServeWith(t, c).base
	e.setBase(e.base)
	return e
}

// setBase points the firms' clients at a running server, keeping their
// DPoP keys (tokens are bound to them) across restarts.
func (e *dataEnv) setBase(base string) {
	e.base = base
	if e.client == nil {
		e.client = firmclient.New(base, e.clientIDs[0], e.keys[0], "k1")
		e.otherCl = firmclient.New(base, e.clientIDs[1], e.keys[1], "k1")
		e.regulator = firmclient.New(base, e.clientIDs[2], e.keys[2], "k1")
		return
	}
	e.client.Base, e.otherCl.Base, e.regulator.Base = base, base, base
}

// seedDataEnv writes the firms, clients, customers and vault records into
// the store of dir (SQLite) or dbURL, before any server starts. The store
// stays open for the test to inspect.
func seedDataEnv(t *testing.T, dir, dbURL string) *dataEnv {
	t.Helper()
	ctx := t.Context()
	e := &dataEnv{dir: dir, dbURL: dbURL, operator: testOperatorToken}
	st, _, err := backend.Open(ctx, dbURL, e.dir)
	if err != nil {
		t.Fatal(err)
	}
	vcfg, err := vault.LoadOrCreateKeyFile(e.dir + "/master.key")
	if err != nil {
		t.Fatal(err)
	}
	vlt, err := vault.New(st, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	hash, err := password.Hash(dataPassword, password.Params{Memory: 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	var jwks [2][]byte
	newFirm := func(i int, name string) broker.Firm {
		e.keys[i], jwks[i] = firmclient.NewKey("k1")
		e.clientIDs[i] = string(broker.NewClientID())
		return broker.Firm{ID: broker.NewFirmID(), LegalName: name, Sector: "retail", Jurisdiction: "GB", Status: broker.FirmApproved, CreatedAt: now, UpdatedAt: now}
	}
	e.firm = newFirm(0, "Acme Retail Ltd")
	e.other = newFirm(1, "Rival Stores plc")
	e.alice = broker.Customer{ID: broker.NewCustomerID(), Handle: "alice", DisplayName: "Alice", Email: "alice@example.org", Jurisdiction: "GB",
		PasswordHash: hash, CreatedAt: now}
	e.bob = broker.Customer{ID: broker.NewCustomerID(), Handle: "bob", DisplayName: "Bob", Email: "bob@example.org", Jurisdiction: "GB",
		PasswordHash: hash, CreatedAt: now}
	err = st.Update(ctx, func(tx store.Tx) error {
		for i, f := range []broker.Firm{e.firm, e.other} {
			if err := tx.CreateFirm(ctx, f); err != nil {
				return err
			}
			if err := tx.CreateClient(ctx, broker.Client{ID: broker.ClientID(e.clientIDs[i]), FirmID: f.ID, Name: f.LegalName + " app",
				RedirectURIs: []string{dataRedirect}, JWKS: jwks[i], Status: broker.ClientActive, CreatedAt: now}); err != nil {
				return err
			}
		}
		for _, c := range []broker.Customer{e.alice, e.bob} {
			if err := tx.CreateCustomer(ctx, c); err != nil {
				return err
			}
			for cat, v := range map[string]string{
				"Contact":    `{"email":"` + c.Email + `","phone":"+44 20 7946 0018"}`,
				"Preference": `{"contact_by":"email","interests":["cycling"]}`,
			} {
				if err := vlt.PutTx(ctx, tx, broker.Record{CustomerID: c.ID, Category: cat, Value: json.RawMessage(v), Source: "customer", UpdatedAt: now}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var regJWKS []byte
	e.keys[2], regJWKS = firmclient.NewKey("k1")
	e.clientIDs[2] = string(broker.NewClientID())
	reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "Information Commissioner's Office", Jurisdiction: "GB", CreatedAt: now}
	if err := st.Update(ctx, func(tx store.Tx) error { return tx.CreateRegulator(ctx, reg) }); err != nil {
		t.Fatal(err)
	}
	err = st.OAuth().CreateRegulatorClient(ctx, reg.ID, broker.Client{ID: broker.ClientID(e.clientIDs[2]), Name: "ICO audit", JWKS: regJWKS,
		Status: broker.ClientActive, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	t.Cleanup(st.Close)
	return e
}

// details asks for Contact and Preference for marketing, 30 days, at most
// max fetches a day.
func details(duration string, max int) string {
	return detailsOf([]string{"Contact", "Preference"}, duration, max)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// consentToken runs the whole authorization: PAR with DPoP, the customer's
// login and consent screen (ticking only the given categories), and the
// code exchange. It returns the token and the consent id.
func (e *dataEnv) consentToken(t *testing.T, c *firmclient.Client, who broker.Customer, det string, tick ...string) (firmclient.Token, broker.ConsentID) {
	t.Helper()
	ctx := t.Context()
	pk := firmclient.NewPKCE()
	authURL, err := c.PAR(ctx, dataRedirect, det, pk)
	if err != nil {
		t.Fatal(err)
	}
	code, err := firmclient.NewCustomer(e.base, who.Handle, dataPassword).Approve(ctx, authURL, tick...)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Exchange(ctx, code, pk.Verifier, dataRedirect)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Do(ctx, http.MethodPost, oauth.PathIntrospect, url.Values{"token": {tok.AccessToken}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		ConsentID broker.ConsentID `json:"consent_id"`
	}
	if err := r.JSON(&in); err != nil || in.ConsentID == "" {
		t.Fatalf("introspection: %d %s", r.Status, r.Body)
	}
	return tok, in.ConsentID
}

func (e *dataEnv) fetch(t *testing.T, c *firmclient.Client, id broker.ConsentID, query, token string) firmclient.Response {
	t.Helper()
	path := "/v1/consents/" + string(id) + "/data"
	if query != "" {
		path += "?" + query
	}
	r, err := c.Do(t.Context(), http.MethodGet, path, nil, nil, token)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// counts returns how many disclosure rows the customer has.
func (e *dataEnv) disclosures(t *testing.T, who broker.CustomerID) []broker.Disclosure {
	t.Helper()
	var out []broker.Disclosure
	err := e.st.View(t.Context(), func(tx store.Tx) (err error) {
		out, err = tx.ListDisclosures(t.Context(), who, store.Page{Limit: store.MaxLimit})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ledgerEntries returns the sequenced ledger entries of type typ for a consent,
// waiting up to 10 s for the sequencer to reach want of them.
func (e *dataEnv) ledgerEntries(t *testing.T, id broker.ConsentID, typ broker.EntryType, want int) []store.IndexedEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []store.IndexedEntry
		err := e.st.View(t.Context(), func(tx store.Tx) (err error) {
			got, err = tx.SearchLedger(t.Context(), store.LedgerFilter{ConsentID: id, Types: []broker.EntryType{typ}, After: -1, Limit: 1000})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testDataAPIDisclosure: a firm with a DPoP-bound consent token fetches
// exactly what the customer granted, minimised to the fields it asks for;
// the response carries the committed ledger entry, the commitment opens
// with the salt, and the entry gets an inclusion proof.
func testDataAPIDisclosure(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")

	r := e.fetch(t, e.client, id, "fields=Contact.email", tok.AccessToken)
	if r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	var got dataapi.Disclosed
	if err := r.JSON(&got); err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != `{"Contact":{"email":"alice@example.org"}}` {
		t.Errorf("data = %s, want only Contact.email", got.Data)
	}
	if !broker.CheckCommitment(got.Salt, got.Data, got.Commitment) {
		t.Errorf("commitment %s does not open with the salt over the data", got.Commitment)
	}
	if got.Receipt == nil {
		t.Fatal("no receipt")
	}
	ent, err := broker.ParseEntry(got.Receipt.Entry)
	if err != nil {
		t.Fatal(err)
	}
	if ent.Type != broker.EntryDisclosure || ent.Consent != id || ent.Customer != got.Customer || ent.Commitment != got.Commitment ||
		ent.Disclosure != got.DisclosureID || strings.Join(ent.Categories, ",") != "Contact" {
		t.Errorf("entry %+v does not match the disclosure %+v", ent, got)
	}
	if strings.Contains(string(got.Receipt.Entry), "alice") || strings.Contains(string(r.Body), string(e.alice.ID)) {
		t.Errorf("the response or entry names the customer: %s", r.Body)
	}

	// Preference was unticked on the consent screen: refused, and on record.
	r = e.fetch(t, e.client, id, "category=Preference", tok.AccessToken)
	if r.Status != http.StatusForbidden {
		t.Fatalf("fetch of an unticked category: %d %s", r.Status, r.Body)
	}
	var refused dataapi.Refused
	if err := r.JSON(&refused); err != nil || refused.DecisionHash == "" || len(refused.Reasons) == 0 {
		t.Errorf("refusal body: %s", r.Body)
	}

	// Whole granted scope by default.
	r = e.fetch(t, e.client, id, "", tok.AccessToken)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"phone"`) {
		t.Fatalf("fetch of the granted scope: %d %s", r.Status, r.Body)
	}

	// Every disclosure row has its ledger entry, and the entry's receipt
	// proves inclusion under a signed checkpoint.
	ds := e.disclosures(t, e.alice.ID)
	entries := e.ledgerEntries(t, id, broker.EntryDisclosure, len(ds))
	if len(ds) != 2 || len(entries) != len(ds) {
		t.Fatalf("%d disclosures, %d ledger entries; want 2 and 2", len(ds), len(entries))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(got.Receipt.URL)
		if err != nil {
			t.Fatal(err)
		}
		var rc broker.Receipt
		_ = json.NewDecoder(resp.Body).Decode(&rc)
		resp.Body.Close()
		if rc.Integrated() {
			if rc.LeafHash != got.Receipt.LeafHash {
				t.Errorf("receipt leaf %s, want %s", rc.LeafHash, got.Receipt.LeafHash)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt never integrated: %+v", rc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testDataAPIRefusesWithoutAllowNow: revocation, firm suspension, a
// stricter terms version and the frequency limit each refuse the very next
// request, with nothing disclosed.
func testDataAPIRefusesWithoutAllowNow(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	ctx := t.Context()
	svc := consent.New(e.st, nil, time.Now)

	t.Run("frequency", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 2), "Contact", "Preference")
		for i := range 2 {
			if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
				t.Fatalf("fetch %d: %d %s", i, r.Status, r.Body)
			}
		}
		r := e.fetch(t, e.client, id, "", tok.AccessToken)
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("third fetch in a day: %d %s", r.Status, r.Body)
		}
	})
	// Another replica, its clock an hour ahead, disclosed under the
	// consent: this server dates its own disclosure no earlier, so the
	// consent's disclosures stay in time order and the frequency limit
	// still counts both (without that, the count came out 0 and a third
	// fetch passed the limit of 2).
	t.Run("clock behind another replica's", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 2), "Contact", "Preference")
		ahead := time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond)
		if err := e.st.Update(ctx, func(tx store.Tx) error {
			c, err := tx.GetConsent(ctx, id)
			if err != nil {
				return err
			}
			return tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: id, FirmID: c.FirmID,
				CustomerID: c.CustomerID, Categories: []string{"Contact"}, At: ahead, ReceiptID: "from another replica"})
		}); err != nil {
			t.Fatal(err)
		}
		r := e.fetch(t, e.client, id, "", tok.AccessToken)
		var body struct {
			At time.Time `json:"disclosed_at"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &body) != nil || !body.At.Equal(ahead) {
			t.Fatalf("fetch after a disclosure dated %v: %d, disclosed_at %v; want 200 dated the same", ahead, r.Status, body.At)
		}
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusTooManyRequests {
			t.Fatalf("third disclosure in a day (two of them dated ahead): %d %s; want 429", r.Status, r.Body)
		}
	})
	t.Run("stricter terms", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("fetch: %d %s", r.Status, r.Body)
		}
		doc := `{"format":"steward.terms/v1","rules":[{"effect":"deny","match":{"firms":["` + string(e.firm.ID) + `"]}}]}`
		if _, err := svc.SaveTerms(ctx, e.bob.ID, []byte(doc)); err != nil {
			t.Fatal(err)
		}
		before := len(e.disclosures(t, e.bob.ID))
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusForbidden {
			t.Fatalf("fetch after stricter terms: %d %s", r.Status, r.Body)
		}
		if after := len(e.disclosures(t, e.bob.ID)); after != before {
			t.Errorf("a refused fetch recorded a disclosure: %d → %d", before, after)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("fetch: %d %s", r.Status, r.Body)
		}
		if _, err := svc.Revoke(ctx, e.alice.ID, id, "changed my mind"); err != nil {
			t.Fatal(err)
		}
		r := e.fetch(t, e.client, id, "", tok.AccessToken)
		if r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
			t.Fatalf("fetch after revocation: %d %s", r.Status, r.Body)
		}
	})
	t.Run("expired", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.alice, detailsOf([]string{"Preference"}, "PT2S", 100), "Preference")
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("fetch: %d %s", r.Status, r.Body)
		}
		time.Sleep(2100 * time.Millisecond)
		r := e.fetch(t, e.client, id, "", tok.AccessToken)
		if r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
			t.Fatalf("fetch after expiry: %d %s", r.Status, r.Body)
		}
	})
	t.Run("firm suspended", func(t *testing.T) {
		tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
		e.setFirmStatus(t, "suspend")
		r := e.fetch(t, e.client, id, "", tok.AccessToken)
		if r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
			t.Fatalf("fetch after suspension: %d %s", r.Status, r.Body)
		}
	})
}

// setFirmStatus has the operator suspend or approve the firm.
func (e *dataEnv) setFirmStatus(t *testing.T, action string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/admin/firms/"+string(e.firm.ID)+"/"+action, nil)
	req.Header.Set("Authorization", "Bearer "+e.operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d", action, resp.StatusCode)
	}
}

// dataRoutes are every Data API route, for a consent id.
func dataRoutes(id broker.ConsentID) []struct{ method, path, body string } {
	c := "/v1/consents/" + string(id)
	return []struct{ method, path, body string }{
		{http.MethodGet, c + "/data", ""},
		{http.MethodGet, c, ""},
		{http.MethodPost, c + "/returned-data", `{"category":"Preference","value":{"contact_by":"post"}}`},
		{http.MethodPost, c + "/deletion", `{}`},
		{http.MethodGet, "/v1/firm/consents", ""},
	}
}

// call sends one Data API request with c's DPoP key (nil c: no proof).
func (e *dataEnv) call(t *testing.T, c *firmclient.Client, method, path, body, scheme, token string) int {
	t.Helper()
	if c != nil && scheme == "DPoP" {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		r, err := c.Do(t.Context(), method, path, nil, b, token)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", scheme+" "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// testDataAPIAuthorization is the authorization matrix: every Data API
// route tried with a stolen token (another DPoP key), the Bearer scheme,
// no token, a made-up token, the token of another consent, another firm's
// consent, and a regulator's token is refused; afterwards nothing was
// disclosed, returned or attested.
func testDataAPIAuthorization(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	ctx := t.Context()
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact", "Preference")
	_, bobsID := e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
	otherTok, otherID := e.consentToken(t, e.otherCl, e.alice, details("P30D", 100), "Contact")
	regTok := e.regulatorToken(t)

	thief := firmclient.New(e.base, e.client.ID, e.client.Key, "k1") // same client, another DPoP key
	for _, tc := range []struct {
		name   string
		c      *firmclient.Client
		scheme string
		token  string
		on     broker.ConsentID
	}{
		{"stolen token, other DPoP key", thief, "DPoP", tok.AccessToken, id},
		{"DPoP token sent as Bearer", nil, "Bearer", tok.AccessToken, id},
		{"DPoP scheme without a proof", nil, "DPoP", tok.AccessToken, id},
		{"no token", nil, "Bearer", "", id},
		{"made-up token", e.client, "DPoP", "bm90LWEtdG9rZW4", id},
		{"token of another consent", e.client, "DPoP", tok.AccessToken, bobsID},
		{"another firm's consent", e.client, "DPoP", tok.AccessToken, otherID},
		{"other firm's token on our consent", e.otherCl, "DPoP", otherTok.AccessToken, id},
		{"regulator's token", e.regulator, "DPoP", regTok, id},
		{"regulator's token as Bearer", nil, "Bearer", regTok, id},
	} {
		for _, rt := range dataRoutes(tc.on) {
			st := e.call(t, tc.c, rt.method, rt.path, rt.body, tc.scheme, tc.token)
			// The firm listing with a consent token is a 403; a consent
			// token on another consent is a 404; the rest are 401.
			if st != http.StatusUnauthorized && st != http.StatusNotFound && st != http.StatusForbidden {
				t.Errorf("%s: %s %s: %d, want a refusal", tc.name, rt.method, rt.path, st)
			}
			if tc.c == nil || tc.c == thief || tc.token == "bm90LWEtdG9rZW4" || tc.c == e.regulator {
				if st != http.StatusUnauthorized {
					t.Errorf("%s: %s %s: %d, want 401", tc.name, rt.method, rt.path, st)
				}
			}
		}
	}
	for _, tc := range []struct {
		name  string
		query string
		want  int
	}{
		{"unknown category", "category=NoSuchThing", 400},
		{"unknown parameter", "customer=alice", 400},
		{"malformed field", "fields=email", 400},
		{"too many fields", "fields=" + strings.Repeat("Contact.a,", 70), 400},
	} {
		if r := e.fetch(t, e.client, id, tc.query, tok.AccessToken); r.Status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, r.Status, tc.want)
		}
	}
	if r := e.fetch(t, e.client, "con_../../x", "", tok.AccessToken); r.Status != http.StatusNotFound {
		t.Errorf("malformed consent id: %d", r.Status)
	}
	for _, c := range []broker.CustomerID{e.alice.ID, e.bob.ID} {
		if n := len(e.disclosures(t, c)); n != 0 {
			t.Errorf("customer %s: %d disclosures after refused requests", c, n)
		}
	}
	err := e.st.View(ctx, func(tx store.Tx) error {
		for _, c := range []broker.ConsentID{id, bobsID, otherID} {
			if _, err := tx.GetDeletionAttestation(ctx, c); err == nil {
				t.Errorf("consent %s got a deletion attestation from a refused request", c)
			}
		}
		recs, err := tx.ListRecords(ctx, e.alice.ID)
		for _, r := range recs {
			if r.Source != "customer" {
				t.Errorf("alice's %s record was written by %s", r.Category, r.Source)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testDataAPIExpiredToken: once its access token expires, every route
// refuses it, although the consent is still live.
func testDataAPIExpiredToken(t *testing.T, db backendURL) {
	e := newDataEnvWith(t, db, func(c *config) { c.AccessTokenTTL = 2 * time.Second })
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch with a fresh token: %d %s", r.Status, r.Body)
	}
	time.Sleep(2500 * time.Millisecond)
	for _, rt := range dataRoutes(id) {
		if st := e.call(t, e.client, rt.method, rt.path, rt.body, "DPoP", tok.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("expired token: %s %s: %d, want 401", rt.method, rt.path, st)
		}
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 1 {
		t.Errorf("%d disclosures, want the 1 made before expiry", n)
	}
}

// regulatorToken is a client-credentials audit:read token of a regulator.
func (e *dataEnv) regulatorToken(t *testing.T) string {
	t.Helper()
	tok, err := e.regulator.ClientCredentials(t.Context(), oauth.ScopeAuditRead)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// testDataAPIFirmView: the firm reads its consent and what it may fetch,
// and returns refined data to the customer under a live consent, never
// over a record the customer wrote.
func testDataAPIFirmView(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	ctx := t.Context()
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 3), "Contact", "Preference")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	r, err := e.client.Do(ctx, http.MethodGet, "/v1/consents/"+string(id), nil, nil, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	var v dataapi.ConsentView
	if r.Status != http.StatusOK || r.JSON(&v) != nil {
		t.Fatalf("consent view: %d %s", r.Status, r.Body)
	}
	if v.ID != id || v.State != broker.ConsentGranted || v.MayFetch == nil || !v.MayFetch.Allowed || v.MayFetch.Used != 1 || v.MayFetch.Limit != 3 ||
		strings.Join(v.MayFetch.Categories, ",") != "Contact,Preference" || !strings.HasPrefix(string(v.Customer), "psn_") {
		t.Errorf("consent view: %s", r.Body)
	}
	if strings.Contains(string(r.Body), string(e.alice.ID)) {
		t.Errorf("the view names the customer: %s", r.Body)
	}

	ret := func(body string) firmclient.Response {
		r, err := e.client.Do(ctx, http.MethodPost, "/v1/consents/"+string(id)+"/returned-data", nil, []byte(body), tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Alice wrote her Contact record herself: the firm may not overwrite it.
	if r := ret(`{"category":"Contact","value":{"email":"spoofed@example.com"}}`); r.Status != http.StatusConflict {
		t.Errorf("return over the customer's record: %d %s", r.Status, r.Body)
	}
	if r := ret(`{"category":"Financial","value":{"income_band":"high"}}`); r.Status != http.StatusBadRequest {
		t.Errorf("return of a category outside the consent: %d %s", r.Status, r.Body)
	}
	if r := ret(`{"category":"Preference","value":"not an object"}`); r.Status != http.StatusBadRequest {
		t.Errorf("return of a malformed value: %d %s", r.Status, r.Body)
	}
	if r := ret(`{"category":"Preference","value":{},"extra":1}`); r.Status != http.StatusBadRequest {
		t.Errorf("return with an unknown member: %d %s", r.Status, r.Body)
	}

	// Financial is granted and Alice holds none: the firm may give it to
	// her, then update what it gave; each return is on the ledger.
	tok, id = e.consentToken(t, e.client, e.alice, detailsOf([]string{"Contact", "Financial"}, "P30D", 100), "Contact", "Financial")
	for i, band := range []string{"40-60k GBP", "60-80k GBP"} {
		r := ret(`{"category":"Financial","value":{ "income_band" : "` + band + `" }}`)
		var got dataapi.Returned
		if r.Status != http.StatusCreated || r.JSON(&got) != nil {
			t.Fatalf("return %d: %d %s", i, r.Status, r.Body)
		}
		if !broker.CheckCommitment(got.Salt, got.Value, got.Commitment) || strings.Contains(string(got.Value), "{ ") {
			t.Errorf("return %d: the commitment does not open over the stored value %s", i, got.Value)
		}
	}
	r = e.fetch(t, e.client, id, "category=Financial", tok.AccessToken)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"income_band":"60-80k GBP"`) {
		t.Errorf("fetch of the returned data: %d %s", r.Status, r.Body)
	}
	if got := e.ledgerEntries(t, id, broker.EntryDataReturned, 2); len(got) != 2 {
		t.Errorf("%d data.returned entries, want 2", len(got))
	}
}

// detailsOf asks for cats for marketing.
func detailsOf(cats []string, duration string, max int) string {
	b, _ := json.Marshal(cats)
	return `[{"type":"steward_customer_data","categories":` + string(b) + `,"purpose":"DirectMarketing",` +
		`"duration":"` + duration + `","frequency":{"max":` + itoa(max) + `,"per":"P1D"}}]`
}

// firmToken is a DPoP-bound client-credentials token with scope firm.
func (e *dataEnv) firmToken(t *testing.T, c *firmclient.Client) string {
	t.Helper()
	tok, err := c.ClientCredentials(t.Context(), dataapi.ScopeFirm)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(tok.TokenType, "DPoP") {
		t.Fatalf("firm token type %q, want DPoP", tok.TokenType)
	}
	return tok.AccessToken
}

// testDataAPIDeletionAfterRevocation: the customer revokes; the consent's
// own token stops working at once; the firm lists its consents with a firm
// token, sees the revocation and attests deletion once, which is on the
// ledger. A firm token never fetches data.
func testDataAPIDeletionAfterRevocation(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	ctx := t.Context()
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact", "Preference")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	firmTok := e.firmToken(t, e.client)
	if r := e.fetch(t, e.client, id, "", firmTok); r.Status != http.StatusForbidden {
		t.Errorf("fetch with a firm token: %d %s, want 403", r.Status, r.Body)
	}
	attest := func(token, body string) firmclient.Response {
		r, err := e.client.Do(ctx, http.MethodPost, "/v1/consents/"+string(id)+"/deletion", nil, []byte(body), token)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := attest(firmTok, `{}`); r.Status != http.StatusConflict {
		t.Errorf("deletion attested while the consent is live: %d %s", r.Status, r.Body)
	}

	if _, err := consent.New(e.st, nil, time.Now).Revoke(ctx, e.alice.ID, id, "no longer"); err != nil {
		t.Fatal(err)
	}
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusUnauthorized {
		t.Errorf("the revoked consent's token: %d %s, want 401 (token revoked with the consent)", r.Status, r.Body)
	}

	r, err := e.client.Do(ctx, http.MethodGet, "/v1/firm/consents?state=revoked", nil, nil, firmTok)
	if err != nil {
		t.Fatal(err)
	}
	var list dataapi.ConsentList
	if r.Status != http.StatusOK || r.JSON(&list) != nil || len(list.Consents) != 1 || list.Consents[0].ID != id {
		t.Fatalf("firm's revoked consents: %d %s", r.Status, r.Body)
	}
	for _, q := range []string{"state=bogus", "limit=0", "limit=abc", "after=x", "customer=alice"} {
		r, err := e.client.Do(ctx, http.MethodGet, "/v1/firm/consents?"+q, nil, nil, firmTok)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusBadRequest {
			t.Errorf("listing with %s: %d, want 400", q, r.Status)
		}
	}

	if r := attest(firmTok, `{"categories":["Financial"]}`); r.Status != http.StatusBadRequest {
		t.Errorf("deletion of a category never granted: %d %s", r.Status, r.Body)
	}
	r = attest(firmTok, `{"categories":["Contact","Preference"]}`)
	var att dataapi.Attested
	if r.Status != http.StatusCreated || r.JSON(&att) != nil || att.Receipt == nil {
		t.Fatalf("deletion attestation: %d %s", r.Status, r.Body)
	}
	if r := attest(firmTok, `{}`); r.Status != http.StatusConflict {
		t.Errorf("second attestation: %d %s, want 409", r.Status, r.Body)
	}
	if got := e.ledgerEntries(t, id, broker.EntryDeletionAttested, 1); len(got) != 1 {
		t.Errorf("%d deletion.attested entries, want 1", len(got))
	}
	// The other firm can neither see nor attest for this consent.
	otherFirmTok := e.firmToken(t, e.otherCl)
	r, err = e.otherCl.Do(ctx, http.MethodGet, "/v1/consents/"+string(id), nil, nil, otherFirmTok)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusNotFound {
		t.Errorf("another firm's view of the consent: %d %s", r.Status, r.Body)
	}
	r, err = e.otherCl.Do(ctx, http.MethodGet, "/v1/firm/consents", nil, nil, otherFirmTok)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), string(id)) {
		t.Errorf("another firm's listing shows our consent: %d %s", r.Status, r.Body)
	}
}

// testDataAPIReplayedProof: a DPoP proof that did something is accepted
// once; sent again with the same token it is refused on every route, and
// a replayed fetch discloses nothing. (A request that failed changed
// nothing; its replay fails the same way.)
func testDataAPIReplayedProof(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
	// A first call fetches a nonce for the hand-made proofs.
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	for _, rt := range dataRoutes(id) {
		proof, err := e.client.Proof(rt.method, e.base+rt.path, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		send := func() int {
			req, _ := http.NewRequest(rt.method, e.base+rt.path, strings.NewReader(rt.body))
			if rt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			req.Header.Set("DPoP", proof)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		first, second := send(), send()
		switch {
		case first == http.StatusUnauthorized:
			t.Errorf("%s %s: the first use of a fresh proof was refused", rt.method, rt.path)
		case first < 300 && second != http.StatusUnauthorized:
			t.Errorf("%s %s: first %d, replay %d; want the replay refused with 401", rt.method, rt.path, first, second)
		case first >= 300 && second != first:
			t.Errorf("%s %s: first %d, replay %d; a failed request's replay must fail the same way", rt.method, rt.path, first, second)
		}
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 2 {
		t.Errorf("%d disclosures, want 2 (the first fetch and the first of the pair)", n)
	}
}

// testDataAPIAfterErasure: once the customer is forgotten, the firm still
// sees and lists the (ended) consent, without a pseudonym, and attests
// deletion with an entry that names no customer; no new pseudonym is
// made for the forgotten customer.
func testDataAPIAfterErasure(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	ctx := t.Context()
	tok, id := e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	err := e.st.Update(ctx, func(tx store.Tx) error {
		if _, err := consent.EndAll(ctx, tx, e.bob.ID, time.Now(), "erased"); err != nil {
			return err
		}
		return tx.ForgetCustomer(ctx, e.bob.ID, broker.NewTombstone())
	})
	if err != nil {
		t.Fatal(err)
	}
	firmTok := e.firmToken(t, e.client)
	r, err := e.client.Do(ctx, http.MethodGet, "/v1/consents/"+string(id), nil, nil, firmTok)
	if err != nil {
		t.Fatal(err)
	}
	var v dataapi.ConsentView
	if r.Status != http.StatusOK || r.JSON(&v) != nil || !v.CustomerErased || v.Customer != "" || v.State != broker.ConsentRevoked {
		t.Fatalf("view of a forgotten customer's consent: %d %s", r.Status, r.Body)
	}
	if r, err = e.client.Do(ctx, http.MethodGet, "/v1/firm/consents", nil, nil, firmTok); err != nil || r.Status != http.StatusOK {
		t.Fatalf("listing with a forgotten customer's consent: %v %d %s", err, r.Status, r.Body)
	}
	r, err = e.client.Do(ctx, http.MethodPost, "/v1/consents/"+string(id)+"/deletion", nil, []byte(`{}`), firmTok)
	var att dataapi.Attested
	if err != nil || r.Status != http.StatusCreated || r.JSON(&att) != nil {
		t.Fatalf("attestation after erasure: %v %d %s", err, r.Status, r.Body)
	}
	ent, err := broker.ParseEntry(att.Receipt.Entry)
	if err != nil || ent.Customer != "" || ent.Consent != id {
		t.Errorf("deletion.attested after erasure: %+v %v", ent, err)
	}
	err = e.st.View(ctx, func(tx store.Tx) error {
		if p, err := tx.LookupPseudonym(ctx, e.bob.ID, e.firm.ID); err == nil {
			t.Errorf("a pseudonym %s was made for the forgotten customer", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testDataAPIUnknownPaths: unknown paths and methods under the Data API
// answer with problem documents, before any token is looked at.
func testDataAPIUnknownPaths(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v1/consents/con_x/nothing", http.StatusNotFound},
		{http.MethodGet, "/v1/firm/other", http.StatusNotFound},
		{http.MethodDelete, "/v1/consents/con_x/data", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, e.base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %s, want %d problem+json", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
		}
	}
}

// concurrently runs n calls of f at once and returns their statuses.
func concurrently(n int, f func(i int) int) []int {
	out := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

func countStatus(statuses []int, status int) int {
	n := 0
	for _, s := range statuses {
		if s == status {
			n++
		}
	}
	return n
}

// testDataAPIConcurrentFetches: with one disclosure transaction at a time,
// concurrent fetches share transactions (dataapi's group commit), and each
// is still decided alone, at its moment: of 12 concurrent fetches under a
// consent that allows 5 a day exactly 5 disclose and 7 meet the limit;
// another consent's 12 all disclose; a proof sent twice at once is
// accepted once; and every disclosure has its ledger entry.
func testDataAPIConcurrentFetches(t *testing.T, db backendURL) {
	e := newDataEnvWith(t, db, func(c *config) { c.DisclosureTransactions = 1 })
	limited, lid := e.consentToken(t, e.client, e.alice, details("P30D", 5), "Contact")
	open, oid := e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
	if r := e.fetch(t, e.client, oid, "", open.AccessToken); r.Status != http.StatusOK { // and a nonce for the hand-made proof
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	path := "/v1/consents/" + string(oid) + "/data"
	proof, err := e.client.Proof(http.MethodGet, e.base+path, open.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	statuses := concurrently(26, func(i int) int {
		switch {
		case i < 12:
			return e.fetch(t, e.client, lid, "", limited.AccessToken).Status
		case i < 24:
			return e.fetch(t, e.client, oid, "", open.AccessToken).Status
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.base+path, nil)
		req.Header.Set("Authorization", "DPoP "+open.AccessToken)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	})
	lim, opn, pair := statuses[:12], statuses[12:24], statuses[24:]
	if countStatus(lim, http.StatusOK) != 5 || countStatus(lim, http.StatusTooManyRequests) != 7 {
		t.Errorf("limited consent: %v; want 5 × 200 and 7 × 429", lim)
	}
	if countStatus(opn, http.StatusOK) != 12 {
		t.Errorf("open consent: %v; want 12 × 200", opn)
	}
	if countStatus(pair, http.StatusOK) != 1 || countStatus(pair, http.StatusUnauthorized) != 1 {
		t.Errorf("one proof sent twice at once: %v; want one 200 and one 401", pair)
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 5 {
		t.Errorf("%d disclosures under the limited consent, want 5", n)
	}
	if n := len(e.disclosures(t, e.bob.ID)); n != 14 {
		t.Errorf("%d disclosures under the open consent, want 14", n)
	}
	if n := len(e.ledgerEntries(t, lid, broker.EntryDisclosure, 5)); n != 5 {
		t.Errorf("%d ledger entries under the limited consent, want 5", n)
	}
	if n := len(e.ledgerEntries(t, oid, broker.EntryDisclosure, 14)); n != 14 {
		t.Errorf("%d ledger entries under the open consent, want 14", n)
	}
}

// testDataAPIBatchRefused: when the database refuses a shared disclosure
// transaction (here a trigger refuses one consent's disclosures), every
// fetch in it is run again on its own: the others disclose, the refused
// one fails with nothing of it recorded, and no fetch is answered from a
// transaction that did not commit.
func testDataAPIBatchRefused(t *testing.T, db backendURL) {
	e := newDataEnvWith(t, db, func(c *config) { c.DisclosureTransactions = 1 })
	bad, bid := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
	good, gid := e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
	if r := e.fetch(t, e.client, gid, "", good.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	ctx := t.Context()
	switch st := e.st.(type) {
	case interface{ Pool() *pgxpool.Pool }:
		_, err := st.Pool().Exec(ctx, `CREATE FUNCTION refuse_disclosure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by test'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON disclosures FOR EACH ROW WHEN (NEW.consent_id = '`+string(bid)+`') EXECUTE FUNCTION refuse_disclosure()`)
		if err != nil {
			t.Fatal(err)
		}
	case interface {
		Exec(ctx context.Context, query string, args ...any) error
	}:
		if err := st.Exec(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON disclosures WHEN NEW.consent_id = '`+string(bid)+`'
BEGIN SELECT RAISE(ABORT, 'refused by test'); END`); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("cannot add a trigger to %T", e.st)
	}
	statuses := concurrently(16, func(i int) int {
		if i%4 == 0 {
			return e.fetch(t, e.client, bid, "", bad.AccessToken).Status
		}
		return e.fetch(t, e.client, gid, "", good.AccessToken).Status
	})
	for i, s := range statuses {
		want := http.StatusOK
		if i%4 == 0 {
			want = http.StatusInternalServerError
		}
		if s != want {
			t.Errorf("fetch %d: %d, want %d (all: %v)", i, s, want, statuses)
			break
		}
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 0 {
		t.Errorf("%d disclosures under the refused consent, want 0", n)
	}
	if n := len(e.disclosures(t, e.bob.ID)); n != 13 {
		t.Errorf("%d disclosures under the other consent, want 13", n)
	}
	var decisions []broker.DecisionRecord
	err := e.st.View(ctx, func(tx store.Tx) (err error) {
		decisions, err = tx.ListDecisions(ctx, store.DecisionFilter{ConsentID: bid, Limit: 100})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range decisions {
		if d.Kind == broker.DecisionAccess {
			t.Errorf("an access decision under the refused consent was recorded: %+v", d)
		}
	}
	if n := len(e.ledgerEntries(t, gid, broker.EntryDisclosure, 13)); n != 13 {
		t.Errorf("%d ledger entries under the other consent, want 13", n)
	}
}

// testDataAPIRememberedToken: a fetch does not introspect a token it has
// seen before, but its transaction checks what can change: a token
// revoked at the revocation endpoint, or one whose firm was suspended, is
// refused on the very next fetch, and nothing more is disclosed.
func testDataAPIRememberedToken(t *testing.T, db backendURL) {
	e := newDataEnv(t, db)
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 100), "Contact")
	for range 2 {
		if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("fetch: %d %s", r.Status, r.Body)
		}
	}
	r, err := e.client.Do(t.Context(), http.MethodPost, "/oauth/revoke", url.Values{"token": {tok.AccessToken}}, nil, "")
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("revoke: %v %d %s", err, r.Status, r.Body)
	}
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusUnauthorized {
		t.Errorf("fetch with a revoked token: %d %s, want 401", r.Status, r.Body)
	}
	if n := len(e.disclosures(t, e.alice.ID)); n != 2 {
		t.Errorf("%d disclosures, want 2", n)
	}

	tok, id = e.consentToken(t, e.client, e.bob, details("P30D", 100), "Contact")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("fetch: %d %s", r.Status, r.Body)
	}
	e.setFirmStatus(t, "suspend")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusUnauthorized {
		t.Errorf("fetch once the firm is suspended: %d %s, want 401", r.Status, r.Body)
	}
	e.setFirmStatus(t, "approve")
	if r := e.fetch(t, e.client, id, "", tok.AccessToken); r.Status != http.StatusOK {
		t.Errorf("fetch once the firm is approved again: %d %s, want 200", r.Status, r.Body)
	}
	if n := len(e.disclosures(t, e.bob.ID)); n != 2 {
		t.Errorf("%d disclosures, want 2 (none while suspended)", n)
	}
}
