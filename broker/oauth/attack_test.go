package oauth_test

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/sqlite"
)

// TestAttacks runs the RFC 9700 attacks that apply to this profile; each
// subtest fails if its defence is removed.
func TestAttacks(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)

		t.Run("code replay revokes the tokens issued from it", func(t *testing.T) {
			code, pk := e.code(t)
			st, tok := e.exchange(t, e.client, code, pk.verifier)
			if st != http.StatusOK {
				t.Fatal(st, tok)
			}
			st, out := e.exchange(t, e.client, code, pk.verifier)
			wantError(t, "replayed code", st, out, http.StatusBadRequest, "invalid_grant")
			if e.introspect(t, e.client, tok["access_token"].(string))["active"] != false {
				t.Error("access token from a replayed code is still active")
			}
			st, out = e.refresh(t, e.client, tok["refresh_token"].(string))
			wantError(t, "refresh token from a replayed code", st, out, http.StatusBadRequest, "invalid_grant")
		})

		t.Run("concurrent redemption of one code or refresh token", func(t *testing.T) {
			code, pk := e.code(t)
			forms := make([]url.Values, 4)
			for i := range forms {
				forms[i] = e.authForm(t, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}})
			}
			ok, refresh := race(t, e, forms)
			if ok != 1 {
				t.Fatalf("%d of %d concurrent exchanges of one code succeeded, want 1", ok, len(forms))
			}
			for i := range forms {
				forms[i] = e.authForm(t, e.client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
			}
			if ok, _ := race(t, e, forms); ok > 1 {
				t.Errorf("%d of %d concurrent refreshes with one token succeeded, want at most 1", ok, len(forms))
			}
		})

		t.Run("code bound to its client", func(t *testing.T) {
			code, pk := e.code(t)
			st, out := e.exchange(t, e.other, code, pk.verifier)
			wantError(t, "code redeemed by another client", st, out, http.StatusBadRequest, "invalid_grant")
		})

		t.Run("PKCE", func(t *testing.T) {
			code, _ := e.code(t)
			st, out := e.exchange(t, e.client, code, "")
			wantError(t, "missing verifier", st, out, http.StatusBadRequest, "invalid_grant")
			code, _ = e.code(t)
			st, out = e.exchange(t, e.client, code, newPKCE().verifier)
			wantError(t, "wrong verifier", st, out, http.StatusBadRequest, "invalid_grant")
			pk := newPKCE()
			st, out = e.par(t, e.client, pk, func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") })
			wantError(t, "PAR without code_challenge", st, out, http.StatusBadRequest, "invalid_request")
			st, out = e.par(t, e.client, pk, func(v url.Values) { v.Set("code_challenge", pk.verifier); v.Set("code_challenge_method", "plain") })
			wantError(t, "plain method", st, out, http.StatusBadRequest, "invalid_request")
		})

		t.Run("redirect URI manipulation", func(t *testing.T) {
			for _, u := range []string{"https://evil.example/cb", redirectURI + "/x", redirectURI + "?next=https://evil.example", "https://firm.example.evil.example/cb", "http://firm.example/cb"} {
				st, out := e.par(t, e.client, newPKCE(), func(v url.Values) { v.Set("redirect_uri", u) })
				wantError(t, "PAR with redirect_uri "+u, st, out, http.StatusBadRequest, "invalid_request")
			}
			code, pk := e.code(t)
			v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://evil.example/cb"}, "code_verifier": {pk.verifier}}
			st, out := e.post(t, oauth.PathToken, e.authForm(t, e.client, v))
			wantError(t, "exchange with another redirect_uri", st, out, http.StatusBadRequest, "invalid_grant")
		})

		t.Run("authorization request without PAR is never redirected", func(t *testing.T) {
			pk := newPKCE()
			q := url.Values{"response_type": {"code"}, "client_id": {string(e.client.id)}, "redirect_uri": {redirectURI},
				"code_challenge": {pk.challenge}, "code_challenge_method": {"S256"}, "state": {"state-1234567890"}}
			resp, body := newBrowser(t).get(e.srv.URL + oauth.PathAuthorize + "?" + q.Encode())
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "invalid_request") {
				t.Errorf("authorize without PAR: %d Location=%q %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})

		t.Run("open redirect", func(t *testing.T) {
			b := newBrowser(t)
			for _, q := range []url.Values{
				{"client_id": {string(e.client.id)}, "request_uri": {"urn:ietf:params:oauth:request_uri:forged"}, "redirect_uri": {"https://evil.example/"}},
				{"client_id": {"cli_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, "response_type": {"code"}, "redirect_uri": {"https://evil.example/"}},
			} {
				resp, _ := b.get(e.srv.URL + oauth.PathAuthorize + "?" + q.Encode())
				if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil.example") || resp.StatusCode == http.StatusSeeOther {
					t.Errorf("authorize %v redirected to %q", q, loc)
				}
			}
		})

		t.Run("request_uri is single use and bound to its client", func(t *testing.T) {
			_, out := e.par(t, e.client, newPKCE(), nil)
			uri := out["request_uri"].(string)
			b := newBrowser(t)
			resp, _ := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.other.id)}, "request_uri": {uri}}.Encode())
			if resp.StatusCode == http.StatusSeeOther && strings.Contains(resp.Header.Get("Location"), oauth.PathLogin) {
				t.Error("another client used the request_uri")
			}
			resp, _ = b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.client.id)}, "request_uri": {uri}}.Encode())
			if resp.StatusCode == http.StatusSeeOther && strings.Contains(resp.Header.Get("Location"), oauth.PathLogin) {
				t.Error("request_uri used twice")
			}
		})

		t.Run("refresh token reuse revokes the family", func(t *testing.T) {
			code, pk := e.code(t)
			_, tok := e.exchange(t, e.client, code, pk.verifier)
			rt0 := tok["refresh_token"].(string)
			st, tok1 := e.refresh(t, e.client, rt0)
			if st != http.StatusOK {
				t.Fatal(st, tok1)
			}
			st, out := e.refresh(t, e.client, rt0)
			wantError(t, "reused refresh token", st, out, http.StatusBadRequest, "invalid_grant")
			if e.introspect(t, e.client, tok1["access_token"].(string))["active"] != false {
				t.Error("access token of the family survived reuse")
			}
			st, out = e.refresh(t, e.client, tok1["refresh_token"].(string))
			wantError(t, "current refresh token after reuse", st, out, http.StatusBadRequest, "invalid_grant")
		})

		t.Run("refresh token bound to its client", func(t *testing.T) {
			code, pk := e.code(t)
			_, tok := e.exchange(t, e.client, code, pk.verifier)
			st, out := e.refresh(t, e.other, tok["refresh_token"].(string))
			wantError(t, "refresh by another client", st, out, http.StatusBadRequest, "invalid_grant")
		})

		cc := func(assertion string) (int, map[string]any) {
			return e.post(t, oauth.PathToken, url.Values{"grant_type": {"client_credentials"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
		}

		t.Run("client assertion replay", func(t *testing.T) {
			a := e.assertion(t, e.client, nil)
			if st, out := cc(a); st != http.StatusOK {
				t.Fatal(st, out)
			}
			st, out := cc(a)
			wantError(t, "replayed assertion", st, out, http.StatusUnauthorized, "invalid_client")
		})

		t.Run("client assertion claims", func(t *testing.T) {
			for name, mod := range map[string]func(*jwt.Claims){
				"wrong aud":         func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://other-as.example"} },
				"expired":           func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute)) },
				"no exp":            func(c *jwt.Claims) { c.Expiry = nil },
				"exp too far":       func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(time.Hour)) },
				"no jti":            func(c *jwt.Claims) { c.ID = "" },
				"iss not client":    func(c *jwt.Claims) { c.Issuer = string(e.other.id) },
				"sub other":         func(c *jwt.Claims) { c.Subject = string(e.other.id) },
				"issued later":      func(c *jwt.Claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour)) },
				"not yet valid":     func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) },
				"token endpoint ok": nil,
			} {
				if mod == nil {
					continue
				}
				st, out := cc(e.assertion(t, e.client, mod))
				wantError(t, name, st, out, http.StatusUnauthorized, "invalid_client")
			}
			// The token endpoint URL is an accepted audience too.
			st, out := cc(e.assertion(t, e.client, func(c *jwt.Claims) { c.Audience = jwt.Audience{e.srv.URL + oauth.PathToken} }))
			if st != http.StatusOK {
				t.Errorf("aud = token endpoint: %d %v", st, out)
			}
		})

		t.Run("client assertion keys and algorithms", func(t *testing.T) {
			// Signed by a key the client never registered (the other client's).
			forged := e.other
			forged.id = e.client.id
			st, out := cc(e.assertion(t, forged, nil))
			wantError(t, "foreign key", st, out, http.StatusUnauthorized, "invalid_client")
			// HS256 with the public key as secret, and alg none.
			hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))}, nil)
			a, _ := jwt.Signed(hs).Claims(jwt.Claims{Issuer: string(e.client.id), Subject: string(e.client.id), Audience: jwt.Audience{e.srv.URL},
				ID: "hs", Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).CompactSerialize()
			st, out = cc(a)
			wantError(t, "HS256", st, out, http.StatusUnauthorized, "invalid_client")
			parts := strings.Split(e.assertion(t, e.client, nil), ".")
			st, out = cc("eyJhbGciOiJub25lIn0." + parts[1] + ".")
			wantError(t, "alg none", st, out, http.StatusUnauthorized, "invalid_client")
			// Only private_key_jwt.
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+oauth.PathToken, strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(string(e.client.id), "secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("client_secret_basic: %d", resp.StatusCode)
			}
		})

		t.Run("tokens used by another client", func(t *testing.T) {
			code, pk := e.code(t)
			_, tok := e.exchange(t, e.client, code, pk.verifier)
			at := tok["access_token"].(string)
			if info := e.introspect(t, e.other, at); info["active"] != false || len(info) != 1 {
				t.Errorf("another client introspected the token: %v", info)
			}
			// fosite answers 200 so as not to reveal that the token exists,
			// but must not revoke it.
			e.post(t, oauth.PathRevoke, e.authForm(t, e.other, url.Values{"token": {tok["refresh_token"].(string)}}))
			e.post(t, oauth.PathRevoke, e.authForm(t, e.other, url.Values{"token": {at}}))
			if e.introspect(t, e.client, at)["active"] != true {
				t.Error("another client's revocation attempt ended the grant")
			}
		})

		t.Run("CSRF on the login and consent forms", func(t *testing.T) {
			_, out := e.par(t, e.client, newPKCE(), nil)
			b := newBrowser(t)
			resp, _ := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.client.id)}, "request_uri": {out["request_uri"].(string)}}.Encode())
			loc, _ := url.Parse(resp.Header.Get("Location"))
			ix := loc.Query().Get("interaction")
			_, page := b.get(loc.String())
			login := url.Values{"interaction": {ix}, "handle": {"alice"}, "password": {alicePassword}}
			for name, tok := range map[string]string{"missing": "", "forged": strings.Repeat("A", 43)} {
				login.Set("csrf", tok)
				if resp, _ := b.postForm(e.srv.URL+oauth.PathLogin, login); resp.StatusCode != http.StatusForbidden {
					t.Errorf("login with %s CSRF token: %d", name, resp.StatusCode)
				}
			}
			// A cross-site post carries the victim's cookies but another Origin.
			login.Set("csrf", formToken(t, page))
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+oauth.PathLogin, strings.NewReader(login.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "https://evil.example")
			if resp, err := b.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("login from another origin: %v %v", resp.StatusCode, err)
			}
			resp, _ = b.postForm(e.srv.URL+oauth.PathLogin, login)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d", resp.StatusCode)
			}
			_, page = b.get(e.srv.URL + oauth.PathConsent + "?interaction=" + ix)
			answer := url.Values{"interaction": {ix}, "decision": {"approve"}, "category.0": {"Contact"}, "csrf": {strings.Repeat("B", 43)}}
			if resp, _ := b.postForm(e.srv.URL+oauth.PathConsent, answer); resp.StatusCode != http.StatusForbidden {
				t.Errorf("consent with a forged CSRF token: %d", resp.StatusCode)
			}
			// Another browser (the attacker's) cannot answer the victim's interaction.
			evil := newBrowser(t)
			_, evilPage := evil.get(e.srv.URL + oauth.PathConsent + "?interaction=" + ix)
			_ = evilPage
			answer.Set("csrf", formToken(t, page))
			if resp, _ := evil.postForm(e.srv.URL+oauth.PathConsent, answer); resp.StatusCode == http.StatusSeeOther {
				t.Error("another browser answered the consent")
			}
			if resp, _ := b.postForm(e.srv.URL+oauth.PathConsent, answer); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("consent with the right token: %d", resp.StatusCode)
			}
			if resp, _ := b.postForm(e.srv.URL+oauth.PathConsent, answer); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("second answer to one authorization: %d, want 400", resp.StatusCode)
			}
		})

		t.Run("wrong password", func(t *testing.T) {
			_, out := e.par(t, e.client, newPKCE(), nil)
			b := newBrowser(t)
			resp, _ := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.client.id)}, "request_uri": {out["request_uri"].(string)}}.Encode())
			loc, _ := url.Parse(resp.Header.Get("Location"))
			_, page := b.get(loc.String())
			resp, _ = b.postForm(e.srv.URL+oauth.PathLogin, url.Values{"csrf": {formToken(t, page)}, "interaction": {loc.Query().Get("interaction")},
				"handle": {"alice"}, "password": {"not the password"}})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("wrong password: %d", resp.StatusCode)
			}
		})
	})
}

