package customerapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/customerapi"
	"github.com/stewardhq/steward/broker/export"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
	"github.com/stewardhq/steward/broker/terms"
	"github.com/stewardhq/steward/broker/vault"
	"github.com/stewardhq/steward/web"
)

// env is the customer API on a real store, served over HTTP, with the
// real oauth provider's session and CSRF checks, a running ledger, two
// customers (alice, bob) and two firms.
type env struct {
	t            *testing.T
	srv          *httptest.Server
	s            backend.Migrator
	p            *oauth.Provider
	secret       []byte
	vault        *vault.Service
	consents     *consent.Service
	log          *ledger.Log
	verifier     note.Verifier
	alice, bob   broker.Customer
	acme, globex broker.Firm
	// aliceAcme is alice's granted consent with acme; bobAcme is bob's.
	aliceAcme, bobAcme broker.Consent
}

// decide allows retail firms and asks about everyone else.
var decide consent.DecideConsent = func(_ context.Context, _ broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
	d := broker.Decision{Kind: broker.DecisionConsent, Effect: broker.EffectAsk, Scope: req.Scope, TermsHash: tv.Hash,
		PolicyHash: broker.HashDocument([]byte("policy")), DecidedAt: now,
		Reasons: []broker.Reason{{Source: broker.ReasonTerms, Rule: 1, Text: "Your rule 1 asks you about insurers"}}}
	if f.Sector == "retail" {
		d.Effect, d.Reasons = broker.EffectAllow, []broker.Reason{{Source: broker.ReasonTerms, Rule: 2, Text: "Your rule 2 allows retail firms"}}
	}
	return d, nil
}

const termsDoc = `{"format":"steward.terms/v1","rules":[{"effect":"allow","match":{"sectors":["retail"]}}]}`

