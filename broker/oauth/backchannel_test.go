package oauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/notify"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauthconsent"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// clock is real time plus an offset tests move forward.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time            { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration)   { c.off.Add(int64(d)) }
func (c *clock) nowFunc() func() time.Time { return c.now }

// cibaEnv is env with decoupled consent on, a movable clock and the
// consent service the provider uses.
type cibaEnv struct {
	*env
	clock *clock
	svc   *consent.Service
}

// decoupledFor is the adapter cmd/steward wires.
func decoupledFor(svc *consent.Service) oauth.Decoupled { return oauthconsent.Decoupled(svc) }

func newCIBAEnv(t *testing.T, s backend.Migrator, withDPoP bool, mod func(*oauth.Decoupled)) *cibaEnv {
	t.Helper()
	ce := &cibaEnv{clock: &clock{}}
	eng, err := policy.New(t.Context(), policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ce.svc = consent.New(s, func(ctx context.Context, c broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
		return eng.Consent(ctx, policy.ConsentRequest{Customer: c, Firm: f, Terms: tv, Request: req, Now: now})
	}, ce.clock.now)
	var v *dpop.Validator
	if withDPoP {
		nonces, err := dpop.NewNonces(0, []byte(strings.Repeat("n", dpop.MinNonceKeySize)))
		if err != nil {
			t.Fatal(err)
		}
		if v, err = dpop.NewValidator(dpop.Config{Replay: dpop.NewMemoryReplayCache(0, nil), Nonces: nonces}); err != nil {
			t.Fatal(err)
		}
	}
	ce.env = newEnvConfig(t, s, func(c *oauth.Config) {
		c.Now = ce.clock.now
		c.DPoP = v
		c.Decoupled = decoupledFor(ce.svc)
		if mod != nil {
			mod(&c.Decoupled)
		}
	})
	return ce
}

// auth adds a client assertion valid at the provider's (moved) clock.
func (ce *cibaEnv) auth(t testing.TB, c testClient, v url.Values) url.Values {
	t.Helper()
	now := ce.clock.now()
	v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	v.Set("client_assertion", ce.assertion(t, c, func(cl *jwt.Claims) {
		cl.IssuedAt, cl.Expiry = jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(time.Minute))
	}))
	return v
}

// bcAuthorize posts a backchannel authentication request.
func (ce *cibaEnv) bcAuthorize(t testing.TB, c testClient, v url.Values) (int, map[string]any) {
	t.Helper()
	return ce.post(t, oauth.PathBackchannel, ce.auth(t, c, v))
}

// poll asks the token endpoint about authReqID, with a DPoP proof from k
// when k is not nil.
func (ce *cibaEnv) poll(t testing.TB, c testClient, k *dpopKey, authReqID string) (int, map[string]any) {
	t.Helper()
	form := func() url.Values {
		return ce.auth(t, c, url.Values{"grant_type": {oauth.GrantTypeCIBA}, "auth_req_id": {authReqID}})
	}
	if k != nil {
		return ce.postDPoP(t, k, oauth.PathToken, form)
	}
	return ce.post(t, oauth.PathToken, form())
}

// signIn signs the browser in to the account pages as handle.
func (ce *cibaEnv) signIn(t testing.TB, b *browser, handle, pw string) {
	t.Helper()
	resp, page := b.get(ce.srv.URL + oauth.PathAccountLogin)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("account login page: %d %s", resp.StatusCode, page)
	}
	resp, body := b.postForm(ce.srv.URL+oauth.PathAccountLogin, url.Values{"csrf": {formToken(t, page)}, "handle": {handle}, "password": {pw}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("account login: %d %s", resp.StatusCode, body)
	}
}

var shareCodeRE = regexp.MustCompile(`id="share-code">([A-HJKMNP-TV-Z2-9]{5}-[A-HJKMNP-TV-Z2-9]{5})<`)

