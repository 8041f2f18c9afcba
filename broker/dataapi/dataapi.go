// Package dataapi is Steward's resource server for firms: the Data API
// under /v1. It is where a disclosure actually happens, so it holds
// DESIGN.md's first two invariants:
//
//  1. No disclosure without a live consent and an allow decision made at
//     the moment of access. Every fetch reads the consent (locking its
//     row), the firm, the customer and the customer's current terms, counts
//     earlier disclosures in the frequency windows, and asks the policy's
//     access decision, all inside the transaction that will record the
//     disclosure. No decision outlives its request: what the policy reuses
//     (its plan) is fixed by inputs that never change.
//  2. No disclosure without its ledger entry committed first: the
//     decision record, the disclosure row and its ledger entry are written
//     in that same transaction (Tx.RecordDisclosures), and the response
//     body is written only after it commits.
//
// Every request presents a DPoP-bound access token (RFC 9449): the token
// is introspected in-process (a fetch remembers what introspection said
// and checks in its own transaction that the token is still live), and
// the DPoP proof must be signed by the key the token is bound to. A token without its key, a Bearer token, an
// inactive token, another firm's consent or a consent the token was not
// issued for are all refused, and the refusal is logged. Each proof is
// recorded in the request's transaction, so a replayed one is refused.
//
// # Routes
//
//	GET  /v1/consents/{id}/data            fetch data (consent token)
//	POST /v1/consents/{id}/returned-data   write refined data back to the customer (consent token)
//	GET  /v1/consents/{id}                 the consent and what may still be fetched (consent or firm token)
//	POST /v1/consents/{id}/deletion        attest deletion after the consent ended (consent or firm token)
//	GET  /v1/firm/consents                 the firm's consents (firm token)
//
// Consent tokens come from the authorization-code (or backchannel) grant
// and carry the consent id; firm tokens come from the client-credentials
// grant with scope "firm". Firms see customers only by their pairwise
// pseudonym.
package dataapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
)

// ScopeFirm is the client-credentials scope of firm-level calls.
const ScopeFirm = "firm"

// Token is what the resource server learns about a live access token.
type Token struct {
	ClientID broker.ClientID
	FirmID   broker.FirmID
	// ConsentID is the consent the token was issued for; empty for a
	// client-credentials (firm) token.
	ConsentID broker.ConsentID
	Scopes    []string
	// JKT is the thumbprint of the DPoP key the token is bound to.
	JKT string
	// Signature is the key the token is stored under, which a fetch's
	// transaction checks is still live (store.AccessQuery.Token).
	Signature string

	// proof is the replay key of the request's DPoP proof, recorded in
	// the request's transaction (see update).
	proof *proofSlot
	// raw is the token as presented (not kept beyond the request).
	raw string
}

// proofSlot carries a validated DPoP proof's replay key from validation
// to the request's transaction.
type proofSlot struct {
	key string
	exp time.Time
}

type proofSlotKey struct{}

// txReplay is the Data API's dpop.ReplayCache: instead of recording the
// proof on its own (a transaction and a disk flush of its own), it hands
// the key to the request, whose transaction records it with what the
// request does (Tx.UseDPoPProof) or refuses the request as a replay.
type txReplay struct{}

func (txReplay) Seen(ctx context.Context, key string, exp time.Time) (bool, error) {
	slot, ok := ctx.Value(proofSlotKey{}).(*proofSlot)
	if !ok {
		return false, errors.New("dataapi: proof validated outside a request")
	}
	slot.key, slot.exp = dpop.KeyDigest(key), exp
	return false, nil
}

// errReplayed is a request whose DPoP proof was already used.
var errReplayed = dpop.ErrResourceInvalidProof.WithHint("The DPoP proof was used before.")

// ErrInactive is what Introspect returns for an unknown, expired or
// revoked token.
var ErrInactive = errors.New("dataapi: token inactive")

