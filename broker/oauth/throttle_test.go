package oauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/web"
)

// signIn is one browser at the login page of a fresh interaction, coming
// from a given address (the test server's ClientIP reads X-Test-IP).
type signIn struct {
	e           *env
	b           *browser
	interaction string
}

func (e *env) startSignIn(t *testing.T) *signIn {
	t.Helper()
	_, out := e.par(t, e.client, newPKCE(), nil)
	b := newBrowser(t)
	resp, body := b.get(e.srv.URL + oauth.PathAuthorize + "?" + url.Values{"client_id": {string(e.client.id)}, "request_uri": {out["request_uri"].(string)}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return &signIn{e: e, b: b, interaction: loc.Query().Get("interaction")}
}

func (s *signIn) try(t *testing.T, ip, handle, pw string) (*http.Response, string) {
	t.Helper()
	return s.tryAt(t, s.e.srv.URL, ip, handle, pw)
}

// tryAt signs in at the replica serving base.
func (s *signIn) tryAt(t *testing.T, base, ip, handle, pw string) (*http.Response, string) {
	t.Helper()
	_, page := s.b.get(base + oauth.PathLogin + "?interaction=" + url.QueryEscape(s.interaction))
	form := url.Values{"csrf": {formToken(t, page)}, "interaction": {s.interaction}, "handle": {handle}, "password": {pw}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+oauth.PathLogin, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Test-IP", ip)
	resp, err := s.b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, sb.String()
}

var volatile = regexp.MustCompile(`value="[^"]*"`)

func TestLoginThrottle(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnvConfig(t, s, func(c *oauth.Config) {
			c.LoginMaxFailuresPerIP = 8
			c.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
		})
		si := e.startSignIn(t)
		throttled := func(what, ip, handle, pw string) string {
			t.Helper()
			resp, body := si.try(t, ip, handle, pw)
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if resp.StatusCode != http.StatusTooManyRequests || err != nil || ra < 1 || ra > int(oauth.DefaultLoginFailureWindow.Seconds()) ||
				!strings.Contains(body, "Too many failed sign-ins") {
				t.Fatalf("%s: %d Retry-After %q, want 429 with Retry-After in (0, 900]:\n%s", what, resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			return volatile.ReplaceAllString(body, `value=""`)
		}

		// Per handle: five failures from five addresses block the handle
		// everywhere, even with the right password.
		for i := range oauth.DefaultLoginMaxFailures {
			if resp, body := si.try(t, "192.0.2."+strconv.Itoa(i+1), "alice", "wrong"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", i+1, resp.StatusCode, body)
			}
		}
		alicePage := throttled("alice, right password, sixth attempt", "198.51.100.7", "alice", alicePassword)

		// Another replica on the same database and secret refuses too.
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		two, err := oauth.New(oauth.Config{Issuer: e.srv.URL, SigningKey: key, Secret: []byte(strings.Repeat("s", 32)), Store: s,
			Templates: web.Templates, ClientIP: func(r *http.Request) string { return r.Header.Get("X-Test-IP") }}, s.OAuth(), consentFunc(e.svc))
		if err != nil {
			t.Fatal(err)
		}
		twoSrv := httptest.NewServer(two.Handler())
		defer twoSrv.Close()
		if resp, body := si.tryAt(t, twoSrv.URL, "198.51.100.9", "alice", alicePassword); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("alice at another replica: %d, want 429:\n%s", resp.StatusCode, body)
		}

		// An unknown handle is throttled the same way, with the same page:
		// the throttle reveals nothing about which handles exist.
		for range oauth.DefaultLoginMaxFailures {
			si.try(t, "203.0.113.9", "mallory", "wrong")
		}
		malloryPage := throttled("unknown handle", "203.0.113.10", "mallory", "wrong")
		if strings.ReplaceAll(malloryPage, "mallory", "alice") != alicePage {
			t.Errorf("throttled pages differ for a known and an unknown handle:\n%s\n---\n%s", alicePage, malloryPage)
		}

		// Per address: eight failures (any handles) from one address block
		// it, while another address still signs in.
		for i := range 8 {
			si.try(t, "2001:db8::1", "user"+strconv.Itoa(i), "wrong")
		}
		throttled("address at its limit", "2001:db8::2", "bob", "anything") // same /64
		if resp, body := si.try(t, "2001:db8:1::1", "bob", "anything"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("another /64: %d %s, want 401", resp.StatusCode, body)
		}

		// Cleanup forgets nothing before the window ends.
		if _, err := e.p.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		throttled("after cleanup", "198.51.100.8", "alice", alicePassword)
	})
}

// TestLoginSuccessClearsHandle: a successful sign-in forgets the handle's
// earlier failures.
func TestLoginSuccessClearsHandle(t *testing.T) {
	e := newEnvConfig(t, backendtest.Open(t, ""), func(c *oauth.Config) {
		c.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	})
	si := e.startSignIn(t)
	for range oauth.DefaultLoginMaxFailures - 1 {
		si.try(t, "192.0.2.1", "alice", "wrong")
	}
	if resp, body := si.try(t, "192.0.2.1", "alice", alicePassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	si = e.startSignIn(t)
	if resp, body := si.try(t, "192.0.2.1", "alice", "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("failure after a success: %d %s, want 401 (the count restarted)", resp.StatusCode, body)
	}
}

// TestLoginThrottleParallel: guesses sent at once are counted one by one,
// so no more than the limit are checked against the password.
func TestLoginThrottleParallel(t *testing.T) {
	e := newEnvConfig(t, backendtest.Open(t, ""), func(c *oauth.Config) {
		c.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	})
	si := e.startSignIn(t)
	// One page view first, so the parallel posts share one CSRF cookie.
	si.b.get(e.srv.URL + oauth.PathLogin + "?interaction=" + url.QueryEscape(si.interaction))
	const n = 12
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, _ := si.try(t, "192.0.2."+strconv.Itoa(i+1), "alice", "wrong")
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	checked := 0
	for c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("parallel guess: %d", c)
		}
	}
	if checked != oauth.DefaultLoginMaxFailures {
		t.Errorf("%d of %d parallel guesses were checked, want exactly %d", checked, n, oauth.DefaultLoginMaxFailures)
	}
}
