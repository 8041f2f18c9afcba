package oauth

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
)

// The customer's session for the customer API (package customerapi,
// mounted at CustomerAPIPath).
//
// # Session
//
// The login page sets the signed login cookie with Path=/oauth/, so a
// browser never sends it to the API. After logging in, the browser visits
// PathCustomerSession (under /oauth/, so the login cookie comes along),
// which copies the same signed value, with the same expiry, into the
// session cookie scoped to CustomerAPIPath: HttpOnly, SameSite=Strict,
// Secure on https. Customer checks that cookie's HMAC and expiry.
//
// # CSRF
//
// SameSite=Strict already keeps the cookie off cross-site requests. On top
// of it every state-changing request (anything but GET, HEAD, OPTIONS)
// MUST carry both:
//
//   - an Origin header equal to the issuer's origin. Browsers send Origin
//     on every non-GET fetch, so its absence means a non-browser client or
//     a very old browser, and is refused;
//   - the header CSRFHeader with the session's CSRF token: an HMAC of the
//     session cookie's value (a signed double-submit token), which the
//     portal reads from PathCustomerSession or GET /v1/me. A page on
//     another origin can read neither.
//
// CheckCustomerCSRF checks both; customerapi calls it through its Config.
const (
	// PathCustomerSession turns a login into a customer API session.
	PathCustomerSession = "/oauth/session"
	// CustomerAPIPath is where the customer API is mounted; the session
	// cookie is scoped to it.
	CustomerAPIPath = "/v1/me"
	// CSRFHeader carries the CSRF token on state-changing API requests.
	CSRFHeader = "X-CSRF-Token"

	sessionCookie = "steward_session"
)

// CustomerSession serves PathCustomerSession. GET: for a browser with a
// valid login cookie it sets the API session cookie and answers
// {"customer_id", "csrf_token", "expires_at"}; otherwise 401. DELETE
// (signing out, from the issuer's own Origin) clears both cookies and
// answers 204. The cookies are signed, not stored: a copy taken before
// signing out stays valid until it expires.
func (p *Provider) CustomerSession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		switch r.Method {
		case http.MethodGet:
		case http.MethodDelete:
			if !p.sameOrigin(r) {
				http.Error(w, "sign out from Steward's own pages", http.StatusForbidden)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: CustomerAPIPath, MaxAge: -1, HttpOnly: true, Secure: p.secure(), SameSite: http.SameSiteStrictMode})
			p.setCookie(w, loginCookie, "", -time.Second)
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			http.Error(w, "use GET or DELETE", http.StatusMethodNotAllowed)
			return
		}
		ck, err := r.Cookie(loginCookie)
		if err != nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		id, exp, ok := p.verifySession(ck.Value)
		if !ok {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: ck.Value, Path: CustomerAPIPath,
			MaxAge: int(exp.Sub(p.now()).Seconds()), HttpOnly: true, Secure: p.secure(), SameSite: http.SameSiteStrictMode})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"customer_id": id, "csrf_token": p.csrfFor(ck.Value), "expires_at": exp})
	})
}

// SessionCookie returns a fresh API session cookie for customer, valid for
// DefaultLoginLifespan: for a login made elsewhere (the portal's own
// sign-in) and for tests.
func (p *Provider) SessionCookie(customer broker.CustomerID) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Value: p.signLogin(customer, p.now().Add(DefaultLoginLifespan)), Path: CustomerAPIPath,
		MaxAge: int(DefaultLoginLifespan.Seconds()), HttpOnly: true, Secure: p.secure(), SameSite: http.SameSiteStrictMode}
}

// Customer returns the customer whose valid, unexpired session cookie came
// with r.
func (p *Provider) Customer(r *http.Request) (broker.CustomerID, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	id, _, ok := p.verifySession(ck.Value)
	return id, ok
}

// CustomerCSRFToken returns the CSRF token of r's session, or "" without one.
func (p *Provider) CustomerCSRFToken(r *http.Request) string {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	if _, _, ok := p.verifySession(ck.Value); !ok {
		return ""
	}
	return p.csrfFor(ck.Value)
}

// CheckCustomerCSRF reports whether a state-changing API request comes
// from the issuer's own origin with its session's CSRF token.
func (p *Provider) CheckCustomerCSRF(r *http.Request) bool {
	if !p.sameOrigin(r) {
		return false
	}
	want := p.CustomerCSRFToken(r)
	got := r.Header.Get(CSRFHeader)
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin reports whether r carries an Origin equal to the issuer's.
func (p *Provider) sameOrigin(r *http.Request) bool {
	iss, err := url.Parse(p.cfg.Issuer)
	return err == nil && r.Header.Get("Origin") == iss.Scheme+"://"+iss.Host
}

func (p *Provider) csrfFor(session string) string {
	return b64(p.mac("customer-api-csrf", session))
}

// verifySession checks a value made by signLogin: customer id, expiry and
// an HMAC over both.
func (p *Provider) verifySession(v string) (broker.CustomerID, time.Time, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, p.mac("login", parts[0], parts[1])) {
		return "", time.Time{}, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || p.now().Unix() >= exp {
		return "", time.Time{}, false
	}
	id, err := broker.ParseCustomerID(parts[0])
	return id, time.Unix(exp, 0).UTC(), err == nil
}
