package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/pkce"
	fstorage "github.com/ory/fosite/storage"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Storage is what the authorization server needs from persistence beyond
// store.Store. Implementation: store/relational.OAuth, on PostgreSQL and
// SQLite.
//
// Requests are opaque JSON blobs keyed by kind and signature (never the
// token itself); requestID groups the codes and tokens of one grant.
type Storage interface {
	// CreateRequest stores an active request. It MUST refuse a taken kind
	// and signature with broker.ErrConflict. consentID is the consent the
	// grant rests on ("" for none); store.Tx.RevokeConsentTokens MUST end
	// every request stored with it. It MUST refuse, with
	// broker.ErrForbidden, a code or token under a consent that is not
	// granted, serialized with the consent's changes so that no token
	// stored concurrently with a revocation outlives it.
	CreateRequest(ctx context.Context, kind, signature, requestID, clientID, consentID string, data []byte, expiresAt time.Time) error
	// GetRequest returns the data and whether the request is active. It
	// MUST return broker.ErrNotFound for a missing request or one expired
	// by now, and MUST return inactive requests (reuse detection needs them).
	GetRequest(ctx context.Context, kind, signature string, now time.Time) (data []byte, active bool, err error)
	// GetRequestWithClient is GetRequest that also returns the request's
	// client and that client's firm, read in the same statement; client
	// is nil when it is not a firm's client.
	GetRequestWithClient(ctx context.Context, kind, signature string, now time.Time) (data []byte, active bool, client *broker.Client, firm *broker.Firm, err error)
	// DeactivateRequest marks an active request used. It MUST return
	// broker.ErrNotFound unless it changed an active request, so that of
	// two concurrent callers exactly one succeeds.
	DeactivateRequest(ctx context.Context, kind, signature string) error
	// DeactivateRequests marks every request of kind in a grant used.
	DeactivateRequests(ctx context.Context, kind, requestID string) error
	DeleteRequest(ctx context.Context, kind, signature string) error
	DeleteRequests(ctx context.Context, kind, requestID string) error
	// RotateRefreshToken MUST, in one transaction, deactivate the active
	// refresh token with signature (broker.ErrConflict if it was not
	// active), every other refresh token of the grant, and delete the
	// grant's access tokens.
	RotateRefreshToken(ctx context.Context, requestID, signature string) error
	// UseJTI records a client-assertion jti until exp. It MUST return
	// broker.ErrConflict if the jti is recorded and unexpired at now,
	// atomically (check and record are one step).
	UseJTI(ctx context.Context, jti string, exp, now time.Time) error
	JTIUsed(ctx context.Context, jti string, now time.Time) (bool, error)
	// UseDPoPProof records an accepted DPoP proof's replay key until exp.
	// It MUST return broker.ErrConflict if the key is recorded and
	// unexpired at now, atomically, across every replica (see ReplayCache).
	UseDPoPProof(ctx context.Context, key string, exp, now time.Time) error

	// LoginFailures counts subject's failed sign-ins unexpired at now and
	// says when the oldest of them expires (zero when there are none).
	LoginFailures(ctx context.Context, subject string, now time.Time) (n int, oldest time.Time, err error)
	// AddLoginFailure records a failed sign-in for each subject until expiresAt.
	AddLoginFailure(ctx context.Context, subjects []string, at, expiresAt time.Time) error
	// ClearLoginFailures forgets subject's failed sign-ins.
	ClearLoginFailures(ctx context.Context, subject string) error

	CreateInitialAccessToken(ctx context.Context, hash string, firm broker.FirmID, createdAt, expiresAt time.Time) error
	// InitialAccessTokenFirm returns the firm of an unexpired token hash,
	// or broker.ErrNotFound.
	InitialAccessTokenFirm(ctx context.Context, hash string, now time.Time) (broker.FirmID, error)

	// CreateRegulatorClient and GetRegulatorClient keep regulators'
	// clients, which have no firm.
	CreateRegulatorClient(ctx context.Context, reg broker.RegulatorID, c broker.Client) error
	GetRegulatorClient(ctx context.Context, id broker.ClientID) (broker.RegulatorID, broker.Client, error)
	// SetClientStatus and DeleteClient act on a firm's or a regulator's
	// client; DeleteClient also removes every request of the client.
	SetClientStatus(ctx context.Context, id broker.ClientID, status broker.ClientStatus) error
	DeleteClient(ctx context.Context, id broker.ClientID) error

	// BeginTx starts a transaction carried by the returned context: every
	// call made with it joins the transaction until CommitTx or
	// RollbackTx. RollbackTx MUST be harmless after either.
	BeginTx(ctx context.Context) (context.Context, error)
	CommitTx(ctx context.Context) error
	RollbackTx(ctx context.Context) error

	// Cleanup deletes whatever expired by now and says how many rows went.
	Cleanup(ctx context.Context, now time.Time) (int64, error)
}

