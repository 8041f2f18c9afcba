package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/notify"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
)

// loadOrCreateWebhookKey reads the Ed25519 key webhooks are signed with
// (base64 seed, mode 0600), creating it on first start. The key id is
// derived from the public key.
func loadOrCreateWebhookKey(path string) (ed25519.PrivateKey, string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, "", err
		}
		b = []byte(base64.StdEncoding.EncodeToString(seed) + "\n")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, "", fmt.Errorf("write webhook key: %w", err)
		}
	} else if err != nil {
		return nil, "", fmt.Errorf("read webhook key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, "", fmt.Errorf("webhook key file %s: want a base64 Ed25519 seed", path)
	}
	key := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(key.Public().(ed25519.PublicKey))
	return key, "webhook-" + hex.EncodeToString(sum[:6]), nil
}

// consentService wires the consent use cases to the policy engine.
func consentService(s store.Store, eng *policy.Engine) *consent.Service {
	return consent.New(s, func(ctx context.Context, c broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
		return eng.Consent(ctx, policy.ConsentRequest{Customer: c, Firm: f, Terms: tv, Request: req, Now: now})
	}, nil)
}

// expiryInterval is how often the sweeper looks for consents whose time is up.
const expiryInterval = 10 * time.Second

// sweepExpired expires due consents until ctx ends. Every replica may run
// it: each consent moves under its row lock and version check.
func sweepExpired(ctx context.Context, svc *consent.Service, log *slog.Logger) {
	t := time.NewTicker(expiryInterval)
	defer t.Stop()
	for {
		for {
			n, err := svc.ExpireDue(ctx, 500)
			if err != nil && ctx.Err() == nil {
				log.LogAttrs(ctx, slog.LevelError, "expiry sweep failed", slog.Any("error", err))
			}
			if n > 0 {
				log.LogAttrs(ctx, slog.LevelInfo, "consents expired", slog.Int("count", n))
			}
			if n < 500 || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startWorkers starts the webhook sender and the expiry sweeper. It
// returns the sender (for its JWKS) and a stop func that ends both and
// waits for a round in progress to finish.
func startWorkers(ctx context.Context, c config, s store.Store, eng *policy.Engine, log *slog.Logger) (*notify.Sender, func(), error) {
	path := c.WebhookKeyFile
	if path == "" {
		path = filepath.Join(c.DataDir, "webhook.key")
	}
	key, kid, err := loadOrCreateWebhookKey(path)
	if err != nil {
		return nil, nil, err
	}
	snd, err := notify.New(s, notify.Config{Key: key, KeyID: kid, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { snd.Run(ctx) })
	wg.Go(func() { sweepExpired(ctx, consentService(s, eng), log) })
	return snd, func() { cancel(); wg.Wait() }, nil
}