func newEnv(t *testing.T, s backend.Migrator) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{t: t, s: s, secret: []byte(strings.Repeat("k", 32)),
		alice: storetest.NewCustomer("alice"), bob: storetest.NewCustomer("bob"),
		acme: storetest.NewFirm("Acme Retail Ltd", "retail"), globex: storetest.NewFirm("Globex Insurance", "insurance")}
	e.acme.WebhookURL = "https://acme.example/hooks"
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	e.p = e.provider(nil)

	key := make([]byte, vault.KeySize)
	_, _ = rand.Read(key)
	var err error
	if e.vault, err = vault.New(s, vault.Config{MasterKey: key}); err != nil {
		t.Fatal(err)
	}
	e.consents = consent.New(s, decide, nil)
	exp, err := export.New(export.Config{Store: s, Vault: e.vault.RecordsTx, Ledger: s.Ledger()})
	if err != nil {
		t.Fatal(err)
	}
	api, err := customerapi.New(customerapi.Config{Store: s, Authenticate: e.p.Customer, CheckCSRF: e.p.CheckCustomerCSRF,
		CSRFToken: e.p.CustomerCSRFToken, Consents: e.consents, Vault: e.vault, Export: exp, Ledger: s.Ledger()})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Mount(oauth.CustomerAPIPath, api)
	h = r

	signer, verifier, _ := ledgertest.NewKey(t)
	e.verifier = verifier
	lg, shutdown, err := ledger.Start(ctx, s.Ledger(), ledger.Config{Signer: signer, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.log = lg
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	if err := s.Update(ctx, func(tx store.Tx) error {
		for _, c := range []broker.Customer{e.alice, e.bob} {
			if err := tx.CreateCustomer(ctx, c); err != nil {
				return err
			}
		}
		for _, f := range []broker.Firm{e.acme, e.globex} {
			if err := tx.CreateFirm(ctx, f); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []broker.Customer{e.alice, e.bob} {
		if _, err := e.consents.SaveTerms(ctx, c.ID, []byte(termsDoc)); err != nil {
			t.Fatal(err)
		}
		if err := e.vault.Put(ctx, c.ID, "Contact", json.RawMessage(`{"email":"`+c.Handle+`@example.org"}`), "customer"); err != nil {
			t.Fatal(err)
		}
		out, err := e.consents.Request(ctx, c.ID, e.acme.ID, "", broker.DataRequest{Scope: storetest.RequestScope()})
		if err != nil || out.Consent.State != broker.ConsentGranted {
			t.Fatalf("request: %v %v", out.Consent.State, err)
		}
		special := storetest.RequestScope()
		special.Categories, special.Purpose = []string{"Health"}, "AcademicResearch"
		if _, err := e.consents.Request(ctx, c.ID, e.globex.ID, "", broker.DataRequest{Scope: special}); err != nil {
			t.Fatal(err)
		}
		if c.ID == e.alice.ID {
			e.aliceAcme = out.Consent
		} else {
			e.bobAcme = out.Consent
		}
	}
	return e
}

// provider is an oauth provider on the test server's issuer with the
// shared secret; now shifts its clock.
func (e *env) provider(now func() time.Time) *oauth.Provider {
	e.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := oauth.New(oauth.Config{Issuer: e.srv.URL, SigningKey: key, Secret: e.secret, Store: e.s, Templates: web.Templates, Now: now},
		e.s.OAuth(), func(context.Context, oauth.ConsentRequest) (oauth.ConsentOutcome, error) {
			return oauth.ConsentOutcome{}, broker.ErrForbidden
		})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// disclosed is the content every test disclosure commits to.
const disclosed = `{"Contact":{"email":"alice@example.org"}}`

// disclose records a disclosure under c as the Data API does: the
// disclosure and its ledger entry in one transaction, the receipt id the
// entry's leaf hash. It returns the entry's bytes.
func (e *env) disclose(c broker.Consent, at time.Time) []byte {
	e.t.Helper()
	ctx := e.t.Context()
	var entry []byte
	err := e.s.Update(ctx, func(tx store.Tx) error {
		psn, err := tx.Pseudonym(ctx, c.CustomerID, c.FirmID)
		if err != nil {
			return err
		}
		salt := broker.NewSalt()
		d := broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: c.ID, FirmID: c.FirmID, CustomerID: c.CustomerID,
			Categories: []string{"Contact"}, Fields: map[string][]string{"Contact": {"email"}}, Purpose: c.Granted.Purpose, At: at,
			Commitment: broker.Commit(salt, []byte(disclosed)), Salt: salt}
		en := broker.Entry{Type: broker.EntryDisclosure, Time: at, Firm: c.FirmID, Customer: psn, Categories: d.Categories,
			Purpose: c.Granted.Purpose, Consent: c.ID, Disclosure: d.ID, DecisionHash: broker.HashDocument([]byte("d")),
			TermsHash: broker.HashDocument([]byte("t")), Commitment: d.Commitment}
		if entry, err = en.CanonicalBytes(); err != nil {
			return err
		}
		h := tlog.RecordHash(entry)
		d.ReceiptID = base64.StdEncoding.EncodeToString(h[:])
		if err := tx.InsertDisclosure(ctx, d); err != nil {
			return err
		}
		return tx.StageLedgerEntry(ctx, entry)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return entry
}

// settle waits until the ledger has sequenced and signed everything staged.
func (e *env) settle() {
	e.t.Helper()
	ctx := e.t.Context()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		e.log.Kick()
		size, err := e.s.Ledger().Size(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		after, err := e.s.Ledger().Sequence(ctx, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		cp, _, err := e.s.Ledger().ReadCheckpoint(ctx)
		if err == nil && after == size && cp == size {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ledger did not settle: size %d, checkpoint %d (%v)", after, cp, err)
		}
	}
}

// session is how a request authenticates.
type session struct {
	cookie *http.Cookie // nil: none
	csrf   string       // X-CSRF-Token; "" for none
	origin string       // Origin; "" for none
}

// as is a customer's full, valid session.
func (e *env) as(c broker.Customer) session {
	ck := e.p.SessionCookie(c.ID)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(ck)
	return session{cookie: ck, csrf: e.p.CustomerCSRFToken(r), origin: e.srv.URL}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (e *env) do(s session, method, path, contentType string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.cookie != nil {
		req.AddCookie(s.cookie)
	}
	if s.csrf != "" {
		req.Header.Set(oauth.CSRFHeader, s.csrf)
	}
	if s.origin != "" {
		req.Header.Set("Origin", s.origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// state is everything a refused request must leave as it was.
type state struct {
	Consents   map[broker.ConsentID]int // version
	Vault      map[broker.CustomerID][]broker.Record
	Terms      map[broker.CustomerID]int
	LedgerSize int64
	Webhooks   int
}

func (e *env) state() state {
	e.t.Helper()
	ctx := e.t.Context()
	st := state{Consents: map[broker.ConsentID]int{}, Vault: map[broker.CustomerID][]broker.Record{}, Terms: map[broker.CustomerID]int{}}
	e.settle()
	err := e.s.View(ctx, func(tx store.Tx) error {
		for _, c := range []broker.Customer{e.alice, e.bob} {
			cs, err := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: c.ID})
			if err != nil {
				return err
			}
			for _, x := range cs {
				st.Consents[x.ID] = x.Version
			}
			if st.Vault[c.ID], err = e.vault.RecordsTx(ctx, tx, c.ID); err != nil {
				return err
			}
			tv, err := tx.ListTerms(ctx, c.ID)
			if err != nil {
				return err
			}
			st.Terms[c.ID] = len(tv)
		}
		ws, err := tx.ListWebhooks(ctx, "", store.Page{})
		st.Webhooks = len(ws)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if st.LedgerSize, err = e.s.Ledger().Size(ctx); err != nil {
		e.t.Fatal(err)
	}
	return st
}

type call struct {
	method, path, contentType, body string
}

func (c call) String() string { return c.method + " " + c.path }

// calls is every endpoint, aimed at alice's data.
func (e *env) calls() []call {
	con := "/v1/me/consents/" + string(e.aliceAcme.ID)
	return []call{
		{"GET", "/v1/me", "", ""},
		{"GET", "/v1/me/disclosures", "", ""},
		{"GET", "/v1/me/consents", "", ""},
		{"GET", con, "", ""},
		{"POST", con + "/revoke", "", ""},
		{"POST", con + "/revoke", "application/json", `{"reason":"no more"}`},
		{"GET", "/v1/me/vault", "", ""},
		{"PUT", "/v1/me/vault/Preference", "application/json", `{"interests":["chess"]}`},
		{"POST", "/v1/me/vault/import", "text/csv", "category,field,value\nContact,email,mallory@example.org\n"},
		{"POST", "/v1/me/vault/import", "application/json", `[{"category":"Contact","value":{"email":"mallory@example.org"}}]`},
		{"GET", "/v1/me/terms", "", ""},
		{"PUT", "/v1/me/terms", "application/json", `{"format":"steward.terms/v1","rules":[]}`},
		{"GET", "/v1/me/export", "", ""},
	}
}

func changes(m string) bool { return m != "GET" }

// TestAuthorization is the authorization matrix: every endpoint without
// a session, with forged and expired cookies, and every state-changing
// one without the CSRF token or from another origin, is refused and
// changes nothing; customer B gets 404 for customer A's consent, exactly
// as for one that does not exist.
func TestAuthorization(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		e.disclose(e.aliceAcme, storetest.Now)
		before := e.state()

		alice := e.as(e.alice)
		// Forged: alice's signature on bob's id; a cookie signed with
		// another secret; garbage.
		forgedID := *alice.cookie
		forgedID.Value = string(e.bob.ID) + forgedID.Value[strings.Index(forgedID.Value, "."):]
		e.secret = []byte(strings.Repeat("x", 32))
		otherKey := *e.provider(nil).SessionCookie(e.alice.ID)
		e.secret = []byte(strings.Repeat("k", 32))
		expired := *e.provider(func() time.Time { return time.Now().Add(-2 * oauth.DefaultLoginLifespan) }).SessionCookie(e.alice.ID)
		garbage := http.Cookie{Name: alice.cookie.Name, Value: "cus_x.9999999999.AAAA"}
		// The login cookie itself is not an API session.
		loginOnly := http.Cookie{Name: "steward_login", Value: alice.cookie.Value}

		refusedSessions := map[string]session{
			"no session":            {csrf: alice.csrf, origin: alice.origin},
			"forged customer id":    {cookie: &forgedID, csrf: alice.csrf, origin: alice.origin},
			"signed by another key": {cookie: &otherKey, csrf: alice.csrf, origin: alice.origin},
			"expired":               {cookie: &expired, csrf: alice.csrf, origin: alice.origin},
			"garbage":               {cookie: &garbage, csrf: alice.csrf, origin: alice.origin},
			"login cookie only":     {cookie: &loginOnly, csrf: alice.csrf, origin: alice.origin},
		}
		bobCSRF := e.as(e.bob).csrf
		refusedCSRF := map[string]session{
			"no csrf token":          {cookie: alice.cookie, origin: alice.origin},
			"wrong csrf token":       {cookie: alice.cookie, csrf: bobCSRF, origin: alice.origin},
			"no origin":              {cookie: alice.cookie, csrf: alice.csrf},
			"other origin":           {cookie: alice.cookie, csrf: alice.csrf, origin: "https://evil.example"},
			"origin on another port": {cookie: alice.cookie, csrf: alice.csrf, origin: "http://127.0.0.1:1"},
		}
		for _, c := range e.calls() {
			for name, sess := range refusedSessions {
				r := e.do(sess, c.method, c.path, c.contentType, []byte(c.body))
				if r.status != http.StatusUnauthorized || r.header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s with %s: %d %s, want 401 problem", c, name, r.status, r.body)
				}
			}
			if !changes(c.method) {
				continue
			}
			for name, sess := range refusedCSRF {
				r := e.do(sess, c.method, c.path, c.contentType, []byte(c.body))
				if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "csrf") {
					t.Errorf("%s with %s: %d %s, want 403 csrf problem", c, name, r.status, r.body)
				}
			}
		}

		// Bob, fully signed in, touching alice's consent: 404, the same
		// problem as for an id that does not exist.
		bob := e.as(e.bob)
		unknown := "/v1/me/consents/" + string(broker.NewConsentID())
		mine := "/v1/me/consents/" + string(e.aliceAcme.ID)
		for _, c := range []call{{"GET", "", "", ""}, {"POST", "/revoke", "", ""}, {"POST", "/revoke", "application/json", `{"reason":"mine now"}`}} {
			theirs := e.do(bob, c.method, mine+c.path, c.contentType, []byte(c.body))
			none := e.do(bob, c.method, unknown+c.path, c.contentType, []byte(c.body))
			var p1, p2 map[string]any
			theirs.json(t, &p1)
			none.json(t, &p2)
			delete(p1, "instance")
			delete(p2, "instance")
			delete(p1, "request_id")
			delete(p2, "request_id")
			if theirs.status != http.StatusNotFound || !cmp.Equal(p1, p2) {
				t.Errorf("bob %s alice's consent: %d %v; unknown consent: %d %v", c.method, theirs.status, p1, none.status, p2)
			}
		}
		for _, bad := range []string{"/v1/me/consents/not-an-id", "/v1/me/consents/" + string(broker.NewFirmID())} {
			if r := e.do(bob, "GET", bad, "", nil); r.status != http.StatusNotFound {
				t.Errorf("GET %s: %d", bad, r.status)
			}
		}
		// Bob's listings hold nothing of alice's.
		for _, path := range []string{"/v1/me", "/v1/me/disclosures", "/v1/me/consents", "/v1/me/vault", "/v1/me/terms", "/v1/me/export"} {
			r := e.do(bob, "GET", path, "", nil)
			if r.status != http.StatusOK {
				t.Errorf("bob GET %s: %d %s", path, r.status, r.body)
			}
			for _, leak := range []string{string(e.alice.ID), string(e.aliceAcme.ID), "alice"} {
				if bytes.Contains(r.body, []byte(leak)) {
					t.Errorf("bob GET %s shows %q: %s", path, leak, r.body)
				}
			}
		}

		if after := e.state(); !cmp.Equal(before, after) {
			t.Errorf("refused requests changed something:\n%s", cmp.Diff(before, after))
		}
	})
}

// TestDisclosuresWithReceipts: the customer's disclosures come with firm,
// purpose, consent and a receipt whose inclusion proof verifies offline
// against the log's key; another customer sees none of them.
func TestDisclosuresWithReceipts(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		entries := map[string][]byte{}
		for i := range 3 {
			b := e.disclose(e.aliceAcme, storetest.Now.Add(time.Duration(i)*time.Second))
			h := tlog.RecordHash(b)
			entries[base64.StdEncoding.EncodeToString(h[:])] = b
		}
		e.disclose(e.bobAcme, storetest.Now)
		alice := e.as(e.alice)

		// Before the ledger runs there is no receipt yet, only its status.
		var pending struct{ Items []customerapi.Disclosure }
		e.do(alice, "GET", "/v1/me/disclosures", "", nil).json(t, &pending)
		for _, d := range pending.Items {
			if d.ReceiptStatus == "integrated" && d.Receipt == nil {
				t.Errorf("integrated without a receipt: %+v", d)
			}
		}

		e.settle()
		var page struct {
			Items []customerapi.Disclosure
			Next  string
		}
		r := e.do(alice, "GET", "/v1/me/disclosures", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("disclosures: %d %s", r.status, r.body)
		}
		r.json(t, &page)
		if len(page.Items) != 3 || page.Next != "" {
			t.Fatalf("%d disclosures, next %q: %s", len(page.Items), page.Next, r.body)
		}
		for _, d := range page.Items {
			if d.Firm.ID != e.acme.ID || d.Firm.Name != "Acme Retail Ltd" || d.ConsentID != e.aliceAcme.ID ||
				d.Purpose != e.aliceAcme.Granted.Purpose || !cmp.Equal(d.Categories, []string{"Contact"}) ||
				!cmp.Equal(d.Fields, map[string][]string{"Contact": {"email"}}) {
				t.Errorf("disclosure: %+v", d)
			}
			if d.ReceiptStatus != "integrated" || d.Receipt == nil {
				t.Fatalf("no integrated receipt: %+v", d)
			}
			if want := entries[d.Receipt.LeafHash]; !bytes.Equal(d.Entry, want) {
				t.Errorf("entry %s, want %s", d.Entry, want)
			}
			if _, err := ledger.VerifyReceipt(*d.Receipt, d.Entry, e.verifier); err != nil {
				t.Errorf("receipt does not verify: %v", err)
			}
			// The salt opens the entry's commitment to what was disclosed.
			if got := broker.Commit(d.Salt, []byte(disclosed)); d.Commitment == "" || got != d.Commitment || !bytes.Contains(d.Entry, []byte(d.Commitment)) {
				t.Errorf("commitment %q, salt opens %q", d.Commitment, got)
			}
			// The receipt is for this entry and no other.
			if _, err := ledger.VerifyReceipt(*d.Receipt, append([]byte(" "), d.Entry...), e.verifier); err == nil {
				t.Error("receipt verifies for other bytes")
			}
		}

		// Paging: two, then one, then nothing.
		var p1, p2 struct {
			Items []customerapi.Disclosure
			Next  string
		}
		e.do(alice, "GET", "/v1/me/disclosures?limit=2", "", nil).json(t, &p1)
		e.do(alice, "GET", "/v1/me/disclosures?limit=2&after="+p1.Next, "", nil).json(t, &p2)
		if len(p1.Items) != 2 || p1.Next == "" || len(p2.Items) != 1 || p2.Next != "" || p2.Items[0].ID == p1.Items[0].ID || p2.Items[0].ID == p1.Items[1].ID {
			t.Errorf("paging: %+v then %+v", p1, p2)
		}
		for _, bad := range []string{"limit=0", "limit=1001", "limit=x"} {
			if r := e.do(alice, "GET", "/v1/me/disclosures?"+bad, "", nil); r.status != http.StatusBadRequest {
				t.Errorf("%s: %d", bad, r.status)
			}
		}

		var bobs struct{ Items []customerapi.Disclosure }
		e.do(e.as(e.bob), "GET", "/v1/me/disclosures", "", nil).json(t, &bobs)
		if len(bobs.Items) != 1 || bobs.Items[0].ConsentID != e.bobAcme.ID {
			t.Errorf("bob's disclosures: %+v", bobs.Items)
		}
	})
}

// TestProfileAndConsents: the profile never carries the password hash;
// consents list with their firm, and one consent shows its history and
// the decisions with their reasons.
func TestProfileAndConsents(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		ctx := t.Context()
		carol := storetest.NewCustomer("carol")
		carol.PasswordHash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateCustomer(ctx, carol) }); err != nil {
			t.Fatal(err)
		}
		sess := e.as(carol)
		r := e.do(sess, "GET", "/v1/me", "", nil)
		var prof map[string]any
		r.json(t, &prof)
		if r.status != http.StatusOK || prof["id"] != string(carol.ID) || prof["handle"] != "carol" || prof["csrf_token"] != sess.csrf {
			t.Errorf("profile: %d %s", r.status, r.body)
		}
		if bytes.Contains(r.body, []byte("argon2")) || bytes.Contains(bytes.ToLower(r.body), []byte("password")) {
			t.Errorf("profile shows the password hash: %s", r.body)
		}

		bob := e.as(e.bob) // one granted consent (acme), one requested (globex)
		var list struct {
			Items []customerapi.Consent
			Next  string
		}
		e.do(bob, "GET", "/v1/me/consents", "", nil).json(t, &list)
		if len(list.Items) != 2 {
			t.Fatalf("consents: %+v", list)
		}
		names := map[broker.ConsentState]string{}
		for _, c := range list.Items {
			names[c.State] = c.Firm.Name
		}
		if names[broker.ConsentGranted] != "Acme Retail Ltd" || names[broker.ConsentRequested] != "Globex Insurance" {
			t.Errorf("consents by state: %v", names)
		}
		var granted struct{ Items []customerapi.Consent }
		e.do(bob, "GET", "/v1/me/consents?state=granted", "", nil).json(t, &granted)
		if len(granted.Items) != 1 || granted.Items[0].ID != e.bobAcme.ID {
			t.Errorf("granted consents: %+v", granted.Items)
		}
		if r := e.do(bob, "GET", "/v1/me/consents?state=sideways", "", nil); r.status != http.StatusBadRequest {
			t.Errorf("bad state: %d", r.status)
		}
		var first struct {
			Items []customerapi.Consent
			Next  string
		}
		e.do(bob, "GET", "/v1/me/consents?limit=1", "", nil).json(t, &first)
		if len(first.Items) != 1 || first.Next != string(first.Items[0].ID) {
			t.Errorf("first page: %+v", first)
		}

		var d customerapi.ConsentDetail
		r = e.do(bob, "GET", "/v1/me/consents/"+string(e.bobAcme.ID), "", nil)
		r.json(t, &d)
		if d.State != broker.ConsentGranted || d.Firm.Name != "Acme Retail Ltd" || len(d.History) != 2 ||
			d.History[1].To != broker.ConsentGranted || len(d.Decisions) != 1 ||
			d.Decisions[0].Effect != broker.EffectAllow || d.Decisions[0].Reasons[0].Text != "Your rule 2 allows retail firms" ||
			!strings.HasPrefix(d.Decisions[0].Hash, "sha256:") {
			t.Errorf("consent detail: %s", r.body)
		}
	})
}

// TestRevoke: one click revokes; the consent is revoked with the reason
// in its history, its ledger entry is staged and the firm's webhook
// queued; revoking again is a conflict.
func TestRevoke(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		ctx := t.Context()
		alice := e.as(e.alice)
		size, err := s.Ledger().Size(ctx)
		if err != nil {
			t.Fatal(err)
		}
		path := "/v1/me/consents/" + string(e.aliceAcme.ID) + "/revoke"
		r := e.do(alice, "POST", path, "application/json", []byte(`{"reason":"I moved away"}`))
		var c customerapi.Consent
		r.json(t, &c)
		if r.status != http.StatusOK || c.State != broker.ConsentRevoked || c.Firm.ID != e.acme.ID || c.EndedAt.IsZero() {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		var d customerapi.ConsentDetail
		e.do(alice, "GET", "/v1/me/consents/"+string(e.aliceAcme.ID), "", nil).json(t, &d)
		last := d.History[len(d.History)-1]
		if d.State != broker.ConsentRevoked || last.To != broker.ConsentRevoked || last.Reason != "I moved away" || last.Actor != "customer:"+string(e.alice.ID) {
			t.Errorf("history: %+v", d.History)
		}
		e.settle()
		var revoked []store.IndexedEntry
		var hooks []broker.WebhookDelivery
		if err := s.View(ctx, func(tx store.Tx) (err error) {
			revoked, err = tx.SearchLedger(ctx, store.LedgerFilter{Types: []broker.EntryType{broker.EntryConsentRevoked}, ConsentID: e.aliceAcme.ID, After: -1})
			if err != nil {
				return err
			}
			hooks, err = tx.ListWebhooks(ctx, broker.WebhookPending, store.Page{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(revoked) != 1 || revoked[0].Index < size {
			t.Errorf("consent.revoked entries: %+v (ledger was %d)", revoked, size)
		}
		if len(hooks) != 1 || hooks[0].EventType != "consent.revoked" || hooks[0].FirmID != e.acme.ID {
			t.Errorf("webhooks: %+v", hooks)
		}

		// The firm attests deletion; the customer sees it on the consent.
		att := broker.DeletionAttestation{ConsentID: e.aliceAcme.ID, FirmID: e.acme.ID, Categories: []string{"Contact"}, At: storetest.Now}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.AttestDeletion(ctx, att) }); err != nil {
			t.Fatal(err)
		}
		d = customerapi.ConsentDetail{}
		e.do(alice, "GET", "/v1/me/consents/"+string(e.aliceAcme.ID), "", nil).json(t, &d)
		if d.Deletion == nil || d.Deletion.FirmID != e.acme.ID || !d.Deletion.At.Equal(storetest.Now.Truncate(time.Microsecond)) {
			t.Errorf("deletion attestation: %+v", d.Deletion)
		}

		// Again: a conflict, nothing more happens.
		if r := e.do(alice, "POST", path, "", nil); r.status != http.StatusConflict {
			t.Errorf("second revoke: %d %s", r.status, r.body)
		}
		// Bob's consent with the same firm is untouched; with no body, the default reason.
		bob := e.as(e.bob)
		r = e.do(bob, "POST", "/v1/me/consents/"+string(e.bobAcme.ID)+"/revoke", "", nil)
		r.json(t, &c)
		if r.status != http.StatusOK || c.State != broker.ConsentRevoked {
			t.Errorf("bob's revoke: %d %s", r.status, r.body)
		}
		for _, body := range []string{`{"reason":"` + strings.Repeat("x", 501) + `"}`, `{"reason":"a\u0000b"}`, `{"why":"x"}`, `[1]`} {
			if r := e.do(alice, "POST", path, "application/json", []byte(body)); r.status != http.StatusBadRequest {
				t.Errorf("revoke with %.40s: %d", body, r.status)
			}
		}
	})
}

// TestVault: put and read records; hostile imports are refused row by
// row and store nothing; a good import stores every row.
func TestVault(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		alice := e.as(e.alice)
		r := e.do(alice, "PUT", "/v1/me/vault/Preference", "application/json", []byte(`{"interests":["chess","cycling"]}`))
		var rec broker.Record
		r.json(t, &rec)
		if r.status != http.StatusOK || rec.Category != "Preference" || rec.Source != "customer" || string(rec.Value) != `{"interests":["chess","cycling"]}` {
			t.Errorf("put: %d %s", r.status, r.body)
		}
		var v struct{ Records []broker.Record }
		e.do(alice, "GET", "/v1/me/vault", "", nil).json(t, &v)
		if len(v.Records) != 2 || v.Records[0].Category != "Contact" || v.Records[1].Category != "Preference" {
			t.Errorf("vault: %+v", v)
		}
		for _, bad := range []struct{ cat, ct, body string }{
			{"Preference", "application/json", `{"interests":"chess"}`},
			{"Preference", "application/json", `{"interests":["=cmd()"]}`},
			{"Preference", "application/json", `{"colour":"red"}`},
			{"Preference", "application/json", "{\"interests\":[\"\xff\"]}"},
			{"Preference", "application/json", `[]`},
		} {
			r := e.do(alice, "PUT", "/v1/me/vault/"+bad.cat, bad.ct, []byte(bad.body))
			var p customerapi.RowsProblem
			r.json(t, &p)
			if r.status != http.StatusUnprocessableEntity || len(p.Errors) == 0 {
				t.Errorf("put %s: %d %s", bad.body, r.status, r.body)
			}
		}
		if r := e.do(alice, "PUT", "/v1/me/vault/Horoscope", "application/json", []byte(`{}`)); r.status != http.StatusNotFound {
			t.Errorf("unknown category: %d", r.status)
		}
		if r := e.do(alice, "PUT", "/v1/me/vault/Preference", "text/plain", []byte(`{"interests":["x"]}`)); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain: %d", r.status)
		}
		if r := e.do(alice, "PUT", "/v1/me/vault/Preference", "application/json", bytes.Repeat([]byte(" "), broker.MaxRecordBytes+1)); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("huge record: %d", r.status)
		}

		before := e.state()
		big := strings.Repeat("a", 5000)
		hostile := []struct {
			name, ct, body string
			rows           []int
		}{
			{"json wrong types", "application/json", `[{"category":"Contact","value":{"email":"new@example.org"}},{"category":"Demographic","value":{"birth_year":"nineteen"}}]`, []int{2}},
			{"json not an array", "application/json", `{"category":"Contact"}`, nil},
			{"json unknown category", "application/json", `[{"category":"Horoscope","value":{}}]`, []int{1}},
			{"csv formula injection", "text/csv", "category,field,value\nContact,email,new@example.org\nContact,phone,=cmd()\nPreference,interests[0],@SUM(A1)\n", []int{3, 4}},
			{"csv dde payload", "text/csv", "category,field,value\nContact,phone,\"-2+3+cmd|' /C calc'!A0\"\n", []int{2}},
			{"csv invalid utf-8", "text/csv", "category,field,value\nContact,email,new@example.org\nPreference,interests[0],\xff\xfe\n", nil},
			{"csv huge row", "text/csv", "category,field,value\nContact,email,new@example.org\nPreference,interests[0]," + big + "\n", []int{3}},
			{"csv wrong header", "text/csv", "name,value\nContact,x\n", nil},
			{"csv wrong types", "text/csv", "category,field,value\nDemographic,birth_year,old\n", []int{2, 2}},
			{"file too large", "text/csv", "category,field,value\n" + strings.Repeat("Contact,email,new@example.org\n", vault.MaxImportBytes/30+10), nil},
		}
		for _, h := range hostile {
			r := e.do(alice, "POST", "/v1/me/vault/import", h.ct, []byte(h.body))
			var p customerapi.RowsProblem
			r.json(t, &p)
			if r.status != http.StatusUnprocessableEntity || r.header.Get("Content-Type") != "application/problem+json" || len(p.Errors) == 0 {
				t.Errorf("%s: %d %s", h.name, r.status, r.body)
				continue
			}
			if h.rows != nil {
				var rows []int
				for _, re := range p.Errors {
					rows = append(rows, re.Row)
				}
				if !cmp.Equal(rows, h.rows) {
					t.Errorf("%s: rows %v, want %v: %s", h.name, rows, h.rows, r.body)
				}
			}
		}
		if r := e.do(alice, "POST", "/v1/me/vault/import", "application/xml", []byte(`<x/>`)); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("xml import: %d", r.status)
		}
		if after := e.state(); !cmp.Equal(before, after) {
			t.Errorf("refused imports changed something:\n%s", cmp.Diff(before, after))
		}

		r = e.do(alice, "POST", "/v1/me/vault/import", "text/csv",
			[]byte("\xef\xbb\xbfcategory,field,value\r\nContact,email,new@example.org\r\nDemographic,birth_year,1988\r\n"))
		var res customerapi.ImportResult
		r.json(t, &res)
		if r.status != http.StatusOK || !cmp.Equal(res.Imported, []string{"Contact", "Demographic"}) {
			t.Errorf("import: %d %s", r.status, r.body)
		}
		recs, err := e.vault.Records(t.Context(), e.alice.ID, "Contact", "Demographic")
		if err != nil || len(recs) != 2 || string(recs[0].Value) != `{"email":"new@example.org"}` || recs[1].Source != "import" {
			t.Errorf("records after import: %+v %v", recs, err)
		}
		bobRecs, _ := e.vault.Records(t.Context(), e.bob.ID)
		if len(bobRecs) != 1 || !strings.Contains(string(bobRecs[0].Value), "bob@") {
			t.Errorf("bob's vault: %+v", bobRecs)
		}
	})
}

