package oauth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
)

// TestCustomerSession: after signing in on the login page, the browser
// turns its login into an API session scoped to /v1/me; the session, its
// CSRF token and the Origin check hold only for that login, only until
// it expires.
func TestCustomerSession(t *testing.T) {
	var skew atomic.Int64
	e := newEnvConfig(t, backendtest.Open(t, ""), func(c *oauth.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	pk := newPKCE()
	st, out := e.par(t, e.client, pk, nil)
	if st != http.StatusCreated {
		t.Fatalf("par: %d %v", st, out)
	}
	b := newBrowser(t)
	e.authorize(t, b, e.client, out["request_uri"].(string), true)
	oauthURL, _ := url.Parse(e.srv.URL + "/oauth/")
	var login *http.Cookie
	for _, c := range b.Jar.Cookies(oauthURL) {
		if c.Name == "steward_login" {
			login = c
		}
	}
	if login == nil {
		t.Fatal("no login cookie after signing in")
	}
	session := func(method string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, e.srv.URL+oauth.PathCustomerSession, nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		e.p.CustomerSession().ServeHTTP(w, r)
		return w
	}
	tampered := *login
	tampered.Value = string(broker.NewCustomerID()) + login.Value[len(e.customer.ID):]
	for name, w := range map[string]*httptest.ResponseRecorder{
		"no login":       session("GET"),
		"tampered login": session("GET", &tampered),
	} {
		if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
			t.Errorf("%s: %d %v", name, w.Code, w.Result().Cookies())
		}
	}
	if w := session("POST", login); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
	// Signing out: only from Steward's own origin; it clears both cookies.
	if w := session("DELETE", login); w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Errorf("sign out without Origin: %d %v", w.Code, w.Result().Cookies())
	}
	signOut := httptest.NewRequest("DELETE", e.srv.URL+oauth.PathCustomerSession, nil)
	signOut.Header.Set("Origin", e.srv.URL)
	w0 := httptest.NewRecorder()
	e.p.CustomerSession().ServeHTTP(w0, signOut)
	cleared := map[string]string{}
	for _, c := range w0.Result().Cookies() {
		if c.MaxAge < 0 && c.Value == "" {
			cleared[c.Name] = c.Path
		}
	}
	if w0.Code != http.StatusNoContent || cleared["steward_session"] != oauth.CustomerAPIPath || cleared["steward_login"] != "/oauth/" {
		t.Errorf("sign out: %d %v", w0.Code, w0.Result().Cookies())
	}

	w := session("GET", login)
	var body struct {
		CustomerID broker.CustomerID `json:"customer_id"`
		CSRFToken  string            `json:"csrf_token"`
		ExpiresAt  time.Time         `json:"expires_at"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	cks := w.Result().Cookies()
	if w.Code != http.StatusOK || body.CustomerID != e.customer.ID || body.CSRFToken == "" || len(cks) != 1 {
		t.Fatalf("session: %d %s %v", w.Code, w.Body, cks)
	}
	sess := cks[0]
	if sess.Path != oauth.CustomerAPIPath || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode ||
		sess.MaxAge <= 0 || sess.MaxAge > int(oauth.DefaultLoginLifespan.Seconds()) || sess.Value != login.Value {
		t.Errorf("session cookie: %+v", sess)
	}
	if d := time.Until(body.ExpiresAt); d <= 0 || d > oauth.DefaultLoginLifespan {
		t.Errorf("expires_at %v", body.ExpiresAt)
	}

	api := func(origin, token string, cookies ...*http.Cookie) *http.Request {
		r := httptest.NewRequest("POST", e.srv.URL+"/v1/me/terms", nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if token != "" {
			r.Header.Set(oauth.CSRFHeader, token)
		}
		return r
	}
	if id, ok := e.p.Customer(api("", "", sess)); !ok || id != e.customer.ID {
		t.Errorf("Customer with the session: %q %v", id, ok)
	}
	if _, ok := e.p.Customer(api("", "", login)); ok {
		t.Error("the login cookie is accepted as an API session")
	}
	if got := e.p.CustomerCSRFToken(api("", "", sess)); got != body.CSRFToken {
		t.Errorf("CSRF token %q, session gave %q", got, body.CSRFToken)
	}
	other := e.p.SessionCookie(broker.NewCustomerID())
	otherToken := e.p.CustomerCSRFToken(api("", "", other))
	for _, c := range []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"origin and token", api(e.srv.URL, body.CSRFToken, sess), true},
		{"no origin", api("", body.CSRFToken, sess), false},
		{"other origin", api("https://evil.example", body.CSRFToken, sess), false},
		{"null origin", api("null", body.CSRFToken, sess), false},
		{"no token", api(e.srv.URL, "", sess), false},
		{"another session's token", api(e.srv.URL, otherToken, sess), false},
		{"token without its session", api(e.srv.URL, body.CSRFToken), false},
	} {
		if got := e.p.CheckCustomerCSRF(c.r); got != c.want {
			t.Errorf("%s: CheckCustomerCSRF = %v", c.name, got)
		}
	}

	skew.Store(int64(oauth.DefaultLoginLifespan + time.Minute))
	if _, ok := e.p.Customer(api("", "", sess)); ok {
		t.Error("expired session accepted")
	}
	if e.p.CheckCustomerCSRF(api(e.srv.URL, body.CSRFToken, sess)) {
		t.Error("expired session passes the CSRF check")
	}
	if w := session("GET", login); w.Code != http.StatusUnauthorized {
		t.Errorf("session from an expired login: %d", w.Code)
	}
}
