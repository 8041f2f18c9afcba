package oauth

// Decoupled consent requests: OpenID Client-Initiated Backchannel
// Authentication (CIBA Core 1.0), poll and ping modes, adapted to Steward.
//
// # Flow
//
//	customer ──signs in at PathAccountLogin, creates a share code at PathShareCodes──▶ code (10 min, single use)
//	customer ──tells the firm the code (phone, shop counter, letter)
//	firm ──POST PathBackchannel (private_key_jwt, login_hint=code, authorization_details[, binding_message][, client_notification_token])
//	     ◀── {auth_req_id, expires_in, interval}
//	policy: allow → granted at once; deny → denied at once; ask → pending
//	customer ──PathAccountRequests: sees the request, may untick categories or shorten the duration, approves or refuses
//	ping mode: a signed webhook "backchannel.decided" {auth_req_id, consent_id, outcome} to the firm's registered webhook URL
//	firm ──POST PathToken grant_type=GrantTypeCIBA auth_req_id (+ DPoP proof)
//	     ◀── authorization_pending | slow_down | access_denied | expired_token | tokens bound to the consent and the DPoP key
//
// The mode is chosen per request: a client_notification_token asks for
// ping mode (the firm MUST have registered a webhook URL); without one the
// firm polls. The firm's request, the consent it asks for and its ledger
// entries, and the customer's answer with the webhook that announces it,
// each commit in one transaction. A request's auth_req_id is stored only
// as a hash and is spent by the token response.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/rar"
	"github.com/stewardhq/steward/broker/store"
)

// Paths of decoupled consent, relative to the issuer. The account pages
// live under /oauth/ so that they share the login and CSRF cookies.
const (
	PathBackchannel     = "/oauth/bc-authorize"
	PathAccountLogin    = "/oauth/account/login"
	PathShareCodes      = "/oauth/account/share-codes"
	PathAccountRequests = "/oauth/account/requests"
)

// GrantTypeCIBA is the token request's grant_type for a backchannel
// authentication request (CIBA Core §10.1).
const GrantTypeCIBA = "urn:openid:params:grant-type:ciba"

// EventBackchannelDecided is the webhook event type of a ping-mode
// notification; its data is BackchannelDecided.
const EventBackchannelDecided = "backchannel.decided"

// Defaults for Decoupled's zero values.
const (
	DefaultShareCodeLifespan   = 10 * time.Minute
	DefaultBackchannelLifespan = 10 * time.Minute
	DefaultPollInterval        = 5 * time.Second
	// MaxBindingMessage is the longest binding_message accepted, in characters.
	MaxBindingMessage = 64
	// slowDownStep is how much a slow_down answer lengthens the interval
	// (CIBA Core §11, RFC 8628 §3.5).
	slowDownStep = 5 * time.Second
)

// DecoupledOutcome is what became of a decoupled consent request.
type DecoupledOutcome struct {
	ConsentID broker.ConsentID
	// State is requested (the customer must answer), granted or denied.
	State broker.ConsentState
	// Details are the granted authorization details when State is granted.
	Details json.RawMessage
	// Reasons say, in words a person can read, what the customer's terms
	// and the regulatory rules made of the request.
	Reasons []string
}

// Decoupled connects backchannel requests to broker/consent. The funcs
// MUST do their work inside tx, so that the consent and its ledger entries
// commit with the request's state and the firm's webhook, or not at all.
// cmd wires them to consent.Service.RequestIn, ApproveIn, RefuseIn and
// LapseIn. A nil Request or Answer turns decoupled consent off.
type Decoupled struct {
	// Request records a firm's request for the customer's data and decides
	// it under the customer's terms and the regulatory rules.
	Request func(ctx context.Context, tx store.Tx, customer broker.CustomerID, c broker.Client, requested json.RawMessage) (DecoupledOutcome, error)
	// Answer records the customer's answer to a requested consent: granted
	// (narrowed details, never wider than requested) or, when granted is
	// nil, a refusal.
	Answer func(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID, granted json.RawMessage) (DecoupledOutcome, error)
	// Lapse denies the requested consent of a request that expired before
	// the customer answered. Nil leaves such consents requested.
	Lapse func(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID) error
	// ShareCodeLifespan, Lifespan (of a request) and Interval (between
	// polls); zero means the Default* constants.
	ShareCodeLifespan, Lifespan, Interval time.Duration
}

