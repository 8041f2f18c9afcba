package oauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/fapi"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/store"
)

// ConsentRequest is the customer's answer to a firm's authorization request.
type ConsentRequest struct {
	Customer broker.CustomerID
	Client   broker.Client
	// Requested are the authorization details the firm pushed (RFC 9396 JSON).
	Requested json.RawMessage
	// Approved is false when the customer refused.
	Approved bool
	// Granted are the details the customer approved: Requested with the
	// categories they unticked removed. Nil when refused.
	Granted json.RawMessage
}

// ConsentOutcome is what became of a ConsentRequest.
type ConsentOutcome struct {
	ConsentID broker.ConsentID
	// Granted is true when a consent is live and tokens may be issued.
	Granted bool
	// Details are the authorization details the consent grants (never
	// wider than ConsentRequest.Granted); they go into the tokens.
	Details json.RawMessage
}

// ConsentFunc records the customer's answer as a consent and decides it
// under the customer's terms and the regulatory policy. cmd wires it to
// broker/consent.
type ConsentFunc func(ctx context.Context, req ConsentRequest) (ConsentOutcome, error)

const (
	loginCookie       = "steward_login"
	csrfCookie        = "steward_csrf"
	interactionCookie = "steward_interaction"
)

// Authorize is the authorization endpoint. It accepts only a request_uri
// from the PAR endpoint, keeps the request server-side as an interaction
// bound to this browser, and sends the customer to log in or to consent.
func (p *Provider) Authorize() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		if r.Method != http.MethodGet {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		// fosite merges the query into the pushed request; accept nothing
		// the browser could have added.
		if err := fapi.PushedOnly(r.URL.Query()); err != nil {
			p.logReject(ctx, "authorization request", err)
			p.writeAuthorizeError(ctx, w, fosite.NewAuthorizeRequest(), err)
			return
		}
		ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
		if err != nil {
			p.logReject(ctx, "authorization request", err)
			p.writeAuthorizeError(ctx, w, ar, err)
			return
		}
		id := randomToken()
		a, ok := ar.(*fosite.AuthorizeRequest)
		if !ok {
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithDebug("authorize request type"))
			return
		}
		a.Session = NewSession("")
		a.Session.SetExpiresAt(fosite.PushedAuthorizeRequestContext, p.now().Add(DefaultInteractionLifespan))
		if err := p.store.create(ctx, kindInteraction, id, a); err != nil {
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		p.setCookie(w, interactionCookie, id, DefaultInteractionLifespan)
		next := PathConsent
		if _, ok := p.loggedIn(r); !ok {
			next = PathLogin
		}
		http.Redirect(w, r, p.cfg.Issuer+next+"?interaction="+url.QueryEscape(id), http.StatusSeeOther)
	})
}

// writeAuthorizeError lets fosite answer (redirecting only to a validated
// redirect URI) and adds iss to a redirect (RFC 9207).
func (p *Provider) writeAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	p.oauth.WriteAuthorizeError(ctx, &issWriter{ResponseWriter: w, iss: p.cfg.Issuer}, ar, err)
}

