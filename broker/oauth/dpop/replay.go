package dpop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ReplayCache remembers proofs that have been accepted, so that each proof
// is accepted at most once (RFC 9449 §11.1).
//
// Seen atomically records key until exp and reports whether key had already
// been recorded and has not yet expired. Implementations MUST be safe for
// concurrent use, MUST be shared by every replica that validates proofs for
// the same URIs, and MUST NOT forget a key before exp. On error the caller
// refuses the proof (fail closed). The in-process MemoryReplayCache serves a
// single replica and tests; a SQL-backed one (Steward's oauth.ReplayCache)
// serves a fleet.
type ReplayCache interface {
	Seen(ctx context.Context, key string, exp time.Time) (bool, error)
}

// ReplayKey is the replay key of a proof issued at iat by the key with
// thumbprint jkt, with the given jti: the proof's iat in whole Unix
// seconds (13 digits), its key's thumbprint and its jti. The same proof
// always gives the same key, so a captured proof replayed is refused; the
// iat, which nobody without the private key can change, leads so that
// keys sort by when their proofs were made (see KeyDigest).
func ReplayKey(iat time.Time, jkt, jti string) string {
	return fmt.Sprintf("%0*d.%s.%s", replayKeyTimeDigits, iat.Unix(), jkt, jti)
}

// replayKeyTimeDigits is the width of a replay key's leading iat: enough
// for every iat Validate accepts (at most 1<<40 seconds).
const replayKeyTimeDigits = 13

// KeyDigest is how a replay key is stored in a shared table: its leading
// iat as it is, then the SHA-256 of the whole key in hex, which bounds the
// row whatever jti a client sends. Keys stored this way sort by when their
// proofs were made, so a table's unique index takes each new key at its
// recent end, in pages already cached, rather than at a random page of an
// index as large as a window's proofs; the purge of expired keys empties
// whole pages at the old end. Every writer of one table (the
// authorization server's cache, a resource server recording proofs in its
// own transactions) uses it, so they refuse each other's proofs.
func KeyDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return key[:min(len(key), replayKeyTimeDigits)] + "." + hex.EncodeToString(sum[:])
}

// DefaultReplayCacheSize bounds a MemoryReplayCache made with size 0.
const DefaultReplayCacheSize = 1 << 20

// ErrReplayCacheFull is returned by MemoryReplayCache when it holds its
// maximum number of unexpired keys; the proof is then refused.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// MemoryReplayCache is an in-process ReplayCache for one replica.
type MemoryReplayCache struct {
	max int
	now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time
}

// NewMemoryReplayCache returns an empty cache holding at most size unexpired
// keys (DefaultReplayCacheSize if size <= 0). now is the clock expiry is
// judged by, time.Now if nil; it MUST be the Validator's clock.
func NewMemoryReplayCache(size int, now func() time.Time) *MemoryReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{max: size, now: now, seen: make(map[string]time.Time)}
}

// Seen implements ReplayCache.
func (c *MemoryReplayCache) Seen(_ context.Context, key string, exp time.Time) (bool, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[key]; ok && now.Before(e) {
		return true, nil
	}
	c.sweep(now, sweepSample)
	if len(c.seen) >= c.max {
		c.sweep(now, len(c.seen))
	}
	if len(c.seen) >= c.max {
		return false, ErrReplayCacheFull
	}
	c.seen[key] = exp
	return false, nil
}

// sweepSample is how many keys each Seen examines for expiry. Map
// iteration starts at a random place, so expired keys are dropped at a
// steady rate without ever scanning the whole map while holding the lock,
// except when the cache is full.
const sweepSample = 8

// sweep examines up to n keys and drops the expired ones.
func (c *MemoryReplayCache) sweep(now time.Time, n int) {
	for k, e := range c.seen {
		if n--; n < 0 {
			return
		}
		if !now.Before(e) {
			delete(c.seen, k)
		}
	}
}

// Len reports the number of keys held, expired or not.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