func (d *Decoupled) fill() {
	if d.ShareCodeLifespan <= 0 {
		d.ShareCodeLifespan = DefaultShareCodeLifespan
	}
	if d.Lifespan <= 0 {
		d.Lifespan = DefaultBackchannelLifespan
	}
	if d.Interval < time.Second {
		d.Interval = DefaultPollInterval
	}
	d.Interval = d.Interval.Truncate(time.Second)
}

func (p *Provider) decoupledOn() bool {
	return p.cfg.Decoupled.Request != nil && p.cfg.Decoupled.Answer != nil
}

// initDecoupled prepares decoupled consent when it is configured.
func (p *Provider) initDecoupled() error {
	if !p.decoupledOn() {
		return nil
	}
	p.cfg.Decoupled.fill()
	t, err := template.ParseFS(p.cfg.Templates, "account.html")
	if err != nil {
		return fmt.Errorf("oauth: templates: %w", err)
	}
	p.account = t
	return nil
}

// cleanupDecoupled lets the consents of unanswered, expired requests
// lapse, then deletes expired share codes and backchannel requests (their
// consents and ledger entries stay).
func (p *Provider) cleanupDecoupled(ctx context.Context) (n int64, err error) {
	if !p.decoupledOn() {
		return 0, nil
	}
	now := p.now()
	if p.cfg.Decoupled.Lapse != nil {
		var lapsed []store.BackchannelRequest
		if err := p.cfg.Store.View(ctx, func(tx store.Tx) (err error) {
			lapsed, err = tx.ListLapsedBackchannelRequests(ctx, now, store.MaxLimit)
			return err
		}); err != nil {
			return 0, err
		}
		for _, l := range lapsed {
			err := p.cfg.Store.Update(ctx, func(tx store.Tx) error {
				r, err := tx.GetBackchannelRequest(ctx, l.ID)
				if err != nil || r.State != store.BackchannelPending {
					return err // answered meanwhile, or gone
				}
				if err := p.cfg.Decoupled.Lapse(ctx, tx, r.CustomerID, r.ConsentID); err != nil && !errors.Is(err, broker.ErrTransition) {
					return err
				}
				r.State, r.DecidedAt = store.BackchannelDenied, now
				if err := tx.UpdateBackchannelRequest(ctx, r, store.BackchannelPending); err != nil {
					return err
				}
				return p.announceDecision(ctx, tx, r)
			})
			if err != nil && !errors.Is(err, broker.ErrNotFound) && !errors.Is(err, broker.ErrConflict) {
				return 0, fmt.Errorf("lapse backchannel request %s: %w", l.ID, err)
			}
		}
	}
	err = p.cfg.Store.Update(ctx, func(tx store.Tx) (err error) {
		n, err = tx.DeleteExpiredBackchannel(ctx, now)
		return err
	})
	return n, err
}

// decoupledRoutes adds the backchannel endpoint and the account pages.
func (p *Provider) decoupledRoutes(mux *http.ServeMux) {
	mux.Handle(PathBackchannel, p.BackchannelAuthorize())
	mux.Handle(PathAccountLogin, p.AccountLogin())
	mux.Handle(PathShareCodes, p.ShareCodes())
	mux.Handle(PathAccountRequests, p.AccountRequests())
}

// decoupledMetadata advertises CIBA (CIBA Core §4).
func (p *Provider) decoupledMetadata(m map[string]any) {
	if !p.decoupledOn() {
		return
	}
	m["backchannel_authentication_endpoint"] = p.cfg.Issuer + PathBackchannel
	m["backchannel_token_delivery_modes_supported"] = []string{"poll", "ping"}
	m["backchannel_user_code_parameter_supported"] = false
	if gt, ok := m["grant_types_supported"].([]string); ok {
		m["grant_types_supported"] = append(slices.Clone(gt), GrantTypeCIBA)
	}
}