// issWriter adds iss to the Location of an authorization response.
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w *issWriter) WriteHeader(code int) {
	if loc := w.Header().Get("Location"); loc != "" && code >= 300 && code < 400 {
		if u, err := url.Parse(loc); err == nil {
			q := u.Query()
			q.Set("iss", w.iss)
			u.RawQuery = q.Encode()
			w.Header().Set("Location", u.String())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// interaction loads the pending authorization request named by the form
// or query, which MUST also be the one this browser started.
func (p *Provider) interaction(r *http.Request) (string, *fosite.AuthorizeRequest, error) {
	id := r.FormValue("interaction")
	ck, err := r.Cookie(interactionCookie)
	if id == "" || err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(id)) != 1 {
		return "", nil, fmt.Errorf("%w: no authorization request in progress in this browser", broker.ErrForbidden)
	}
	ar, err := p.store.get(r.Context(), kindInteraction, id, fosite.ErrNotFound)
	if err != nil {
		return "", nil, fmt.Errorf("%w: the authorization request expired or was answered", broker.ErrNotFound)
	}
	return id, ar, nil
}

type page struct {
	Title       string
	Error       string
	CSRF        string
	Interaction string
	Handle      string
	Action      string
	FirmName    string
	ClientName  string
	Details     []detailView
}

type detailView struct {
	Index      int
	Purpose    string
	Duration   string
	Categories []string
}

func (p *Provider) render(w http.ResponseWriter, name string, status int, pg page) {
	p.writePage(w, p.pages, name, status, pg)
}

// writePage renders a browser page from t with the headers every page
// gets: no caching, no sniffing, no framing, no referrer, a strict CSP and,
// on https, HSTS.
func (p *Provider) writePage(w http.ResponseWriter, t *template.Template, name string, status int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		p.cfg.Logger.LogAttrs(context.Background(), slog.LevelError, "render page", slog.String("page", name), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if p.secure() {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Login shows and checks the customer login form.
func (p *Provider) Login() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		id, _, err := p.interaction(r)
		if err != nil {
			http.Error(w, "There is no sign-in in progress. Return to the site you came from and start again.", http.StatusBadRequest)
			return
		}
		switch p.form(w, r) {
		case formShow:
			p.render(w, "login.html", http.StatusOK, page{Title: "Sign in", CSRF: p.csrf(w, r), Interaction: id, Action: PathLogin})
			return
		case formRefused:
			return
		}
		again := func(status int, msg, handle string) {
			p.render(w, "login.html", status, page{Title: "Sign in", Error: msg, CSRF: p.csrf(w, r), Interaction: id, Handle: handle, Action: PathLogin})
		}
		if !p.signInPost(ctx, w, r, again) {
			return
		}
		http.Redirect(w, r, p.cfg.Issuer+PathConsent+"?interaction="+url.QueryEscape(id), http.StatusSeeOther)
	}), maxFormBody)
}

// signInPost answers a sign-in form's POST: on success it sets the login
// cookie and returns true (the caller redirects); otherwise it has
// answered, through again (the form shown again with an error, the status
// and the handle typed) or with a 503, and returns false.
func (p *Provider) signInPost(ctx context.Context, w http.ResponseWriter, r *http.Request, again func(status int, msg, handle string)) bool {
	handle, pw := r.PostFormValue("handle"), r.PostFormValue("password")
	cus, outcome, wait, err := p.signIn(ctx, r, handle, pw)
	switch {
	case err != nil:
		http.Error(w, "Sign-in is unavailable. Try again later.", http.StatusServiceUnavailable)
		return false
	case outcome == signInThrottled:
		w.Header().Set("Retry-After", retryAfter(wait))
		again(http.StatusTooManyRequests, "Too many failed sign-ins. Wait "+waitText(wait)+" and try again.", handle)
		return false
	case outcome == signInWrong:
		again(http.StatusUnauthorized, "That handle and password do not match.", handle)
		return false
	}
	p.setCookie(w, loginCookie, p.signLogin(cus.ID, p.now().Add(DefaultLoginLifespan)), DefaultLoginLifespan)
	return true
}

// signInOutcome is what signIn concluded.
type signInOutcome int

const (
	signInOK signInOutcome = iota
	signInWrong
	signInThrottled
)

// signIn checks a customer's handle and password under the sign-in
// throttle, for every page that signs customers in. Throttling comes
// before the handle is looked up: the answer is the same for known and
// unknown handles, and costs no password hashing. A wrong handle or
// password costs one argon2id verification either way and counts as a
// failure; a success clears the handle's failures. err is set only when
// the throttle's storage failed (it is logged here).
func (p *Provider) signIn(ctx context.Context, r *http.Request, handle, pw string) (broker.Customer, signInOutcome, time.Duration, error) {
	th := p.throttleFor(r, handle)
	// Attempts on one handle run one at a time, so parallel guesses cannot
	// all pass the check before any of their failures is counted. (Across
	// replicas each replica serializes its own: at most one guess per
	// replica can slip past the limit.)
	defer p.signingIn.lock(th.handle)()
	blocked, wait, err := p.blocked(ctx, th)
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "login throttle", slog.Any("error", err))
		return broker.Customer{}, 0, 0, err
	}
	if blocked {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "login throttled", slog.Duration("retry_after", wait))
		return broker.Customer{}, signInThrottled, wait, nil
	}
	var cus broker.Customer
	err = p.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
		cus, err = tx.GetCustomerByHandle(ctx, handle)
		return err
	})
	ok := err == nil && cus.PasswordHash != "" && !cus.Forgotten()
	if ok {
		ok = password.Verify(pw, cus.PasswordHash) == nil
	} else {
		// Spend the same effort on unknown handles.
		_ = password.Verify(pw, dummyHash())
	}
	if !ok {
		if err := p.failed(ctx, th); err != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "login throttle", slog.Any("error", err))
		}
		return broker.Customer{}, signInWrong, 0, nil
	}
	if err := p.storage.ClearLoginFailures(ctx, th.handle); err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "login throttle", slog.Any("error", err))
	}
	return cus, signInOK, 0, nil
}