// TestTerms: the customer reads and replaces their terms; an invalid
// document is refused with a message naming the rule and stores nothing.
func TestTerms(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		alice := e.as(e.alice)
		var tv broker.TermsVersion
		r := e.do(alice, "GET", "/v1/me/terms", "", nil)
		r.json(t, &tv)
		if r.status != http.StatusOK || tv.Version != 1 || tv.CustomerID != e.alice.ID {
			t.Errorf("terms: %d %s", r.status, r.body)
		}
		doc := `{"format":"steward.terms/v1","rules":[{"effect":"deny","match":{"categories":["Health"]}},{"effect":"allow","match":{"sectors":["retail"]}}]}`
		r = e.do(alice, "PUT", "/v1/me/terms", "application/json", []byte(doc))
		r.json(t, &tv)
		if r.status != http.StatusOK || tv.Version != 2 || tv.Hash != broker.HashDocument(tv.Document) {
			t.Errorf("save terms: %d %s", r.status, r.body)
		}
		before := e.state()
		for _, bad := range []struct{ body, want string }{
			{`{"format":"steward.terms/v1","rules":[{"effect":"deny"},{"effect":"allow","match":{"categories":["Contact","Shoes"]}}]}`, `rule 2: unknown category \"Shoes\"`},
			{`{"format":"steward.terms/v1","rules":[{"effect":"maybe"}]}`, "rule 1: effect"},
			{`{"format":"steward.terms/v1","rules":[]} trailing`, "not JSON"},
			{"{\"format\":\"steward.terms/v1\",\"rules\":[{\"effect\":\"ask\",\"note\":\"\xff\"}]}", "UTF-8"},
		} {
			r := e.do(alice, "PUT", "/v1/me/terms", "application/json", []byte(bad.body))
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), bad.want) {
				t.Errorf("terms %.60s: %d %s, want 400 naming %q", bad.body, r.status, r.body, bad.want)
			}
		}
		if r := e.do(alice, "PUT", "/v1/me/terms", "application/json", bytes.Repeat([]byte(" "), terms.MaxDocumentBytes+1)); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("huge terms: %d", r.status)
		}
		if r := e.do(alice, "PUT", "/v1/me/terms", "application/x-www-form-urlencoded", []byte("format=x")); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("form-encoded terms: %d", r.status)
		}
		if after := e.state(); !cmp.Equal(before, after) {
			t.Errorf("refused terms changed something:\n%s", cmp.Diff(before, after))
		}
	})
}