// Policy is the part of the policy engine the Data API asks.
type Policy interface {
	Access(ctx context.Context, q policy.AccessRequest) (broker.Decision, error)
	Windows(c broker.Consent, current broker.TermsVersion) ([]broker.Duration, error)
}

// Vault opens and writes vault records inside a store transaction.
type Vault interface {
	RecordsTx(ctx context.Context, tx store.Tx, customer broker.CustomerID, categories ...string) ([]broker.Record, error)
	// OpenRecords opens sealed records with the wrapped key the caller
	// read already (store.AccessContext's Records and Key).
	OpenRecords(k broker.CustomerKey, customer broker.CustomerID, sealed []broker.SealedRecord, categories ...string) ([]broker.Record, error)
	PutTx(ctx context.Context, tx store.Tx, r broker.Record) error
}

// Config wires the Data API.
type Config struct {
	Store  store.Store
	Policy Policy
	Vault  Vault
	// Introspect checks an access token; ErrInactive when it is not live.
	Introspect func(ctx context.Context, token string) (Token, error)
	// DPoP checks proofs; its replay cache and nonces are shared with the
	// authorization server.
	DPoP *dpop.Validator
	// PublicURL is the origin firms address (e.g. https://steward.example):
	// DPoP proofs' htu is checked against it, never against Host.
	PublicURL string
	// Kick, if set, wakes the ledger sequencer after a commit that staged
	// an entry.
	Kick func()
	// MaxBatch is the most fetches one disclosure transaction serves and
	// Batches how many such transactions run at once (see committer);
	// zero means DefaultMaxBatch and DefaultBatches, and MaxBatch 1 gives
	// every fetch a transaction of its own.
	MaxBatch, Batches int
	// Metrics, if set, receives the Data API's metrics.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
	Now     func() time.Time
}

// API is the Data API handler.
type API struct {
	cfg    Config
	router chi.Router
	// dpop is cfg.DPoP recording proofs in the request's transaction.
	dpop *dpop.Validator
	// windows guesses each consent's frequency windows (see access).
	windows *memo[broker.ConsentID, []broker.Duration]
	// disclosures group-commits fetches (see committer).
	disclosures *committer
	// tokens remembers introspected tokens for fetches (see maxTokenMemo).
	tokens *memo[[sha256.Size]byte, Token]
}

// New builds the Data API. Mount its Handler at the server's root: its
// routes carry their full /v1 paths.
func New(cfg Config) (*API, error) {
	switch {
	case cfg.Store == nil, cfg.Policy == nil, cfg.Vault == nil, cfg.Introspect == nil, cfg.DPoP == nil:
		return nil, fmt.Errorf("%w: dataapi needs a store, a policy, a vault, an introspector and a DPoP validator", broker.ErrInvalid)
	case !strings.HasPrefix(cfg.PublicURL, "http://") && !strings.HasPrefix(cfg.PublicURL, "https://"):
		return nil, fmt.Errorf("%w: dataapi public URL %q must be absolute", broker.ErrInvalid, cfg.PublicURL)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Kick == nil {
		cfg.Kick = func() {}
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Batches <= 0 {
		cfg.Batches = DefaultBatches
	}
	a := &API{cfg: cfg, dpop: cfg.DPoP.WithReplay(txReplay{}),
		windows: newMemo[broker.ConsentID, []broker.Duration](maxWindowGuesses), tokens: newMemo[[sha256.Size]byte, Token](maxTokenMemo)}
	var err error
	if a.disclosures, err = newCommitter(a, cfg.MaxBatch, cfg.Batches, cfg.Metrics); err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	r.Get("/v1/consents/{id}/data", a.withLiveToken(a.fetch))
	r.Post("/v1/consents/{id}/returned-data", a.withToken(a.returnData))
	r.Get("/v1/consents/{id}", a.withToken(a.consent))
	r.Post("/v1/consents/{id}/deletion", a.withToken(a.attestDeletion))
	r.Get("/v1/firm/consents", a.withToken(a.listConsents))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusNotFound, Type: httpapi.ProblemType + "not-found", Title: "Not found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusMethodNotAllowed, Type: httpapi.ProblemType + "method-not-allowed",
			Title: "Method not allowed"})
	})
	a.router = r
	return a, nil
}