// CIBA error codes (CIBA Core §13 and §11).
var (
	errUnknownUserID = &fosite.RFC6749Error{ErrorField: "unknown_user_id", CodeField: http.StatusBadRequest,
		DescriptionField: "The login_hint is not a valid share code: it is unknown or was already used."}
	errExpiredLoginHint = &fosite.RFC6749Error{ErrorField: "expired_login_hint_token", CodeField: http.StatusBadRequest,
		DescriptionField: "The share code given as login_hint has expired."}
	errInvalidBindingMessage = &fosite.RFC6749Error{ErrorField: "invalid_binding_message", CodeField: http.StatusBadRequest,
		DescriptionField: fmt.Sprintf("binding_message must be at most %d printable characters.", MaxBindingMessage)}
	errAuthorizationPending = &fosite.RFC6749Error{ErrorField: "authorization_pending", CodeField: http.StatusBadRequest,
		DescriptionField: "The customer has not answered yet."}
	errSlowDown = &fosite.RFC6749Error{ErrorField: "slow_down", CodeField: http.StatusBadRequest,
		DescriptionField: "Polling faster than the interval; the interval grew by 5 seconds."}
	errExpiredToken = &fosite.RFC6749Error{ErrorField: "expired_token", CodeField: http.StatusBadRequest,
		DescriptionField: "The auth_req_id has expired."}
	errCIBAAccessDenied = &fosite.RFC6749Error{ErrorField: "access_denied", CodeField: http.StatusBadRequest,
		DescriptionField: "The customer or their terms refused the request."}
)

// Share codes: 10 characters from an alphabet without look-alikes, shown
// as two groups of five. About 49 bits; a firm must also authenticate,
// and a code lives ten minutes and is spent by its first use.
const shareCodeAlphabet = "ABCDEFGHJKMNPQRSTVWXYZ23456789"

func newShareCode() string {
	out := make([]byte, 0, 11)
	var b [16]byte
	for len(out) < 11 {
		_, _ = rand.Read(b[:])
		for _, x := range b {
			// Rejection sampling keeps every character equally likely.
			if int(x) >= 256-256%len(shareCodeAlphabet) || len(out) == 11 {
				continue
			}
			if len(out) == 5 {
				out = append(out, '-')
			}
			out = append(out, shareCodeAlphabet[int(x)%len(shareCodeAlphabet)])
		}
	}
	return string(out)
}

// normalShareCode upper-cases a typed code and drops separators.
func normalShareCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// shareCodeHash is the keyed hash a share code is stored under.
func (p *Provider) shareCodeHash(code string) string {
	return b64(p.mac("share code", normalShareCode(code)))
}

// authReqID derives a request's auth_req_id from its id, so that the
// answer's webhook can name it although only its hash is stored.
func (p *Provider) authReqID(id string) string { return b64(p.mac("auth_req_id", id)) }

func authReqHash(authReqID string) string {
	h := sha256.Sum256([]byte(authReqID))
	return b64(h[:])
}

// BackchannelDecided is the data of the backchannel.decided webhook (ping mode).
type BackchannelDecided struct {
	AuthReqID string           `json:"auth_req_id"`
	ConsentID broker.ConsentID `json:"consent_id"`
	// Outcome is "granted" or "denied".
	Outcome string `json:"outcome"`
	// ClientNotificationToken is the token the firm sent with its request.
	ClientNotificationToken string    `json:"client_notification_token"`
	DecidedAt               time.Time `json:"decided_at"`
}

// announceDecision enqueues the ping-mode webhook in tx, if r asked for one.
func (p *Provider) announceDecision(ctx context.Context, tx store.Tx, r store.BackchannelRequest) error {
	if r.NotificationToken == "" {
		return nil
	}
	f, err := tx.GetFirm(ctx, r.FirmID)
	if err != nil {
		return err
	}
	if f.WebhookURL == "" {
		return nil
	}
	data, err := json.Marshal(BackchannelDecided{AuthReqID: p.authReqID(r.ID), ConsentID: r.ConsentID, Outcome: string(r.State),
		ClientNotificationToken: r.NotificationToken, DecidedAt: r.DecidedAt})
	if err != nil {
		return err
	}
	return tx.EnqueueWebhook(ctx, broker.WebhookDelivery{ID: broker.NewWebhookID(), FirmID: f.ID, URL: f.WebhookURL,
		EventType: EventBackchannelDecided, Payload: data, State: broker.WebhookPending, NextAttemptAt: r.DecidedAt, CreatedAt: r.DecidedAt})
}

// backchannelParams are a backchannel authentication request's checked parameters.
type backchannelParams struct {
	hint, details, binding, notify string
	expiry                         time.Duration
}