// TestExport: the download is the customer's archive, consent records in
// DPV JSON-LD included, holding nothing of anyone else's; it decodes
// back into an export.Archive whose receipts verify.
func TestExport(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		e.disclose(e.aliceAcme, storetest.Now)
		e.settle()
		r := e.do(e.as(e.alice), "GET", "/v1/me/export", "", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" ||
			!strings.HasPrefix(r.header.Get("Content-Disposition"), `attachment; filename="steward-export-`) {
			t.Fatalf("export: %d %v", r.status, r.header)
		}
		var a export.Archive
		r.json(t, &a)
		if a.Format != export.FormatVersion || a.Customer.ID != e.alice.ID || len(a.Consents) != 2 || len(a.Disclosures) != 1 ||
			len(a.Vault) != 1 || len(a.Terms) != 1 {
			t.Errorf("archive: %s", r.body)
		}
		var ld map[string]any
		if err := json.Unmarshal(a.ConsentRecords, &ld); err != nil || ld["@context"] == nil {
			t.Errorf("consent records: %v %s", err, a.ConsentRecords)
		}
		if !strings.Contains(string(a.ConsentRecords), "dpv") {
			t.Errorf("consent records without DPV: %s", a.ConsentRecords)
		}
		for _, leak := range []string{string(e.bob.ID), "bob@", string(e.bobAcme.ID)} {
			if bytes.Contains(r.body, []byte(leak)) {
				t.Errorf("alice's export holds %q", leak)
			}
		}
		if d := a.Disclosures[0]; d.Ledger == nil || !d.Ledger.Integrated() {
			t.Fatalf("disclosure without an integrated receipt: %+v", d)
		} else if _, err := ledger.VerifyReceipt(d.Ledger.Receipt, d.Ledger.Entry, e.verifier); err != nil {
			t.Errorf("exported receipt: %v", err)
		}
		// Round trip: the archive re-encodes to the same JSON.
		again, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		var x, y any
		_ = json.Unmarshal(r.body, &x)
		_ = json.Unmarshal(again, &y)
		if diff := cmp.Diff(x, y); diff != "" {
			t.Errorf("archive does not round-trip:\n%s", diff)
		}
	})
}

// TestForgottenCustomer: a session outlives nothing: once the customer is
// erased, their cookie is refused.
func TestForgottenCustomer(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		alice := e.as(e.alice)
		if err := e.vault.Forget(t.Context(), e.alice.ID); err != nil {
			t.Fatal(err)
		}
		if r := e.do(alice, "GET", "/v1/me", "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("forgotten customer's session: %d %s", r.status, r.body)
		}
	})
}