// dummyHash is verified against when the handle is unknown.
var dummyHash = sync.OnceValue(func() string {
	h, _ := password.Hash("steward-dummy-password", password.Default)
	return h
})

// Consent shows the firm's request and records the customer's answer.
func (p *Provider) Consent() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		id, ar, err := p.interaction(r)
		if err != nil {
			http.Error(w, "There is no authorization in progress. Return to the site you came from and start again.", http.StatusBadRequest)
			return
		}
		customer, ok := p.loggedIn(r)
		if !ok {
			http.Redirect(w, r, p.cfg.Issuer+PathLogin+"?interaction="+url.QueryEscape(id), http.StatusSeeOther)
			return
		}
		c := ar.GetClient().(*client)
		requested := json.RawMessage(ar.GetRequestForm().Get("authorization_details"))
		details, err := describe(requested)
		if err != nil {
			p.finish(ctx, w, id, ar, fosite.ErrInvalidRequest.WithHint("authorization_details cannot be shown to the customer."))
			return
		}
		switch p.form(w, r) {
		case formShow:
			p.render(w, "consent.html", http.StatusOK, page{Title: "Share your data?", CSRF: p.csrf(w, r), Interaction: id,
				Action: PathConsent, FirmName: c.firmName, ClientName: c.c.Name, Details: details})
			return
		case formRefused:
			return
		}
		// Claim the interaction first: one answer per authorization request,
		// even when the form is posted twice at once.
		if err := p.storage.DeactivateRequest(ctx, kindInteraction, id); err != nil {
			http.Error(w, "This authorization was already answered.", http.StatusConflict)
			return
		}
		req := ConsentRequest{Customer: customer, Client: c.c, Requested: requested}
		if r.PostFormValue("decision") == "approve" {
			req.Approved = true
			if req.Granted, err = narrow(requested, r.PostForm); err != nil {
				p.finish(ctx, w, id, ar, fosite.ErrAccessDenied.WithHint("The customer approved no data category."))
				return
			}
		}
		out, err := p.consent(ctx, req)
		if err != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "consent", slog.Any("error", err))
			p.finish(ctx, w, id, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		if !out.Granted {
			p.finish(ctx, w, id, ar, fosite.ErrAccessDenied.WithHint("The customer or their terms refused the request."))
			return
		}
		var psn broker.Pseudonym
		err = p.cfg.Store.Update(ctx, func(tx store.Tx) (err error) {
			psn, err = tx.Pseudonym(ctx, customer, c.c.FirmID)
			return err
		})
		if err != nil {
			p.finish(ctx, w, id, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		sess := NewSession(string(psn))
		sess.ConsentID, sess.FirmID, sess.Details = out.ConsentID, c.c.FirmID, out.Details
		resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, sess)
		if err != nil {
			p.logReject(ctx, "authorization", err)
			p.writeAuthorizeError(ctx, w, ar, err)
			return
		}
		resp.AddParameter("iss", p.cfg.Issuer)
		p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
	}), maxFormBody)
}

// finish ends an interaction with an error sent to the client's
// (validated) redirect URI.
func (p *Provider) finish(ctx context.Context, w http.ResponseWriter, id string, ar fosite.AuthorizeRequester, err error) {
	_ = p.storage.DeactivateRequest(ctx, kindInteraction, id)
	p.logReject(ctx, "authorization", err)
	p.writeAuthorizeError(ctx, w, ar, err)
}