func (p *Provider) parseBackchannel(ctx context.Context, form url.Values) (backchannelParams, error) {
	for _, k := range []string{"login_hint", rar.FormKey, "binding_message", "client_notification_token", "requested_expiry", "scope"} {
		if len(form[k]) > 1 {
			return backchannelParams{}, fosite.ErrInvalidRequest.WithHintf("Parameter '%s' is repeated.", k)
		}
	}
	switch {
	case form.Get("request") != "":
		return backchannelParams{}, fosite.ErrInvalidRequest.WithHint("Signed authentication requests are not supported; send the parameters in the form.")
	case form.Get("login_hint_token") != "" || form.Get("id_token_hint") != "":
		return backchannelParams{}, fosite.ErrInvalidRequest.WithHint("Identify the customer with login_hint, the share code they gave you.")
	case form.Get("login_hint") == "":
		return backchannelParams{}, fosite.ErrInvalidRequest.WithHint("login_hint (the customer's share code) is required.")
	case form.Get("scope") != "":
		return backchannelParams{}, fosite.ErrInvalidScope.WithHint("Ask for data with authorization_details, not scope.")
	}
	bp := backchannelParams{hint: form.Get("login_hint"), binding: form.Get("binding_message"), notify: form.Get("client_notification_token"),
		expiry: p.cfg.Decoupled.Lifespan}
	// authorization_details are checked exactly as at the PAR endpoint
	// (New composes rar.PARHandler with rar.Options{}), and required.
	ar := fosite.NewAuthorizeRequest()
	ar.Form = url.Values{}
	if v, ok := form[rar.FormKey]; ok {
		ar.Form[rar.FormKey] = slices.Clone(v)
	}
	if err := (&rar.PARHandler{Options: rar.Options{}, Required: true}).HandlePushedAuthorizeEndpointRequest(ctx, ar, nil); err != nil {
		return backchannelParams{}, err
	}
	bp.details = ar.Form.Get(rar.FormKey)
	if utf8.RuneCountInString(bp.binding) > MaxBindingMessage || !utf8.ValidString(bp.binding) ||
		strings.ContainsFunc(bp.binding, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return backchannelParams{}, errInvalidBindingMessage
	}
	if bp.notify != "" {
		if len(bp.notify) > 1024 || strings.ContainsFunc(bp.notify, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return backchannelParams{}, fosite.ErrInvalidRequest.WithHint("client_notification_token must be at most 1024 visible ASCII characters.")
		}
	}
	if s := form.Get("requested_expiry"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > p.cfg.Decoupled.Lifespan {
			return backchannelParams{}, fosite.ErrInvalidRequest.WithHintf("requested_expiry must be a whole number of seconds from 1 to %d.", int(p.cfg.Decoupled.Lifespan.Seconds()))
		}
		bp.expiry = time.Duration(n) * time.Second
	}
	return bp, nil
}

