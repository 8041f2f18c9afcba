// Package notify delivers signed webhooks to firms from the outbox that
// use cases fill inside their transactions (store.Tx.EnqueueWebhook).
//
// # Delivery contract
//
// A delivery is an HTTP POST of a JWS in compact serialization
// (Content-Type: application/jose), signed with Steward's webhook key
// (EdDSA; the public key is published as a JWKS), whose payload is
//
//	{"id": "whk_…", "type": "consent.revoked", "created_at": "…", "data": {…}}
//
// The id is stable across retries and also sent as the
// Steward-Delivery-Id header: delivery is at least once, so a receiver
// MUST treat a second delivery with the same id as a duplicate. Any 2xx
// answer is success. Anything else, including a timeout, is retried with
// exponential backoff (jittered) until MaxAttempts, after which the
// delivery is dead: it stays on the operator's dead-letter list and is
// never retried automatically.
//
// Several workers (one per replica) may run at once: each batch is leased
// in the store, so an attempt is made by one worker.
package notify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Defaults for Config.
const (
	DefaultMaxAttempts = 10
	DefaultBaseDelay   = 2 * time.Second
	DefaultMaxDelay    = time.Hour
	DefaultTimeout     = 10 * time.Second
	DefaultBatch       = 32
	DefaultInterval    = time.Second
)

// Config configures a Sender.
type Config struct {
	// Key signs deliveries. Required.
	Key ed25519.PrivateKey
	// KeyID names Key in the JWS header and the JWKS.
	KeyID string
	// Client sends the requests; nil means one with Timeout.
	Client *http.Client
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts before a delivery is dead; 0 means DefaultMaxAttempts.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff: BaseDelay·2^(n-1), capped,
	// with ±20% jitter. Zero means the defaults.
	BaseDelay, MaxDelay time.Duration
	// Batch is how many deliveries one round claims; 0 means DefaultBatch.
	Batch int
	// Interval is how often Run looks for due deliveries; 0 means DefaultInterval.
	Interval time.Duration
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sender delivers webhooks from the outbox.
type Sender struct {
	store  store.Store
	cfg    Config
	signer jose.Signer
}

// New returns a Sender.
func New(s store.Store, cfg Config) (*Sender, error) {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("notify: %w: an Ed25519 signing key is required", broker.ErrInvalid)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: cfg.Key, KeyID: cfg.KeyID}},
		(&jose.SignerOptions{}).WithType("steward-webhook+jws"))
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	return &Sender{store: s, cfg: cfg, signer: signer}, nil
}

// JWKS returns the public key set receivers verify deliveries with.
func (s *Sender) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: s.cfg.Key.Public(), KeyID: s.cfg.KeyID, Algorithm: string(jose.EdDSA), Use: "sig"}}}
}

// Event is what a delivery's payload says.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Enqueue adds a delivery to the outbox inside tx, to be sent after the
// transaction commits. data is the event's JSON object.
func Enqueue(ctx context.Context, tx store.Tx, firm broker.FirmID, url, eventType string, data any, now time.Time) (string, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("webhook data: %w", err)
	}
	d := broker.WebhookDelivery{ID: broker.NewWebhookID(), FirmID: firm, URL: url, EventType: eventType, Payload: b,
		State: broker.WebhookPending, NextAttemptAt: now, CreatedAt: now}
	return d.ID, tx.EnqueueWebhook(ctx, d)
}

// Run delivers due webhooks until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelError, "webhook round failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce claims one batch of due deliveries and attempts each, returning
// how many were delivered.
func (s *Sender) RunOnce(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	var batch []broker.WebhookDelivery
	lease := 2*s.cfg.Timeout + time.Minute
	if err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		batch, err = tx.ClaimWebhooks(ctx, now, s.cfg.Batch, lease)
		return err
	}); err != nil {
		return 0, err
	}
	delivered := 0
	for _, d := range batch {
		err := s.attempt(ctx, d)
		d.Attempts++
		switch {
		case err == nil:
			d.State, d.DeliveredAt, d.LastError = broker.WebhookDelivered, s.cfg.Now(), ""
			delivered++
		case d.Attempts >= s.cfg.MaxAttempts:
			d.State, d.LastError = broker.WebhookDead, err.Error()
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "webhook dead", slog.String("delivery", d.ID), slog.String("firm", string(d.FirmID)),
				slog.Int("attempts", d.Attempts), slog.Any("error", err))
		default:
			d.LastError, d.NextAttemptAt = err.Error(), s.cfg.Now().Add(s.backoff(d.Attempts))
			s.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "webhook attempt failed", slog.String("delivery", d.ID),
				slog.Int("attempts", d.Attempts), slog.Any("error", err))
		}
		if err := s.store.Update(ctx, func(tx store.Tx) error { return tx.FinishWebhook(ctx, d) }); err != nil {
			if errors.Is(err, broker.ErrNotFound) {
				continue // another worker finished it after our lease ran out
			}
			return delivered, err
		}
	}
	return delivered, nil
}

// backoff is the wait after the n-th failed attempt.
func (s *Sender) backoff(n int) time.Duration {
	d := s.cfg.BaseDelay << min(n-1, 30)
	if d <= 0 || d > s.cfg.MaxDelay {
		d = s.cfg.MaxDelay
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// maxErrorBody bounds how much of a failed answer is kept in last_error.
const maxErrorBody = 256

func (s *Sender) attempt(ctx context.Context, d broker.WebhookDelivery) error {
	ev, err := json.Marshal(Event{ID: d.ID, Type: d.EventType, CreatedAt: d.CreatedAt.UTC(), Data: d.Payload})
	if err != nil {
		return err
	}
	jws, err := s.signer.Sign(ev)
	if err != nil {
		return err
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader([]byte(compact)))
	if err != nil {
		return fmt.Errorf("bad webhook url: %w", err)
	}
	req.Header.Set("Content-Type", "application/jose")
	req.Header.Set("Steward-Delivery-Id", d.ID)
	req.Header.Set("Steward-Event", d.EventType)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return fmt.Errorf("answered %d: %q", resp.StatusCode, b)
}
