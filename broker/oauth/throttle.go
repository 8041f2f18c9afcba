package oauth

import (
	"context"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of the login throttle (Config.LoginMaxFailures and friends).
const (
	// DefaultLoginMaxFailures is how many failed sign-ins one handle may
	// have within the window before sign-in is refused for it.
	DefaultLoginMaxFailures = 5
	// DefaultLoginMaxFailuresPerIP is the same for one client address
	// (IPv6: one /64), higher because many people may share one.
	DefaultLoginMaxFailuresPerIP = 20
	// DefaultLoginFailureWindow is how long a failed sign-in counts.
	DefaultLoginFailureWindow = 15 * time.Minute
)

// throttle names the subjects a sign-in attempt counts against: the
// handle, by a keyed hash so the table holds no handles, and the client
// address. Failures are counted in Storage, so the limit holds across
// replicas.
type throttle struct {
	handle, ip string
}

func (p *Provider) throttleFor(r *http.Request, handle string) throttle {
	h := p.mac("login throttle", strings.ToLower(strings.TrimSpace(handle)))
	return throttle{handle: "handle:" + hex.EncodeToString(h[:16]), ip: "ip:" + p.clientIP(r)}
}

// clientIP is the address throttling counts per: Config.ClientIP's answer,
// or the connection's peer; an IPv6 address counts as its /64.
func (p *Provider) clientIP(r *http.Request) string {
	s := ""
	if p.cfg.ClientIP != nil {
		s = p.cfg.ClientIP(r)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		s = host
	} else {
		s = r.RemoteAddr
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	a = a.Unmap()
	if a.Is6() {
		if pfx, err := a.Prefix(64); err == nil {
			return pfx.String()
		}
	}
	return a.String()
}

// blocked reports whether either subject has reached its limit and, if
// so, how long until it may try again.
func (p *Provider) blocked(ctx context.Context, t throttle) (bool, time.Duration, error) {
	now := p.now()
	var wait time.Duration
	for _, c := range []struct {
		subject string
		max     int
	}{{t.handle, p.cfg.LoginMaxFailures}, {t.ip, p.cfg.LoginMaxFailuresPerIP}} {
		n, oldest, err := p.storage.LoginFailures(ctx, c.subject, now)
		if err != nil {
			return false, 0, err
		}
		if n >= c.max {
			wait = max(wait, oldest.Sub(now), time.Second)
		}
	}
	return wait > 0, wait, nil
}

func (p *Provider) failed(ctx context.Context, t throttle) error {
	now := p.now()
	return p.storage.AddLoginFailure(ctx, []string{t.handle, t.ip}, now, now.Add(p.cfg.LoginFailureWindow))
}

// retryAfter is an RFC 9110 Retry-After value: whole seconds, rounded up.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// waitText says d in minutes for the login page, rounded up.
func waitText(d time.Duration) string {
	m := int(math.Ceil(d.Minutes()))
	if m <= 1 {
		return "a minute"
	}
	return strconv.Itoa(m) + " minutes"
}

// keyedMutex is a set of mutexes by key, each dropped when nobody holds
// or waits for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