// BackchannelAuthorize is the backchannel authentication endpoint (CIBA
// Core §7). The firm's client authenticates with private_key_jwt and names
// the customer by a share code (login_hint).
func (p *Provider) BackchannelAuthorize() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		fail := func(err error) {
			p.logReject(ctx, "backchannel authentication request", err)
			p.oauth.WriteAccessError(ctx, w, fosite.NewAccessRequest(NewSession("")), err)
		}
		if !p.decoupledOn() {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodPost {
			fail(fosite.ErrInvalidRequest.WithHint("Use POST."))
			return
		}
		if err := r.ParseForm(); err != nil {
			fail(fosite.ErrInvalidRequest.WithHint("The body is not a form.").WithWrap(err))
			return
		}
		fc, err := p.authenticateClient(ctx, r, r.PostForm)
		if err != nil {
			fail(err)
			return
		}
		c := fc.(*client)
		if c.regulator != "" {
			fail(fosite.ErrUnauthorizedClient.WithHint("Only firms' clients may ask for consent."))
			return
		}
		bp, err := p.parseBackchannel(ctx, r.PostForm)
		if err != nil {
			fail(err)
			return
		}
		now := p.now()
		id := "bcr_" + randomToken()[:22]
		authReqID := p.authReqID(id)
		err = p.cfg.Store.Update(ctx, func(tx store.Tx) error {
			hash := p.shareCodeHash(bp.hint)
			sc, err := tx.GetShareCode(ctx, hash)
			switch {
			case errors.Is(err, broker.ErrNotFound):
				return errUnknownUserID
			case err != nil:
				return err
			case !sc.UsedAt.IsZero():
				return errUnknownUserID
			case !now.Before(sc.ExpiresAt):
				return errExpiredLoginHint
			}
			if bp.notify != "" {
				f, err := tx.GetFirm(ctx, c.c.FirmID)
				if err != nil {
					return err
				}
				if f.WebhookURL == "" {
					return fosite.ErrInvalidRequest.WithHint("Ping mode needs the firm's registered webhook URL; register one, or poll without client_notification_token.")
				}
			}
			if err := tx.UseShareCode(ctx, hash, now); errors.Is(err, broker.ErrNotFound) {
				return errUnknownUserID
			} else if err != nil {
				return err
			}
			out, err := p.cfg.Decoupled.Request(ctx, tx, sc.CustomerID, c.c, json.RawMessage(bp.details))
			if errors.Is(err, broker.ErrNotFound) {
				return errUnknownUserID.WithWrap(err)
			} else if err != nil {
				return err
			}
			br := store.BackchannelRequest{ID: id, AuthReqHash: authReqHash(authReqID), ClientID: c.c.ID, FirmID: c.c.FirmID,
				CustomerID: sc.CustomerID, ConsentID: out.ConsentID, State: store.BackchannelPending, Requested: json.RawMessage(bp.details),
				BindingMessage: bp.binding, NotificationToken: bp.notify, Reasons: out.Reasons, Interval: p.cfg.Decoupled.Interval,
				CreatedAt: now, ExpiresAt: now.Add(bp.expiry)}
			switch out.State {
			case broker.ConsentRequested:
			case broker.ConsentGranted:
				br.State, br.Granted, br.DecidedAt = store.BackchannelGranted, out.Details, now
			default:
				br.State, br.DecidedAt = store.BackchannelDenied, now
			}
			if err := tx.CreateBackchannelRequest(ctx, br); err != nil {
				return err
			}
			if br.State != store.BackchannelPending {
				return p.announceDecision(ctx, tx, br)
			}
			return nil
		})
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) {
			fail(err)
			return
		} else if err != nil {
			fail(fosite.ErrServerError.WithWrap(err))
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"auth_req_id": authReqID, "expires_in": int(bp.expiry.Seconds()),
			"interval": int(p.cfg.Decoupled.Interval.Seconds())})
	}), maxFormBody)
}

// cibaGrant is the fosite.TokenEndpointHandler of GrantTypeCIBA. It is
// composed between the DPoP handlers, like fosite's grant handlers, so the
// tokens are bound to the proof's key.
type cibaGrant struct {
	p        *Provider
	strategy oauth2.CoreStrategy
}

var _ fosite.TokenEndpointHandler = (*cibaGrant)(nil)

func (h *cibaGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (h *cibaGrant) CanHandleTokenEndpointRequest(_ context.Context, req fosite.AccessRequester) bool {
	return req.GetGrantTypes().ExactOne(GrantTypeCIBA)
}

// HandleTokenEndpointRequest answers a poll. A request still pending
// records the poll (slow_down if it came within the interval); a granted
// one fills the session, which PopulateTokenEndpointResponse spends.
func (h *cibaGrant) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	p := h.p
	if !p.decoupledOn() {
		return fosite.ErrUnsupportedGrantType
	}
	c, ok := req.GetClient().(*client)
	if !ok || c.regulator != "" {
		return fosite.ErrUnauthorizedClient.WithHint("Only firms' clients may use this grant.")
	}
	form := req.GetRequestForm()
	if len(form["auth_req_id"]) != 1 || form.Get("auth_req_id") == "" {
		return fosite.ErrInvalidRequest.WithHint("Send exactly one auth_req_id.")
	}
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("ciba: session is not *oauth.Session")
	}
	now := p.now()
	var outcome error
	err := p.cfg.Store.Update(ctx, func(tx store.Tx) error {
		outcome = nil
		r, err := tx.GetBackchannelRequestByHash(ctx, authReqHash(form.Get("auth_req_id")))
		switch {
		case errors.Is(err, broker.ErrNotFound):
			outcome = fosite.ErrInvalidGrant.WithHint("Unknown auth_req_id.")
			return nil
		case err != nil:
			return err
		case r.ClientID != c.c.ID:
			outcome = fosite.ErrInvalidGrant.WithHint("Unknown auth_req_id.")
			return nil
		case r.State == store.BackchannelIssued:
			outcome = fosite.ErrInvalidGrant.WithHint("The auth_req_id was already used.")
			return nil
		case !now.Before(r.ExpiresAt):
			outcome = errExpiredToken
			return nil
		case r.State == store.BackchannelDenied:
			outcome = errCIBAAccessDenied
			return nil
		case r.State == store.BackchannelPending:
			outcome = errAuthorizationPending
			if !r.LastPolledAt.IsZero() && now.Before(r.LastPolledAt.Add(r.Interval)) {
				r.Interval += slowDownStep
				outcome = errSlowDown
			}
			r.LastPolledAt = now
			return tx.UpdateBackchannelRequest(ctx, r, store.BackchannelPending)
		}
		psn, err := tx.Pseudonym(ctx, r.CustomerID, r.FirmID)
		if err != nil {
			return err
		}
		sess.Subject, sess.ConsentID, sess.FirmID, sess.Details = string(psn), r.ConsentID, r.FirmID, slices.Clone(r.Granted)
		return nil
	})
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if outcome != nil {
		return outcome
	}
	sess.SetExpiresAt(fosite.AccessToken, now.Add(p.cfg.AccessTokenLifespan))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(p.cfg.RefreshTokenLifespan))
	return nil
}