// Routes are the path patterns the API serves, for mounting.
var Routes = []string{"/v1/consents/*", "/v1/firm/*"}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

func (a *API) now() time.Time { return a.cfg.Now().UTC() }

// withToken authenticates the request's DPoP-bound access token and passes
// it on; every refusal is a 401 with a DPoP challenge, and is logged.
func (a *API) withToken(h func(http.ResponseWriter, *http.Request, Token)) http.HandlerFunc {
	return a.authenticated(false, h)
}

// withLiveToken is withToken for a handler whose transaction checks that
// the token is still live (store.AccessQuery.Token): what introspection
// said of a token is remembered (API.tokens), so only the first request
// with a token introspects it.
func (a *API) withLiveToken(h func(http.ResponseWriter, *http.Request, Token)) http.HandlerFunc {
	return a.authenticated(true, h)
}

func (a *API) authenticated(memo bool, h func(http.ResponseWriter, *http.Request, Token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := a.authenticate(r, memo)
		if err != nil {
			a.refuseToken(w, r, err)
			return
		}
		h(w, r, tok)
	}
}

func (a *API) authenticate(r *http.Request, memo bool) (Token, error) {
	raw, _, err := dpop.AccessToken(r.Header.Get("Authorization"))
	if err != nil {
		return Token{}, err
	}
	tok, seen := Token{}, false
	if memo {
		tok, seen = a.tokens.get(tokenKey(raw))
	}
	if !seen {
		tok, err = a.cfg.Introspect(r.Context(), raw)
		if errors.Is(err, ErrInactive) {
			return Token{}, errInactive
		}
		if err != nil {
			return Token{}, err
		}
		if tok.FirmID == "" {
			return Token{}, dpop.ErrInvalidToken.WithHint("The access token was not issued to a firm.")
		}
		if memo {
			if tok.Signature == "" {
				return Token{}, errors.New("dataapi: introspection gave no token signature to check")
			}
			a.tokens.put(tokenKey(raw), tok)
		}
	}
	slot := &proofSlot{}
	ctx := context.WithValue(r.Context(), proofSlotKey{}, slot)
	if _, err := a.dpop.CheckBinding(ctx, dpop.PresentationFrom(r, a.cfg.PublicURL+r.URL.EscapedPath()), tok.JKT); err != nil {
		return Token{}, err
	}
	if slot.key == "" {
		return Token{}, errors.New("dataapi: the DPoP validator recorded no proof")
	}
	tok.proof, tok.raw = slot, raw
	return tok, nil
}

// errInactive answers a token that is not (or no longer) live.
var errInactive = dpop.ErrInvalidToken.WithHint("The access token is not active.")

// The tokens memo (API.tokens) remembers, by the SHA-256 of the token,
// what introspection said of tokens already seen: their client, firm,
// consent, scopes, DPoP key and stored key, none of which ever changes for
// a token. What can change (the token revoked or expired, its client
// disabled, its firm suspended) is checked in each fetch's own
// transaction, under the consent's lock, so a remembered token is never
// trusted beyond what the database says at that moment. Only a token
// introspection accepted (its HMAC checked) is remembered.
const maxTokenMemo = 50_000 // a few hundred bytes each

func tokenKey(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }

// memo is a map that forgets everything when it reaches limit entries.
type memo[K comparable, V any] struct {
	mu    sync.Mutex
	m     map[K]V
	limit int
}

func newMemo[K comparable, V any](limit int) *memo[K, V] { return &memo[K, V]{limit: limit} }