// shareCode creates a share code in the signed-in browser.
func (ce *cibaEnv) shareCode(t testing.TB, b *browser) string {
	t.Helper()
	resp, page := b.get(ce.srv.URL + oauth.PathShareCodes)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("share codes page: %d %s", resp.StatusCode, page)
	}
	resp, page = b.postForm(ce.srv.URL+oauth.PathShareCodes, url.Values{"csrf": {formToken(t, page)}})
	m := shareCodeRE.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("create share code: %d %s", resp.StatusCode, page)
	}
	return m[1]
}

func (ce *cibaEnv) aliceCode(t testing.TB) (*browser, string) {
	t.Helper()
	b := newBrowser(t)
	ce.signIn(t, b, "alice", alicePassword)
	return b, ce.shareCode(t, b)
}

var requestIDRE = regexp.MustCompile(`name="request" value="([^"]+)"`)

// pendingPage returns the requests page and the ids of the requests on it.
func (ce *cibaEnv) pendingPage(t testing.TB, b *browser) (string, []string) {
	t.Helper()
	resp, page := b.get(ce.srv.URL + oauth.PathAccountRequests)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("requests page: %d %s", resp.StatusCode, page)
	}
	var ids []string
	for _, m := range requestIDRE.FindAllStringSubmatch(page, -1) {
		ids = append(ids, m[1])
	}
	return page, ids
}

func bcForm(code string) url.Values {
	return url.Values{"login_hint": {code}, "authorization_details": {details}}
}