// PopulateTokenEndpointResponse spends the auth_req_id (of two concurrent
// requests exactly one gets past it), checks the consent is still live,
// and issues an access and a refresh token.
func (h *cibaGrant) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	p := h.p
	var outcome error
	err := p.cfg.Store.Update(ctx, func(tx store.Tx) error {
		outcome = nil
		r, err := tx.GetBackchannelRequestByHash(ctx, authReqHash(req.GetRequestForm().Get("auth_req_id")))
		if err != nil {
			return err
		}
		if r.State != store.BackchannelGranted {
			outcome = fosite.ErrInvalidGrant.WithHint("The auth_req_id was already used.")
			return nil
		}
		con, err := tx.GetConsent(ctx, r.ConsentID)
		if err != nil {
			return err
		}
		if con.State != broker.ConsentGranted {
			outcome = errCIBAAccessDenied.WithHint("The consent is no longer live.")
			return nil
		}
		r.State = store.BackchannelIssued
		err = tx.UpdateBackchannelRequest(ctx, r, store.BackchannelGranted)
		if errors.Is(err, broker.ErrConflict) {
			outcome = fosite.ErrInvalidGrant.WithHint("The auth_req_id was already used.")
			return nil
		}
		return err
	})
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if outcome != nil {
		return outcome
	}
	access, accessSig, err := h.strategy.GenerateAccessToken(ctx, req)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	refresh, refreshSig, err := h.strategy.GenerateRefreshToken(ctx, req)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	txctx, err := p.store.BeginTX(ctx)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	defer func() { _ = p.store.Rollback(txctx) }()
	stored := req.Sanitize([]string{})
	if err := p.store.CreateAccessTokenSession(txctx, accessSig, stored); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := p.store.CreateRefreshTokenSession(txctx, refreshSig, accessSig, stored); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err := p.store.Commit(txctx); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(p.cfg.AccessTokenLifespan)
	resp.SetScopes(req.GetGrantedScopes())
	resp.SetExtra("refresh_token", refresh)
	if sess, ok := req.GetSession().(*Session); ok {
		if d := sess.AuthorizationDetails(); len(d) > 0 {
			resp.SetExtra(rar.FormKey, d)
		}
	}
	return nil
}

// Account pages.

type accountPage struct {
	Title    string
	Error    string
	Notice   string
	CSRF     string
	Handle   string
	Next     string
	Code     string
	Expires  string
	Requests []requestView
}

type requestView struct {
	ID             string
	FirmName       string
	ClientName     string
	BindingMessage string
	Reasons        []string
	Expires        string
	Details        []detailView
}

// renderAccount renders an account page with the consent screen's headers.
func (p *Provider) renderAccount(w http.ResponseWriter, name string, status int, pg accountPage) {
	p.writePage(w, p.account, name, status, pg)
}

// accountNext is where a sign-in returns to: one of the account pages.
func accountNext(s string) string {
	if s == PathAccountRequests {
		return s
	}
	return PathShareCodes
}