// race posts forms to the token endpoint at once and returns how many
// succeeded and a refresh token one of them got.
func race(t *testing.T, e *env, forms []url.Values) (int, string) {
	t.Helper()
	type res struct {
		st  int
		out map[string]any
	}
	ch := make(chan res, len(forms))
	for _, f := range forms {
		go func() {
			resp, err := http.PostForm(e.srv.URL+oauth.PathToken, f)
			if err != nil {
				ch <- res{}
				return
			}
			defer resp.Body.Close()
			out := map[string]any{}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			ch <- res{resp.StatusCode, out}
		}()
	}
	ok, rt := 0, ""
	for range forms {
		r := <-ch
		if r.st == http.StatusOK {
			ok++
			rt, _ = r.out["refresh_token"].(string)
		}
	}
	return ok, rt
}

// countRows counts a table's rows behind the store's back.
func countRows(t *testing.T, s backend.Migrator, table string) int64 {
	t.Helper()
	var n int64
	switch db := s.(type) {
	case *postgres.Store:
		if err := db.Pool().QueryRow(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
	case *sqlite.Store:
		conn, err := sql.Open("sqlite", "file:"+db.Path()+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown store %T", s)
	}
	return n
}

// TestBadInput: malformed, oversized, repeated or missing parameters get
// the RFC error code and leave nothing stored but the spent jtis.
func TestBadInput(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		jtis := int64(0)
		par := func(name string, mod func(url.Values), code string) {
			t.Helper()
			st, out := e.par(t, e.client, newPKCE(), mod)
			jtis++
			wantError(t, name, st, out, http.StatusBadRequest, code)
		}
		par("response_type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type")
		par("no response_type", func(v url.Values) { v.Del("response_type") }, "unsupported_response_type")
		par("no redirect_uri", func(v url.Values) { v.Del("redirect_uri") }, "invalid_request")
		par("repeated redirect_uri", func(v url.Values) { v.Add("redirect_uri", redirectURI) }, "invalid_request")
		par("short code_challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, "invalid_request")
		par("authorization_details not JSON", func(v url.Values) { v.Set("authorization_details", "{not json") }, "invalid_authorization_details")
		par("authorization_details [null]", func(v url.Values) { v.Set("authorization_details", "[null]") }, "invalid_authorization_details")
		par("authorization_details empty", func(v url.Values) { v.Set("authorization_details", "[]") }, "invalid_authorization_details")
		par("request object", func(v url.Values) { v.Set("request", "eyJhbGciOiJub25lIn0.e30.") }, "invalid_request")
		par("oversized authorization_details", func(v url.Values) { v.Set("authorization_details", `[{"x":"`+strings.Repeat("a", 20<<10)+`"}]`) }, "invalid_authorization_details")
		par("unknown scope", func(v url.Values) { v.Set("scope", "everything") }, "invalid_scope")

		st, out := e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{}))
		jtis++
		wantError(t, "token without grant_type", st, out, http.StatusBadRequest, "invalid_request")
		st, out = e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}))
		jtis++
		wantError(t, "password grant", st, out, http.StatusBadRequest, "invalid_request")
		st, out = e.post(t, oauth.PathToken, e.authForm(t, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {"forged.code"}, "redirect_uri": {redirectURI}, "code_verifier": {newPKCE().verifier}}))
		jtis++
		wantError(t, "forged code", st, out, http.StatusBadRequest, "invalid_grant")
		st, out = e.post(t, oauth.PathToken, url.Values{"grant_type": {"client_credentials"}})
		wantError(t, "no client authentication", st, out, http.StatusUnauthorized, "invalid_client")
		st, out = e.post(t, oauth.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {"not.a.jwt"}})
		wantError(t, "malformed assertion", st, out, http.StatusUnauthorized, "invalid_client")

		big := e.authForm(t, e.client, url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("x", 128<<10)}})
		st, _ = e.post(t, oauth.PathToken, big)
		if st != http.StatusBadRequest && st != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized token request: %d", st)
		}
		st, out = e.post(t, oauth.PathIntrospect, e.authForm(t, e.client, url.Values{}))
		jtis++
		wantError(t, "introspection without token", st, out, http.StatusBadRequest, "invalid_request")

		if n := countRows(t, s, "oauth_requests"); n != 0 {
			t.Errorf("refused requests left %d stored requests", n)
		}
		if n := countRows(t, s, "oauth_jtis"); n > jtis {
			t.Errorf("%d jtis stored, more than the %d assertions sent", n, jtis)
		}
	})
}