func (ce *cibaEnv) consentsOf(t testing.TB, c broker.CustomerID) []broker.Consent {
	t.Helper()
	var cs []broker.Consent
	if err := ce.store.View(t.Context(), func(tx store.Tx) (err error) {
		cs, err = tx.ListConsents(t.Context(), store.ConsentFilter{CustomerID: c})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestBackchannelPollFlow runs the decoupled flow in poll mode: share
// code, backchannel request, pending polls, the customer's narrowed
// approval through the HTML form, DPoP-bound tokens, single use.
func TestBackchannelPollFlow(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, true, nil)
		var md map[string]any
		getJSON(t, ce.srv.URL+oauth.PathMetadata, &md)
		if md["backchannel_authentication_endpoint"] != ce.srv.URL+oauth.PathBackchannel ||
			!strings.Contains(jsonString(md["backchannel_token_delivery_modes_supported"]), `"ping"`) ||
			!strings.Contains(jsonString(md["grant_types_supported"]), oauth.GrantTypeCIBA) {
			t.Errorf("metadata: %v", md)
		}

		b, code := ce.aliceCode(t)
		v := bcForm(code)
		v.Set("binding_message", "ACME 4711")
		st, out := ce.bcAuthorize(t, ce.client, v)
		if st != http.StatusOK || out["auth_req_id"] == nil || out["expires_in"] != float64(600) || out["interval"] != float64(5) {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		id := out["auth_req_id"].(string)
		key := newDPoPKey(t, jose.ES256)

		st, out = ce.poll(t, ce.client, key, id)
		wantError(t, "first poll", st, out, http.StatusBadRequest, "authorization_pending")
		st, out = ce.poll(t, ce.client, key, id)
		wantError(t, "poll within the interval", st, out, http.StatusBadRequest, "slow_down")
		ce.clock.advance(11 * time.Second) // the interval grew to 10s
		st, out = ce.poll(t, ce.client, key, id)
		wantError(t, "poll after the interval", st, out, http.StatusBadRequest, "authorization_pending")
		st, out = ce.poll(t, ce.other, key, id)
		wantError(t, "another client's auth_req_id", st, out, http.StatusBadRequest, "invalid_grant")

		page, ids := ce.pendingPage(t, b)
		for _, want := range []string{"Acme Retail Ltd", "Acme app", "ACME 4711", "Marketing", "Contact", "Preference", "P30D", "What your terms say", "so you are asked"} {
			if !strings.Contains(page, want) {
				t.Errorf("requests page lacks %q:\n%s", want, page)
			}
		}
		if len(ids) != 1 {
			t.Fatalf("pending requests %v, want 1", ids)
		}
		answer := url.Values{"request": {ids[0]}, "decision": {"approve"}, "category.0": {"Contact"}, "duration.0": {"P7D"}}

		// Without the CSRF token nothing is recorded.
		resp, _ := b.postForm(ce.srv.URL+oauth.PathAccountRequests, answer)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("approval without csrf: %d, want 403", resp.StatusCode)
		}
		// A longer duration is not a narrowing.
		wider := url.Values{"csrf": {formToken(t, page)}, "request": {ids[0]}, "decision": {"approve"}, "category.0": {"Contact"}, "duration.0": {"P90D"}}
		if resp, body := b.postForm(ce.srv.URL+oauth.PathAccountRequests, wider); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("approval with a longer duration: %d %s", resp.StatusCode, body)
		}
		ce.clock.advance(11 * time.Second)
		st, out = ce.poll(t, ce.client, key, id)
		wantError(t, "poll before the answer", st, out, http.StatusBadRequest, "authorization_pending")

		answer.Set("csrf", formToken(t, page))
		resp, body := b.postForm(ce.srv.URL+oauth.PathAccountRequests, answer)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approval: %d %s", resp.StatusCode, body)
		}
		if _, ids := ce.pendingPage(t, b); len(ids) != 0 {
			t.Errorf("still pending after approval: %v", ids)
		}

		ce.clock.advance(11 * time.Second)
		st, tok := ce.poll(t, ce.client, key, id)
		if st != http.StatusOK || tok["token_type"] != "DPoP" || tok["refresh_token"] == nil {
			t.Fatalf("token: %d %v", st, tok)
		}
		granted := jsonString(tok["authorization_details"])
		if !strings.Contains(granted, `"Contact"`) || strings.Contains(granted, "Preference") || !strings.Contains(granted, `"P7D"`) {
			t.Errorf("token response authorization_details = %s, want Contact for P7D", granted)
		}
		info := ce.introspect(t, ce.client, tok["access_token"].(string))
		if info["active"] != true || info["consent_id"] == nil || jsonString(info["cnf"]) != `{"jkt":"`+key.jkt()+`"}` {
			t.Fatalf("introspection: %v", info)
		}
		if got := jsonString(info["authorization_details"]); !strings.Contains(got, `"Contact"`) || strings.Contains(got, "Preference") || !strings.Contains(got, "P7D") {
			t.Errorf("introspected authorization_details = %s", got)
		}
		var c broker.Consent
		if err := s.View(t.Context(), func(tx store.Tx) (err error) {
			c, err = tx.GetConsent(t.Context(), broker.ConsentID(info["consent_id"].(string)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if c.State != broker.ConsentGranted || strings.Join(c.Granted.Categories, ",") != "Contact" || c.Granted.Duration.String() != "P7D" {
			t.Errorf("stored consent: %s %v %s", c.State, c.Granted.Categories, c.Granted.Duration)
		}

		// The auth_req_id is spent; the refresh token works and stays bound.
		st, out = ce.poll(t, ce.client, key, id)
		wantError(t, "replayed auth_req_id", st, out, http.StatusBadRequest, "invalid_grant")
		st, tok2 := ce.postDPoP(t, key, oauth.PathToken, func() url.Values {
			return ce.auth(t, ce.client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
		})
		if st != http.StatusOK || tok2["token_type"] != "DPoP" {
			t.Errorf("refresh: %d %v", st, tok2)
		}

		// The share code was single use.
		st, out = ce.bcAuthorize(t, ce.client, bcForm(code))
		wantError(t, "reused share code", st, out, http.StatusBadRequest, "unknown_user_id")
	})
}

// webhookReceiver is a firm's https endpoint that checks each delivery's
// signature against Steward's webhook keys.
type webhookReceiver struct {
	t    *testing.T
	jwks jose.JSONWebKeySet
	mu   sync.Mutex
	got  []notify.Event
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	jws, err := jose.ParseSigned(string(body))
	if err != nil {
		rc.t.Errorf("webhook is not a JWS: %v", err)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	keys := rc.jwks.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		rc.t.Errorf("webhook signed by unknown key %q", jws.Signatures[0].Header.KeyID)
		http.Error(w, "bad", http.StatusUnauthorized)
		return
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		rc.t.Errorf("webhook signature: %v", err)
		http.Error(w, "bad", http.StatusUnauthorized)
		return
	}
	var ev notify.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		rc.t.Errorf("webhook payload: %v", err)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, ev)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestBackchannelPing runs ping mode: the customer refuses, and the firm's
// endpoint receives a signed webhook naming the auth_req_id and consent.
func TestBackchannelPing(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		rc := &webhookReceiver{t: t}
		hook := httptest.NewTLSServer(rc)
		t.Cleanup(hook.Close)
		snd, err := notify.New(s, notify.Config{Key: priv, KeyID: "webhook-1", Client: hook.Client(), Now: ce.clock.now})
		if err != nil {
			t.Fatal(err)
		}
		rc.jwks = snd.JWKS()

		b, code := ce.aliceCode(t)
		v := bcForm(code)
		v.Set("client_notification_token", "firm-token-8a7b6c5d4e3f")
		st, out := ce.bcAuthorize(t, ce.client, v)
		wantError(t, "ping mode without a webhook URL", st, out, http.StatusBadRequest, "invalid_request")

		if err := s.Update(t.Context(), func(tx store.Tx) error {
			_, err := tx.SetFirmWebhook(t.Context(), ce.firm.ID, hook.URL+"/steward", time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		st, out = ce.bcAuthorize(t, ce.client, v)
		if st != http.StatusOK {
			t.Fatalf("bc-authorize (ping): %d %v", st, out)
		}
		id := out["auth_req_id"].(string)

		page, ids := ce.pendingPage(t, b)
		if len(ids) != 1 {
			t.Fatalf("pending: %v", ids)
		}
		resp, body := b.postForm(ce.srv.URL+oauth.PathAccountRequests, url.Values{"csrf": {formToken(t, page)}, "request": {ids[0]}, "decision": {"refuse"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("refusal: %d %s", resp.StatusCode, body)
		}
		if n, err := snd.RunOnce(t.Context()); err != nil || n != 1 {
			t.Fatalf("webhook run: %d, %v", n, err)
		}
		rc.mu.Lock()
		got := rc.got
		rc.mu.Unlock()
		if len(got) != 1 || got[0].Type != oauth.EventBackchannelDecided {
			t.Fatalf("webhooks received: %+v", got)
		}
		var data oauth.BackchannelDecided
		if err := json.Unmarshal(got[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.AuthReqID != id || data.Outcome != "denied" || data.ClientNotificationToken != "firm-token-8a7b6c5d4e3f" || data.ConsentID == "" {
			t.Errorf("webhook data: %+v", data)
		}
		cs := ce.consentsOf(t, ce.customer.ID)
		if len(cs) != 1 || cs[0].ID != data.ConsentID || cs[0].State != broker.ConsentDenied {
			t.Errorf("consents: %+v", cs)
		}
		st, out = ce.poll(t, ce.client, nil, id)
		wantError(t, "poll after refusal", st, out, http.StatusBadRequest, "access_denied")
	})
}

// TestBackchannelStandingTerms: a standing allow grants at once, a deny
// refuses at once; the customer is not asked.
func TestBackchannelStandingTerms(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		b := newBrowser(t)
		ce.signIn(t, b, "alice", alicePassword)

		if _, err := ce.svc.SaveTerms(t.Context(), ce.customer.ID, []byte(`{"format":"steward.terms/v1","rules":[{"effect":"allow"}]}`)); err != nil {
			t.Fatal(err)
		}
		st, out := ce.bcAuthorize(t, ce.client, bcForm(ce.shareCode(t, b)))
		if st != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		if _, ids := ce.pendingPage(t, b); len(ids) != 0 {
			t.Errorf("a standing allow still asked the customer: %v", ids)
		}
		st, tok := ce.poll(t, ce.client, nil, out["auth_req_id"].(string))
		if st != http.StatusOK || tok["access_token"] == nil || !strings.Contains(jsonString(tok["authorization_details"]), "Preference") {
			t.Fatalf("token under a standing allow: %d %v", st, tok)
		}

		if _, err := ce.svc.SaveTerms(t.Context(), ce.customer.ID, []byte(`{"format":"steward.terms/v1","rules":[{"effect":"deny"}]}`)); err != nil {
			t.Fatal(err)
		}
		st, out = ce.bcAuthorize(t, ce.client, bcForm(ce.shareCode(t, b)))
		if st != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		st, out = ce.poll(t, ce.client, nil, out["auth_req_id"].(string))
		wantError(t, "poll under a standing deny", st, out, http.StatusBadRequest, "access_denied")
		if _, ids := ce.pendingPage(t, b); len(ids) != 0 {
			t.Errorf("a standing deny still asked the customer: %v", ids)
		}
	})
}

// TestBackchannelExpiry: an expired request is expired_token and can no
// longer be answered; an expired share code is expired_login_hint_token.
func TestBackchannelExpiry(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		b, code := ce.aliceCode(t)
		v := bcForm(code)
		v.Set("requested_expiry", "30")
		st, out := ce.bcAuthorize(t, ce.client, v)
		if st != http.StatusOK || out["expires_in"] != float64(30) {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		page, ids := ce.pendingPage(t, b)
		ce.clock.advance(31 * time.Second)
		st, out = ce.poll(t, ce.client, nil, out["auth_req_id"].(string))
		wantError(t, "poll after expiry", st, out, http.StatusBadRequest, "expired_token")
		resp, _ := b.postForm(ce.srv.URL+oauth.PathAccountRequests, url.Values{"csrf": {formToken(t, page)}, "request": {ids[0]}, "decision": {"approve"}, "category.0": {"Contact"}})
		if resp.StatusCode != http.StatusGone {
			t.Errorf("approving an expired request: %d, want 410", resp.StatusCode)
		}
		if _, ids := ce.pendingPage(t, b); len(ids) != 0 {
			t.Errorf("expired request still listed: %v", ids)
		}

		code = ce.shareCode(t, b)
		ce.clock.advance(oauth.DefaultShareCodeLifespan + time.Second)
		st, out = ce.bcAuthorize(t, ce.client, bcForm(code))
		wantError(t, "expired share code", st, out, http.StatusBadRequest, "expired_login_hint_token")

		// Cleanup removes the expired code and request; the consent stays.
		if n, err := ce.p.Cleanup(t.Context()); err != nil || n < 2 {
			t.Errorf("cleanup: %d rows, %v; want at least the code and the request", n, err)
		}
		st, out = ce.bcAuthorize(t, ce.client, bcForm(code))
		wantError(t, "share code after cleanup", st, out, http.StatusBadRequest, "unknown_user_id")
		if cs := ce.consentsOf(t, ce.customer.ID); len(cs) != 1 || cs[0].State != broker.ConsentDenied {
			t.Errorf("consents after cleanup: %+v; want the unanswered one denied", cs)
		}
	})
}

// TestBackchannelOtherCustomer: a customer neither sees nor answers
// another customer's request.
func TestBackchannelOtherCustomer(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		bob := storetest.NewCustomer("bob")
		hash, err := password.Hash("bob's long password", password.Params{Memory: 1024, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		bob.PasswordHash = hash
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateCustomer(t.Context(), bob) }); err != nil {
			t.Fatal(err)
		}
		ba, code := ce.aliceCode(t)
		st, out := ce.bcAuthorize(t, ce.client, bcForm(code))
		if st != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		_, aliceIDs := ce.pendingPage(t, ba)

		bb := newBrowser(t)
		ce.signIn(t, bb, "bob", "bob's long password")
		if _, ids := ce.pendingPage(t, bb); len(ids) != 0 {
			t.Errorf("bob sees alice's requests: %v", ids)
		}
		_, page := bb.get(ce.srv.URL + oauth.PathShareCodes) // for bob's CSRF token
		resp, _ := bb.postForm(ce.srv.URL+oauth.PathAccountRequests, url.Values{"csrf": {formToken(t, page)}, "request": {aliceIDs[0]},
			"decision": {"approve"}, "category.0": {"Contact"}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob approving alice's request: %d, want 404", resp.StatusCode)
		}
		st, out = ce.poll(t, ce.client, nil, out["auth_req_id"].(string))
		wantError(t, "poll after bob's attempt", st, out, http.StatusBadRequest, "authorization_pending")
		if cs := ce.consentsOf(t, ce.customer.ID); len(cs) != 1 || cs[0].State != broker.ConsentRequested {
			t.Errorf("alice's consents: %+v", cs)
		}
	})
}

// TestBackchannelBadInput: refused requests get their RFC error codes and
// leave nothing behind: the share code still works afterwards and no
// consent was recorded.
func TestBackchannelBadInput(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		_, code := ce.aliceCode(t)
		with := func(k, v string) url.Values {
			f := bcForm(code)
			if v == "" {
				f.Del(k)
			} else {
				f.Set(k, v)
			}
			return f
		}
		for _, tc := range []struct {
			name string
			form url.Values
			want string
		}{
			{"no login_hint", with("login_hint", ""), "invalid_request"},
			{"unknown share code", with("login_hint", "AAAAA-AAAAA"), "unknown_user_id"},
			{"id_token_hint", with("id_token_hint", "x"), "invalid_request"},
			{"scope", with("scope", "openid"), "invalid_scope"},
			{"no authorization_details", with("authorization_details", ""), "invalid_authorization_details"},
			{"unknown category", with("authorization_details", `[{"type":"steward_customer_data","categories":["Nope"],"purpose":"Marketing","duration":"P30D"}]`), "invalid_authorization_details"},
			{"unknown type", with("authorization_details", `[{"type":"other","categories":["Contact"],"purpose":"Marketing","duration":"P30D"}]`), "invalid_authorization_details"},
			{"bad duration", with("authorization_details", `[{"type":"steward_customer_data","categories":["Contact"],"purpose":"Marketing","duration":"30 days"}]`), "invalid_authorization_details"},
			{"long binding message", with("binding_message", strings.Repeat("x", oauth.MaxBindingMessage+1)), "invalid_binding_message"},
			{"control character in binding message", with("binding_message", "a\nb"), "invalid_binding_message"},
			{"ping without a webhook", with("client_notification_token", "tok-1234567890"), "invalid_request"},
			{"zero requested_expiry", with("requested_expiry", "0"), "invalid_request"},
			{"long requested_expiry", with("requested_expiry", "6000"), "invalid_request"},
		} {
			st, out := ce.bcAuthorize(t, ce.client, tc.form)
			wantError(t, tc.name, st, out, http.StatusBadRequest, tc.want)
		}
		st, out := ce.post(t, oauth.PathBackchannel, bcForm(code))
		wantError(t, "no client authentication", st, out, http.StatusUnauthorized, "invalid_client")

		// A regulator's client may not ask for consent.
		reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "ICO", Jurisdiction: "GB", CreatedAt: storetest.Now}
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateRegulator(t.Context(), reg) }); err != nil {
			t.Fatal(err)
		}
		rc, jwks := newKeyClient(t, jose.EdDSA)
		if err := s.OAuth().CreateRegulatorClient(t.Context(), reg.ID, broker.Client{ID: rc.id, Name: "ICO audit", JWKS: jwks, Status: broker.ClientActive, CreatedAt: storetest.Now}); err != nil {
			t.Fatal(err)
		}
		st, out = ce.bcAuthorize(t, rc, bcForm(code))
		wantError(t, "regulator's client", st, out, http.StatusBadRequest, "unauthorized_client")

		if cs := ce.consentsOf(t, ce.customer.ID); len(cs) != 0 {
			t.Fatalf("refused requests recorded consents: %+v", cs)
		}

		st, out = ce.poll(t, ce.client, nil, "no-such-request")
		wantError(t, "unknown auth_req_id", st, out, http.StatusBadRequest, "invalid_grant")
		st, out = ce.post(t, oauth.PathToken, ce.auth(t, ce.client, url.Values{"grant_type": {oauth.GrantTypeCIBA}}))
		wantError(t, "no auth_req_id", st, out, http.StatusBadRequest, "invalid_request")

		// The share code survived every refusal, in lower case too.
		st, out = ce.bcAuthorize(t, ce.client, with("login_hint", strings.ToLower(code)))
		if st != http.StatusOK {
			t.Fatalf("bc-authorize after refusals: %d %v", st, out)
		}
	})
}