// describe reads what the consent page shows from authorization details.
func describe(raw json.RawMessage) ([]detailView, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var ds []struct {
		Categories []string `json:"categories"`
		Purpose    string   `json:"purpose"`
		Duration   string   `json:"duration"`
	}
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, err
	}
	out := make([]detailView, len(ds))
	for i, d := range ds {
		out[i] = detailView{Index: i, Purpose: d.Purpose, Duration: d.Duration, Categories: d.Categories}
	}
	return out, nil
}

// narrow removes from each detail the categories the customer unticked
// (form fields "category.<index>"); it refuses an answer that leaves no
// category at all, and never adds one.
func narrow(raw json.RawMessage, form url.Values) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var ds []map[string]any
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, err
	}
	total := 0
	for i, d := range ds {
		if d == nil {
			return nil, errors.New("authorization detail is not an object")
		}
		kept := []any{}
		ticked := form["category."+strconv.Itoa(i)]
		cats, _ := d["categories"].([]any)
		for _, c := range cats {
			if s, ok := c.(string); ok && slices.Contains(ticked, s) {
				kept = append(kept, s)
			}
		}
		if fields, ok := d["fields"].(map[string]any); ok {
			for k := range fields {
				if !slices.Contains(kept, any(k)) {
					delete(fields, k)
				}
			}
		}
		d["categories"] = kept
		total += len(kept)
	}
	if total == 0 {
		return nil, errors.New("no category approved")
	}
	// Drop details left without categories.
	ds = slices.DeleteFunc(ds, func(d map[string]any) bool { return len(d["categories"].([]any)) == 0 })
	return json.Marshal(ds)
}

// Cookies.

func (p *Provider) secure() bool { return strings.HasPrefix(p.cfg.Issuer, "https://") }

func (p *Provider) setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/oauth/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: p.secure(), SameSite: http.SameSiteLaxMode})
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return b64(b[:])
}

func (p *Provider) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, p.cookieKey)
	for _, s := range parts {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// signLogin makes the login cookie: customer id, expiry and an HMAC.
func (p *Provider) signLogin(c broker.CustomerID, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return string(c) + "." + e + "." + b64(p.mac("login", string(c), e))
}

// loggedIn returns the customer whose valid login cookie came with r.
func (p *Provider) loggedIn(r *http.Request) (broker.CustomerID, bool) {
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		return "", false
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 3 {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, p.mac("login", parts[0], parts[1])) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || p.now().Unix() >= exp {
		return "", false
	}
	id, err := broker.ParseCustomerID(parts[0])
	return id, err == nil
}

// csrf returns this browser's CSRF token (double-submit: an HttpOnly
// SameSite cookie that every form repeats), setting the cookie if needed.
func (p *Provider) csrf(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	t := randomToken()
	p.setCookie(w, csrfCookie, t, 24*time.Hour)
	return t
}

// formStep is what form made of a form page's request.
type formStep int

const (
	formShow    formStep = iota // a GET: show the form
	formPost                    // a POST whose CSRF token checks: handle it
	formRefused                 // anything else; the answer is written
)

// form sorts a form page's request: every page with a form shows it on
// GET, handles a POST only with a valid CSRF token (403 for an expired
// form) and answers other methods 405.
func (p *Provider) form(w http.ResponseWriter, r *http.Request) formStep {
	switch r.Method {
	case http.MethodGet:
		return formShow
	case http.MethodPost:
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return formRefused
	}
	if !p.checkCSRF(r) {
		http.Error(w, "The form expired. Go back, reload and try again.", http.StatusForbidden)
		return formRefused
	}
	return formPost
}

// checkCSRF accepts a form post only with the cookie's token and, when the
// browser sends one, an Origin equal to the issuer's.
func (p *Provider) checkCSRF(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		iss, _ := url.Parse(p.cfg.Issuer)
		if o != iss.Scheme+"://"+iss.Host {
			return false
		}
	}
	ck, err := r.Cookie(csrfCookie)
	tok := r.PostFormValue("csrf")
	return err == nil && tok != "" && subtle.ConstantTimeCompare([]byte(ck.Value), []byte(tok)) == 1
}