// signedIn returns the signed-in customer, or sends the browser to sign in.
func (p *Provider) signedIn(w http.ResponseWriter, r *http.Request, here string) (broker.CustomerID, bool) {
	if !p.decoupledOn() {
		http.NotFound(w, r)
		return "", false
	}
	c, ok := p.loggedIn(r)
	if !ok {
		http.Redirect(w, r, p.cfg.Issuer+PathAccountLogin+"?next="+url.QueryEscape(here), http.StatusSeeOther)
	}
	return c, ok
}

// AccountLogin signs a customer in to their account pages.
func (p *Provider) AccountLogin() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		if !p.decoupledOn() {
			http.NotFound(w, r)
			return
		}
		next := accountNext(r.FormValue("next"))
		switch p.form(w, r) {
		case formShow:
			p.renderAccount(w, "account_login", http.StatusOK, accountPage{Title: "Sign in", CSRF: p.csrf(w, r), Next: next})
			return
		case formRefused:
			return
		}
		again := func(status int, msg, handle string) {
			p.renderAccount(w, "account_login", status, accountPage{Title: "Sign in", Error: msg, CSRF: p.csrf(w, r), Handle: handle, Next: next})
		}
		if !p.signInPost(ctx, w, r, again) {
			return
		}
		http.Redirect(w, r, p.cfg.Issuer+next, http.StatusSeeOther)
	}), maxFormBody)
}

// ShareCodes lets a signed-in customer create a one-time share code.
func (p *Provider) ShareCodes() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		customer, ok := p.signedIn(w, r, PathShareCodes)
		if !ok {
			return
		}
		switch p.form(w, r) {
		case formShow:
			p.renderAccount(w, "share_codes", http.StatusOK, accountPage{Title: "Share codes", CSRF: p.csrf(w, r)})
			return
		case formRefused:
			return
		}
		now := p.now()
		code := newShareCode()
		exp := now.Add(p.cfg.Decoupled.ShareCodeLifespan)
		err := p.cfg.Store.Update(ctx, func(tx store.Tx) error {
			return tx.CreateShareCode(ctx, store.ShareCode{Hash: p.shareCodeHash(code), CustomerID: customer, CreatedAt: now, ExpiresAt: exp})
		})
		if err != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "create share code", slog.Any("error", err))
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		p.renderAccount(w, "share_codes", http.StatusOK, accountPage{Title: "Share codes", CSRF: p.csrf(w, r), Code: code,
			Expires: exp.Format("15:04 MST")})
	}), maxFormBody)
}

// AccountRequests shows a signed-in customer the firms' pending decoupled
// requests and records their answers.
func (p *Provider) AccountRequests() http.Handler {
	return http.MaxBytesHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, end := p.beginRequest(r.Context())
		defer end()
		customer, ok := p.signedIn(w, r, PathAccountRequests)
		if !ok {
			return
		}
		switch p.form(w, r) {
		case formShow:
			p.listRequests(ctx, w, r, customer, http.StatusOK, "", r.URL.Query().Get("done"))
			return
		case formRefused:
			return
		}
		status, msg, done := p.answer(ctx, r, customer)
		if status != http.StatusOK {
			p.listRequests(ctx, w, r, customer, status, msg, "")
			return
		}
		http.Redirect(w, r, p.cfg.Issuer+PathAccountRequests+"?done="+done, http.StatusSeeOther)
	}), maxFormBody)
}

func (p *Provider) listRequests(ctx context.Context, w http.ResponseWriter, r *http.Request, customer broker.CustomerID, status int, errMsg, done string) {
	var views []requestView
	err := p.cfg.Store.View(ctx, func(tx store.Tx) error {
		rs, err := tx.ListBackchannelRequests(ctx, customer, store.BackchannelPending, p.now())
		if err != nil {
			return err
		}
		for _, br := range rs {
			f, err := tx.GetFirm(ctx, br.FirmID)
			if err != nil {
				return err
			}
			c, err := tx.GetClient(ctx, br.ClientID)
			if err != nil {
				return err
			}
			ds, err := describe(br.Requested)
			if err != nil {
				return err
			}
			views = append(views, requestView{ID: br.ID, FirmName: f.LegalName, ClientName: c.Name, BindingMessage: br.BindingMessage,
				Reasons: br.Reasons, Expires: br.ExpiresAt.Format("15:04 MST"), Details: ds})
		}
		return nil
	})
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "list backchannel requests", slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	notice := ""
	switch done {
	case "approved":
		notice = "You approved the request. The firm has been told."
	case "refused":
		notice = "You refused the request. The firm has been told."
	}
	p.renderAccount(w, "requests", status, accountPage{Title: "Requests for your data", CSRF: p.csrf(w, r), Error: errMsg, Notice: notice, Requests: views})
}