// TestBackchannelConcurrentRedemption: of several token requests for one
// granted auth_req_id at once, exactly one gets tokens.
func TestBackchannelConcurrentRedemption(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ce := newCIBAEnv(t, s, false, nil)
		b := newBrowser(t)
		ce.signIn(t, b, "alice", alicePassword)
		if _, err := ce.svc.SaveTerms(t.Context(), ce.customer.ID, []byte(`{"format":"steward.terms/v1","rules":[{"effect":"allow"}]}`)); err != nil {
			t.Fatal(err)
		}
		st, out := ce.bcAuthorize(t, ce.client, bcForm(ce.shareCode(t, b)))
		if st != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", st, out)
		}
		id := out["auth_req_id"].(string)
		const n = 4
		forms := make([]url.Values, n)
		for i := range forms {
			forms[i] = ce.auth(t, ce.client, url.Values{"grant_type": {oauth.GrantTypeCIBA}, "auth_req_id": {id}})
		}
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.PostForm(ce.srv.URL+oauth.PathToken, forms[i])
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Errorf("%d of %d concurrent redemptions got tokens, want 1", ok.Load(), n)
		}
	})
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAccountLoginThrottled: the account sign-in shares the login
// throttle, so failures at either page count against the handle, and a
// throttled handle cannot sign in at the account page with the right
// password.
func TestAccountLoginThrottled(t *testing.T) {
	ce := newCIBAEnv(t, backendtest.Open(t, ""), false, nil)
	b := newBrowser(t)
	try := func(pw string) (*http.Response, string) {
		_, page := b.get(ce.srv.URL + oauth.PathAccountLogin)
		return b.postForm(ce.srv.URL+oauth.PathAccountLogin, url.Values{"csrf": {formToken(t, page)}, "handle": {"alice"}, "password": {pw}})
	}
	for i := range oauth.DefaultLoginMaxFailures {
		if resp, body := try("wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := try(alicePassword)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("right password after %d failures: %d %s", oauth.DefaultLoginMaxFailures, resp.StatusCode, body)
	}
	u, _ := url.Parse(ce.srv.URL + oauth.PathAccountLogin)
	for _, ck := range b.Jar.Cookies(u) {
		if strings.Contains(ck.Name, "login") {
			t.Errorf("a throttled sign-in set cookie %s", ck.Name)
		}
	}
}
