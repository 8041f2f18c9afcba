package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DefaultNonceLifetime is how long an issued nonce stays acceptable.
const DefaultNonceLifetime = 5 * time.Minute

// nonceStep is the granularity of nonce timestamps: every request within one
// step is given the same nonce, which lets clients reuse it.
const nonceStep = 10 * time.Second

// MinNonceKeySize is the smallest accepted nonce key, in bytes.
const MinNonceKeySize = 32

const (
	nonceVersion = 1
	nonceMACSize = 16
	nonceSize    = 1 + 8 + nonceMACSize
)

// Nonces issues and checks server-provided DPoP nonces (RFC 9449 §8, §9).
//
// A nonce is base64url(version || big-endian Unix time || HMAC-SHA-256(key,
// label || version || time)[:16]). Nothing is stored, so every replica
// configured with the same keys accepts every other replica's nonces.
//
// Keys rotate without downtime: the first key signs new nonces and every key
// verifies. To rotate, deploy [new, old] everywhere, wait for the nonce
// lifetime, then deploy [new]. Keys MUST be secret, random and at least
// MinNonceKeySize bytes.
type Nonces struct {
	keys     [][]byte
	lifetime time.Duration
	leeway   time.Duration
}

// NewNonces returns a nonce source. lifetime 0 means DefaultNonceLifetime.
func NewNonces(lifetime time.Duration, keys ...[]byte) (*Nonces, error) {
	if len(keys) == 0 {
		return nil, errors.New("dpop: nonces need at least one key")
	}
	for i, k := range keys {
		if len(k) < MinNonceKeySize {
			return nil, fmt.Errorf("dpop: nonce key %d is %d bytes, want at least %d", i, len(k), MinNonceKeySize)
		}
	}
	if lifetime == 0 {
		lifetime = DefaultNonceLifetime
	}
	if lifetime < nonceStep {
		return nil, fmt.Errorf("dpop: nonce lifetime %v shorter than %v", lifetime, nonceStep)
	}
	ks := make([][]byte, len(keys))
	for i, k := range keys {
		ks[i] = append([]byte(nil), k...)
	}
	return &Nonces{keys: ks, lifetime: lifetime, leeway: nonceStep}, nil
}

// Issue returns the nonce for time now.
func (n *Nonces) Issue(now time.Time) string {
	ts := now.Truncate(nonceStep).Unix()
	var b [nonceSize]byte
	b[0] = nonceVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(ts))
	copy(b[9:], n.mac(n.keys[0], b[:9]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether nonce was issued by a holder of one of the keys and
// is neither older than the lifetime nor from the future.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	if len(nonce) != base64.RawURLEncoding.EncodedLen(nonceSize) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceSize || b[0] != nonceVersion {
		return false
	}
	ok := false
	for _, k := range n.keys {
		if hmac.Equal(b[9:], n.mac(k, b[:9])) {
			ok = true
		}
	}
	if !ok {
		return false
	}
	ts := int64(binary.BigEndian.Uint64(b[1:9]))
	if ts < 0 {
		return false
	}
	t := time.Unix(ts, 0)
	return !t.After(now.Add(n.leeway)) && now.Sub(t) <= n.lifetime
}

func (n *Nonces) mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("steward dpop nonce\x00"))
	m.Write(msg)
	return m.Sum(nil)[:nonceMACSize]
}
