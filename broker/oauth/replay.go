package oauth

import (
	"context"
	"errors"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// ReplayCache is a dpop.ReplayCache kept in Storage, so every replica on
// one database refuses a proof any of them accepted (RFC 9449 §11.1).
// Keys are stored as their SHA-256, which bounds the row size whatever
// jti a client sends. Provider.Cleanup deletes expired keys.
type ReplayCache struct {
	storage Storage
	now     func() time.Time
}

var _ dpop.ReplayCache = (*ReplayCache)(nil)

// NewReplayCache returns a replay cache in storage. now is the clock
// expiry is judged by, time.Now if nil; it MUST be the Validator's clock.
func NewReplayCache(storage Storage, now func() time.Time) *ReplayCache {
	if now == nil {
		now = time.Now
	}
	return &ReplayCache{storage: storage, now: now}
}

// Seen implements dpop.ReplayCache.
func (c *ReplayCache) Seen(ctx context.Context, key string, exp time.Time) (bool, error) {
	err := c.storage.UseDPoPProof(ctx, dpop.KeyDigest(key), exp, c.now())
	switch {
	case errors.Is(err, broker.ErrConflict):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}