// errAnswer carries a status and message for the customer out of a transaction.
type errAnswer struct {
	status int
	msg    string
}

func (e *errAnswer) Error() string { return e.msg }

// answer records the customer's answer to one pending request, the
// consent change and the firm's webhook in one transaction.
func (p *Provider) answer(ctx context.Context, r *http.Request, customer broker.CustomerID) (status int, msg, done string) {
	id := r.PostFormValue("request")
	approve := r.PostFormValue("decision") == "approve"
	now := p.now()
	err := p.cfg.Store.Update(ctx, func(tx store.Tx) error {
		br, err := tx.GetBackchannelRequest(ctx, id)
		switch {
		case errors.Is(err, broker.ErrNotFound), err == nil && br.CustomerID != customer:
			// Another customer's request is as good as unknown.
			return &errAnswer{http.StatusNotFound, "There is no such request."}
		case err != nil:
			return err
		case br.State != store.BackchannelPending:
			return &errAnswer{http.StatusConflict, "That request was already answered."}
		case !now.Before(br.ExpiresAt):
			return &errAnswer{http.StatusGone, "That request has expired."}
		}
		var granted json.RawMessage
		if approve {
			if granted, err = narrowDetails(br.Requested, r.PostForm); err != nil {
				return &errAnswer{http.StatusBadRequest, err.Error()}
			}
		}
		out, err := p.cfg.Decoupled.Answer(ctx, tx, customer, br.ConsentID, granted)
		if err != nil {
			return err
		}
		br.State, br.DecidedAt = store.BackchannelDenied, now
		if out.State == broker.ConsentGranted {
			br.State, br.Granted = store.BackchannelGranted, out.Details
		}
		if err := tx.UpdateBackchannelRequest(ctx, br, store.BackchannelPending); err != nil {
			return err
		}
		return p.announceDecision(ctx, tx, br)
	})
	var ea *errAnswer
	switch {
	case errors.As(err, &ea):
		return ea.status, ea.msg, ""
	case err != nil:
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "answer backchannel request", slog.Any("error", err))
		return http.StatusInternalServerError, "Something went wrong; nothing was recorded. Try again.", ""
	case approve:
		return http.StatusOK, "", "approved"
	}
	return http.StatusOK, "", "refused"
}

// narrowDetails applies the customer's answer to the requested details:
// only the ticked categories ("category.<i>") stay, and a duration
// ("duration.<i>") may shorten, never lengthen, the request. It refuses an
// answer that keeps no category or widens anything.
func narrowDetails(requested json.RawMessage, form url.Values) (json.RawMessage, error) {
	req, err := rar.Parse(string(requested), rar.Options{})
	if err != nil {
		return nil, errors.New("The request cannot be shown.")
	}
	var out []rar.Detail
	for i, d := range req {
		g := d
		ticked := form["category."+strconv.Itoa(i)]
		g.Categories = slices.DeleteFunc(slices.Clone(d.Categories), func(c string) bool { return !slices.Contains(ticked, c) })
		if len(g.Categories) == 0 {
			continue
		}
		if d.Fields != nil {
			g.Fields = map[string][]string{}
			for k, v := range d.Fields {
				if slices.Contains(g.Categories, k) {
					g.Fields[k] = slices.Clone(v)
				}
			}
		}
		if s := strings.TrimSpace(form.Get("duration." + strconv.Itoa(i))); s != "" && s != d.Duration.String() {
			if g.Duration, err = broker.ParseDuration(s); err != nil || g.Duration.IsZero() {
				return nil, fmt.Errorf("%q is not a duration like P7D or P1M.", s)
			}
		}
		if !rar.Within(g, d) {
			return nil, errors.New("You can shorten the duration, not lengthen it.")
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil, errors.New("Tick at least one category to approve, or refuse the request.")
	}
	enc, err := rar.Encode(out)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(enc), nil
}