// Request kinds.
const (
	kindCode        = "code"
	kindAccess      = "access"
	kindRefresh     = "refresh"
	kindPKCE        = "pkce"
	kindPAR         = "par"
	kindInteraction = "interaction"
)

// fositeStore adapts Storage and store.Store to every storage interface
// fosite's composed handlers type-assert at run time.
type fositeStore struct {
	s   Storage
	db  store.Store
	now func() time.Time
	ttl lifespans
}

type lifespans struct {
	code, access, refresh, par time.Duration
}

var (
	_ fosite.Storage                = (*fositeStore)(nil)
	_ fosite.ClientManager          = (*fositeStore)(nil)
	_ fosite.PARStorage             = (*fositeStore)(nil)
	_ oauth2.CoreStorage            = (*fositeStore)(nil)
	_ oauth2.AuthorizeCodeStorage   = (*fositeStore)(nil)
	_ oauth2.AccessTokenStorage     = (*fositeStore)(nil)
	_ oauth2.RefreshTokenStorage    = (*fositeStore)(nil)
	_ oauth2.TokenRevocationStorage = (*fositeStore)(nil)
	_ pkce.PKCERequestStorage       = (*fositeStore)(nil)
	_ fstorage.Transactional        = (*fositeStore)(nil)
)

// GetClient implements fosite.ClientManager: active clients of approved
// firms, and active clients of regulators. Anything else is
// fosite.ErrNotFound, so a suspended firm's tokens stop working at once.
func (f *fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := f.client(ctx, broker.ClientID(id))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// requestScope is what one HTTP request keeps: the clients already
// loaded (fosite reloads the client with every stored request it reads)
// and the storage transactions fosite began, so that none outlives the
// request even on a path that forgets to end it.
type requestScope struct {
	mu   sync.Mutex
	m    map[broker.ClientID]*client
	open []context.Context
}

type requestScopeKey struct{}

// beginRequest starts a request's scope; call end when the request is
// done. Only request handlers call it, so a client's status is read
// afresh on every request.
func (p *Provider) beginRequest(ctx context.Context) (_ context.Context, end func()) {
	rs := &requestScope{m: map[broker.ClientID]*client{}}
	return context.WithValue(ctx, requestScopeKey{}, rs), func() {
		rs.mu.Lock()
		open := rs.open
		rs.open = nil
		rs.mu.Unlock()
		for _, txctx := range open {
			_ = p.storage.RollbackTx(txctx)
		}
	}
}

// BeginTX implements fosite's storage.Transactional.
func (f *fositeStore) BeginTX(ctx context.Context) (context.Context, error) {
	txctx, err := f.s.BeginTx(ctx)
	if err != nil {
		return ctx, err
	}
	if rs, ok := ctx.Value(requestScopeKey{}).(*requestScope); ok {
		rs.mu.Lock()
		rs.open = append(rs.open, txctx)
		rs.mu.Unlock()
	}
	return txctx, nil
}

// Commit implements fosite's storage.Transactional.
func (f *fositeStore) Commit(ctx context.Context) error { return f.s.CommitTx(ctx) }

// Rollback implements fosite's storage.Transactional.
func (f *fositeStore) Rollback(ctx context.Context) error { return f.s.RollbackTx(ctx) }

func (f *fositeStore) client(ctx context.Context, id broker.ClientID) (*client, error) {
	cache, _ := ctx.Value(requestScopeKey{}).(*requestScope)
	if cache != nil {
		cache.mu.Lock()
		c, ok := cache.m[id]
		cache.mu.Unlock()
		if ok {
			return c, nil
		}
	}
	c, err := f.loadClient(ctx, id)
	if err == nil && cache != nil {
		cache.mu.Lock()
		cache.m[id] = c
		cache.mu.Unlock()
	}
	return c, err
}

func (f *fositeStore) loadClient(ctx context.Context, id broker.ClientID) (*client, error) {
	if _, err := broker.ParseClientID(string(id)); err != nil {
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	var c broker.Client
	var firm broker.Firm
	err := f.db.View(ctx, func(tx store.Tx) (err error) {
		if c, err = tx.GetClient(ctx, id); err != nil {
			return err
		}
		firm, err = tx.GetFirm(ctx, c.FirmID)
		return err
	})
	if err == nil {
		return firmClient(c, firm)
	}
	switch {
	case errors.Is(err, broker.ErrNotFound):
		reg, rc, rerr := f.s.GetRegulatorClient(ctx, id)
		if errors.Is(rerr, broker.ErrNotFound) {
			return nil, fosite.ErrNotFound.WithWrap(err)
		} else if rerr != nil {
			return nil, rerr
		}
		if rc.Status != broker.ClientActive {
			return nil, fosite.ErrNotFound.WithDebugf("client %s is %s", id, rc.Status)
		}
		return newClient(rc, "", reg)
	}
	return nil, err
}

// firmClient is a firm's client as fosite sees it, or fosite.ErrNotFound
// unless the client is active and its firm approved.
func firmClient(c broker.Client, firm broker.Firm) (*client, error) {
	switch {
	case c.Status != broker.ClientActive:
		return nil, fosite.ErrNotFound.WithDebugf("client %s is %s", c.ID, c.Status)
	case firm.Status != broker.FirmApproved:
		return nil, fosite.ErrNotFound.WithDebugf("firm %s is %s", firm.ID, firm.Status)
	}
	return newClient(c, firm.LegalName, "")
}

// ClientAssertionJWTValid implements fosite.ClientManager.
func (f *fositeStore) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	used, err := f.s.JTIUsed(ctx, jti, f.now())
	if err != nil {
		return err
	}
	if used {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager.
func (f *fositeStore) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	err := f.s.UseJTI(ctx, jti, exp, f.now())
	if errors.Is(err, broker.ErrConflict) {
		return fosite.ErrJTIKnown.WithWrap(err)
	}
	return err
}

// stored is the serialised form of a fosite request. The client is kept
// by id only and loaded afresh, so a client's suspension applies at once.
type stored struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScope    []string   `json:"requested_scope,omitempty"`
	GrantedScope      []string   `json:"granted_scope,omitempty"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	Session           *Session   `json:"session"`
	// Authorization requests (PAR and interactions) only.
	ResponseTypes        []string `json:"response_types,omitempty"`
	RedirectURI          string   `json:"redirect_uri,omitempty"`
	State                string   `json:"state,omitempty"`
	HandledResponseTypes []string `json:"handled_response_types,omitempty"`
	ResponseMode         string   `json:"response_mode,omitempty"`
	DefaultResponseMode  string   `json:"default_response_mode,omitempty"`
}

// secretParams never reach storage.
var secretParams = []string{"client_assertion", "client_secret", "code_verifier", "refresh_token", "code", "password"}

func encode(r fosite.Requester) ([]byte, error) {
	s := stored{
		ID:                r.GetID(),
		RequestedAt:       r.GetRequestedAt(),
		ClientID:          r.GetClient().GetID(),
		RequestedScope:    r.GetRequestedScopes(),
		GrantedScope:      r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(),
		GrantedAudience:   r.GetGrantedAudience(),
		Form:              url.Values{},
	}
	for k, v := range r.GetRequestForm() {
		s.Form[k] = v
	}
	for _, k := range secretParams {
		s.Form.Del(k)
	}
	if r.GetSession() != nil {
		sess, ok := r.GetSession().(*Session)
		if !ok {
			return nil, fmt.Errorf("oauth: session is %T, not *oauth.Session", r.GetSession())
		}
		s.Session = sess
	}
	if ar, ok := r.(fosite.AuthorizeRequester); ok {
		s.ResponseTypes = ar.GetResponseTypes()
		if u := ar.GetRedirectURI(); u != nil {
			s.RedirectURI = u.String()
		}
		s.State = ar.GetState()
		s.ResponseMode = string(ar.GetResponseMode())
		s.DefaultResponseMode = string(ar.GetDefaultResponseMode())
		if a, ok := ar.(*fosite.AuthorizeRequest); ok {
			s.HandledResponseTypes = a.HandledResponseTypes
		}
	}
	return json.Marshal(s)
}

func (f *fositeStore) decode(ctx context.Context, data []byte) (*fosite.AuthorizeRequest, error) {
	return f.decodeWith(ctx, data, nil)
}

// preloaded is a request's client read together with the request.
type preloaded struct {
	id  broker.ClientID
	c   *client
	err error
}

// decodeWith decodes a stored request, taking its client from pre when it
// is the request's, and loading it otherwise.
func (f *fositeStore) decodeWith(ctx context.Context, data []byte, pre *preloaded) (*fosite.AuthorizeRequest, error) {
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("oauth: decode stored request: %w", err)
	}
	var c *client
	var err error
	if pre != nil && pre.id == broker.ClientID(s.ClientID) {
		c, err = pre.c, pre.err
	} else {
		c, err = f.client(ctx, broker.ClientID(s.ClientID))
	}
	if err != nil {
		return nil, err
	}
	ar := fosite.NewAuthorizeRequest()
	ar.ID = s.ID
	ar.RequestedAt = s.RequestedAt
	ar.Client = c
	ar.RequestedScope = append(fosite.Arguments{}, s.RequestedScope...)
	ar.GrantedScope = append(fosite.Arguments{}, s.GrantedScope...)
	ar.RequestedAudience = append(fosite.Arguments{}, s.RequestedAudience...)
	ar.GrantedAudience = append(fosite.Arguments{}, s.GrantedAudience...)
	if s.Form != nil {
		ar.Form = s.Form
	}
	if s.Session == nil {
		s.Session = NewSession("")
	}
	ar.Session = s.Session
	ar.ResponseTypes = append(fosite.Arguments{}, s.ResponseTypes...)
	ar.HandledResponseTypes = append(fosite.Arguments{}, s.HandledResponseTypes...)
	ar.State = s.State
	ar.ResponseMode = fosite.ResponseModeType(s.ResponseMode)
	ar.DefaultResponseMode = fosite.ResponseModeType(s.DefaultResponseMode)
	if s.RedirectURI != "" {
		if ar.RedirectURI, err = url.Parse(s.RedirectURI); err != nil {
			return nil, fmt.Errorf("oauth: decode stored redirect uri: %w", err)
		}
	}
	return ar, nil
}

// expiry is when a stored request of kind ends.
func (f *fositeStore) expiry(kind string, r fosite.Requester) time.Time {
	var tt fosite.TokenType
	var def time.Duration
	switch kind {
	case kindCode, kindPKCE:
		tt, def = fosite.AuthorizeCode, f.ttl.code
	case kindAccess:
		tt, def = fosite.AccessToken, f.ttl.access
	case kindRefresh:
		tt, def = fosite.RefreshToken, f.ttl.refresh
	case kindPAR, kindInteraction:
		tt, def = fosite.PushedAuthorizeRequestContext, f.ttl.par
	}
	if s := r.GetSession(); s != nil {
		if t := s.GetExpiresAt(tt); !t.IsZero() {
			return t
		}
	}
	return f.now().Add(def)
}

func (f *fositeStore) create(ctx context.Context, kind, signature string, r fosite.Requester) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	var consentID string
	if s, ok := r.GetSession().(*Session); ok && s != nil {
		consentID = string(s.ConsentID)
	}
	return f.s.CreateRequest(ctx, kind, signature, r.GetID(), r.GetClient().GetID(), consentID, data, f.expiry(kind, r))
}

// get loads a request. Missing or expired requests are fosite.ErrNotFound;
// inactive ones come back with inactive (fosite wants the request too).
func (f *fositeStore) get(ctx context.Context, kind, signature string, inactive error) (*fosite.AuthorizeRequest, error) {
	// The request's client (and its firm) come in the same read; their
	// status is checked afresh, as loadClient would.
	data, active, c, firm, err := f.s.GetRequestWithClient(ctx, kind, signature, f.now())
	if errors.Is(err, broker.ErrNotFound) {
		return nil, fosite.ErrNotFound.WithWrap(err)
	} else if err != nil {
		return nil, err
	}
	var pre *preloaded
	if c != nil {
		cl, err := firmClient(*c, *firm)
		pre = &preloaded{id: c.ID, c: cl, err: err}
	}
	ar, err := f.decodeWith(ctx, data, pre)
	if err != nil {
		return nil, err
	}
	if !active {
		return ar, inactive
	}
	return ar, nil
}

func notFound(err error) error {
	if errors.Is(err, broker.ErrNotFound) {
		return fosite.ErrNotFound.WithWrap(err)
	}
	return err
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (f *fositeStore) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return f.create(ctx, kindCode, code, r)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage; a used
// code returns its request with fosite.ErrInvalidatedAuthorizeCode so that
// fosite revokes every token issued from it.
func (f *fositeStore) GetAuthorizeCodeSession(ctx context.Context, code string, _ fosite.Session) (fosite.Requester, error) {
	ar, err := f.get(ctx, kindCode, code, fosite.ErrInvalidatedAuthorizeCode)
	if ar == nil {
		return nil, err
	}
	return ar, err
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
// Of two concurrent exchanges of one code only one gets past it.
func (f *fositeStore) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	if err := f.s.DeactivateRequest(ctx, kindCode, code); err != nil {
		if errors.Is(err, broker.ErrNotFound) {
			return fmt.Errorf("%w: %w", fosite.ErrInvalidatedAuthorizeCode, err)
		}
		return err
	}
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (f *fositeStore) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return f.create(ctx, kindAccess, signature, r)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (f *fositeStore) GetAccessTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	ar, err := f.get(ctx, kindAccess, signature, fosite.ErrInactiveToken)
	if ar == nil {
		return nil, err
	}
	return ar, err
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (f *fositeStore) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return f.s.DeleteRequest(ctx, kindAccess, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (f *fositeStore) CreateRefreshTokenSession(ctx context.Context, signature, _ string, r fosite.Requester) error {
	return f.create(ctx, kindRefresh, signature, r)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage; a rotated
// token returns its request with fosite.ErrInactiveToken, which makes
// fosite revoke the whole family (reuse detection).
func (f *fositeStore) GetRefreshTokenSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	ar, err := f.get(ctx, kindRefresh, signature, fosite.ErrInactiveToken)
	if ar == nil {
		return nil, err
	}
	return ar, err
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (f *fositeStore) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return f.s.DeleteRequest(ctx, kindRefresh, signature)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: strict
// rotation, no grace period. A lost race is fosite.ErrSerializationFailure.
func (f *fositeStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	err := f.s.RotateRefreshToken(ctx, requestID, signature)
	if errors.Is(err, broker.ErrConflict) {
		return fosite.ErrSerializationFailure.WithWrap(err)
	}
	return err
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage.
func (f *fositeStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return f.s.DeactivateRequests(ctx, kindRefresh, requestID)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage.
func (f *fositeStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	return f.s.DeleteRequests(ctx, kindAccess, requestID)
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (f *fositeStore) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return f.create(ctx, kindPKCE, signature, r)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (f *fositeStore) GetPKCERequestSession(ctx context.Context, signature string, _ fosite.Session) (fosite.Requester, error) {
	ar, err := f.get(ctx, kindPKCE, signature, nil)
	if err != nil {
		return nil, err
	}
	return ar, nil
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (f *fositeStore) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return f.s.DeleteRequest(ctx, kindPKCE, signature)
}

// CreatePARSession implements fosite.PARStorage.
func (f *fositeStore) CreatePARSession(ctx context.Context, requestURI string, r fosite.AuthorizeRequester) error {
	return f.create(ctx, kindPAR, requestURI, r)
}

// GetPARSession implements fosite.PARStorage; expired requests are not found.
func (f *fositeStore) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	ar, err := f.get(ctx, kindPAR, requestURI, fosite.ErrNotFound)
	if err != nil {
		return nil, err
	}
	return ar, nil
}

// DeletePARSession implements fosite.PARStorage. Deleting a request that
// is already gone is fosite.ErrNotFound, so a request_uri is single use
// even under concurrency.
func (f *fositeStore) DeletePARSession(ctx context.Context, requestURI string) error {
	return notFound(f.s.DeactivateRequest(ctx, kindPAR, requestURI))
}