func (c *memo[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *memo[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.limit {
		c.m = make(map[K]V)
	}
	c.m[k] = v
}

func (c *memo[K, V]) forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

// update runs fn in a read-write transaction that first records the
// request's DPoP proof, so a replayed proof is refused and an accepted
// one is remembered exactly when what the request did commits. (A request
// that fails and rolls back leaves its proof unrecorded; it changed
// nothing, so replaying it gains nothing.)
func (a *API) update(ctx context.Context, tok Token, fn func(tx store.Tx) error) error {
	err := a.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if tok.proof == nil {
			return errors.New("dataapi: no DPoP proof to record")
		}
		if err := tx.UseDPoPProof(ctx, tok.proof.key, tok.proof.exp, a.now()); err != nil {
			return err
		}
		return fn(tx)
	})
	// The store may report a replay with the statement or the commit the
	// proof went with.
	if errors.Is(err, store.ErrProofReplayed) {
		return errReplayed
	}
	return err
}

// refuseToken answers a request whose token or proof was refused.
func (a *API) refuseToken(w http.ResponseWriter, r *http.Request, err error) {
	var oe interface{ StatusCode() int }
	if !errors.As(err, &oe) {
		httpapi.WriteError(w, r, a.cfg.Logger, err)
		return
	}
	if n, ok := dpop.NonceFromError(err); ok {
		w.Header().Set(dpop.NonceHeader, n)
	}
	w.Header().Set("WWW-Authenticate", dpop.WWWAuthenticate(err, a.cfg.DPoP.Algorithms()))
	a.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "data api refused a token",
		slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.Any("error", err))
	httpapi.WriteProblem(w, r, httpapi.Problem{Status: http.StatusUnauthorized, Type: httpapi.ProblemType + "unauthenticated",
		Title: "Authentication required", Detail: "Present a live DPoP-bound access token and a DPoP proof signed by its key."})
}

// consentID is the consent named in the path, if tok may name it: a
// consent token only its own consent, a firm token (when firmTokenOK)
// any; the consent must then also be the token's firm's (see ownConsent).
// Any mismatch is "not found", so a firm learns nothing about consents
// that are not its own.
func consentID(r *http.Request, tok Token, firmTokenOK bool) (broker.ConsentID, error) {
	id, err := broker.ParseConsentID(chi.URLParam(r, "id"))
	if err != nil {
		return "", fmt.Errorf("consent id: %w", broker.ErrNotFound)
	}
	switch {
	case tok.ConsentID != "" && tok.ConsentID != id:
		return "", fmt.Errorf("token for %s used on %s: %w", tok.ConsentID, id, broker.ErrNotFound)
	case tok.ConsentID == "" && !(firmTokenOK && hasScope(tok, ScopeFirm)):
		return "", fmt.Errorf("firm token used on consent %s: %w", id, broker.ErrForbidden)
	}
	return id, nil
}

// ownConsent refuses a consent of another firm than tok's.
func ownConsent(c broker.Consent, tok Token) error {
	if c.FirmID != tok.FirmID {
		return fmt.Errorf("firm %s asked for %s of firm %s: %w", tok.FirmID, c.ID, c.FirmID, broker.ErrNotFound)
	}
	return nil
}

// consentFor reads (locking, in an update) the consent named in the path
// for tok.
func (a *API) consentFor(ctx context.Context, tx store.Tx, r *http.Request, tok Token, firmTokenOK bool) (broker.Consent, error) {
	id, err := consentID(r, tok, firmTokenOK)
	if err != nil {
		return broker.Consent{}, err
	}
	c, err := tx.GetConsent(ctx, id)
	if err != nil {
		return broker.Consent{}, err
	}
	return c, ownConsent(c, tok)
}

// accessContext reads (locking, in an update) the consent named in the
// path for tok with everything its access decision at now depends on,
// including the disclosure counts in its frequency windows, in one round
// trip where the store pipelines.
func (a *API) accessContext(ctx context.Context, tx store.Tx, r *http.Request, tok Token, firmTokenOK bool, now time.Time) (access, error) {
	id, err := consentID(r, tok, firmTokenOK)
	if err != nil {
		return access{}, err
	}
	guess, _ := a.windows.get(id)
	ac, err := tx.ReadAccessContext(ctx, id, store.AccessQuery{Since: since(guess, now)})
	if err != nil {
		return access{}, err
	}
	return a.access(ctx, tx, tok, ac, guess, now)
}

// access checks that the consent of ac (read, with counts in the windows
// guess, in tx) is tok's firm's, and builds the access decision's input
// at now: the consent's frequency windows are worked out from ac and, if
// the guess missed (first request, or the consent or terms changed),
// counted again, still under the consent's lock.
func (a *API) access(ctx context.Context, tx store.Tx, tok Token, ac store.AccessContext, guess []broker.Duration, now time.Time) (access, error) {
	if err := ownConsent(ac.Consent, tok); err != nil {
		return access{}, err
	}
	windows, err := a.cfg.Policy.Windows(ac.Consent, ac.Terms)
	if err != nil {
		return access{}, err
	}
	counts := ac.Counts
	if !slices.Equal(windows, guess) {
		if counts, err = tx.CountDisclosuresSince(ctx, ac.Consent.ID, since(windows, now)); err != nil {
			return access{}, err
		}
		a.windows.put(ac.Consent.ID, windows)
	}
	in := policy.AccessRequest{Customer: ac.Customer, Firm: ac.Firm, Consent: ac.Consent, Explicit: ac.Explicit, Terms: ac.Terms,
		Counts: make(map[broker.Duration]int, len(windows)), Now: now}
	for i, w := range windows {
		in.Counts[w] = counts[i]
	}
	return access{AccessContext: ac, in: in}, nil
}

// access is a consent's access context with the access decision's input
// (all but what the request asks for).
type access struct {
	store.AccessContext
	in policy.AccessRequest
}

// since is when each window began at now.
func since(windows []broker.Duration, now time.Time) []time.Time {
	if len(windows) == 0 {
		return nil
	}
	out := make([]time.Time, len(windows))
	for i, w := range windows {
		out[i] = w.SubtractFrom(now)
	}
	return out
}

// The windows memo (API.windows) remembers each consent's frequency
// windows from its last request, so that the next one can count its
// disclosures in them in the same round trip that reads and locks the
// consent. It is only a guess: access works the windows out again from
// what that read returns, and counts again if they differ.
const maxWindowGuesses = 100_000 // about 100 bytes each

func hasScope(t Token, s string) bool {
	for _, g := range t.Scopes {
		if g == s {
			return true
		}
	}
	return false
}

// writeError maps err to a problem, logging refusals of authenticated
// callers at Info so that attempts on other firms' consents are visible.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, tok Token, err error) {
	if errors.Is(err, broker.ErrNotFound) || errors.Is(err, broker.ErrForbidden) {
		a.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "data api refused a request", slog.String("path", r.URL.Path),
			slog.String("firm", string(tok.FirmID)), slog.String("client", string(tok.ClientID)), slog.Any("error", err))
	}
	if errors.Is(err, errReplayed) {
		a.refuseToken(w, r, err)
		return
	}
	httpapi.WriteError(w, r, a.cfg.Logger, err)
}

const slogInfo = slog.LevelInfo

// attrs are the log attributes of a refused or recorded request.
func attrs(tok Token, r *http.Request, decision string) []slog.Attr {
	return []slog.Attr{slog.String("path", r.URL.Path), slog.String("firm", string(tok.FirmID)),
		slog.String("client", string(tok.ClientID)), slog.String("consent", string(tok.ConsentID)), slog.String("decision_hash", decision)}
}

// LeafHash is the receipt form of a leaf hash: standard padded base64,
// as in broker.Receipt.LeafHash and broker.Disclosure.ReceiptID.
func LeafHash(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }
