package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

// Limits on fetching a client's jwks_uri.
const (
	// MaxJWKSSize is the largest JWK Set document accepted from a jwks_uri.
	MaxJWKSSize = 64 << 10
	// JWKSFetchTimeout bounds one fetch, connection to last byte.
	JWKSFetchTimeout = 5 * time.Second
	// JWKSCacheTTL is how long a fetched set is reused; a signature that
	// does not verify refetches at once (key rotation).
	JWKSCacheTTL  = 10 * time.Minute
	maxJWKSCached = 1024
	// JWKSMinRefetch is the least time between two fetches of one
	// jwks_uri: a refetch forced by a signature that does not verify
	// (which anyone can send, before the client is authenticated) within
	// it reuses the set just fetched, so junk assertions cannot make
	// Steward flood a firm's server.
	JWKSMinRefetch = 30 * time.Second
)

// errForbiddenAddress is why a dial to a refused address fails.
var errForbiddenAddress = errors.New("jwks_uri resolves to a loopback, private, link-local, shared, multicast or unspecified address")

// forbiddenPrefixes are ranges beyond those netip.Addr's predicates name
// that a jwks_uri may not reach: "this network", shared address space
// (CGNAT, RFC 6598), IETF protocol assignments, benchmarking, reserved
// and broadcast, documentation ranges, deprecated site-local IPv6, and the
// IPv6 prefixes that embed an IPv4 address (NAT64, 6to4, Teredo, SIIT),
// through which the IPv4 checks could be skirted.
var forbiddenPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "100::/64",
		"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", // documentation
		"2001::/32", "fec0::/10", "::ffff:0:0:0/96"} { // Teredo, site-local, SIIT
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// addressAllowed reports whether a jwks_uri fetch may connect to a; with
// loopback, loopback addresses are allowed too (tests, demo).
func addressAllowed(a netip.Addr, loopback bool) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return false
	case a.IsLoopback():
		return loopback
	case a.IsPrivate(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(),
		a.IsMulticast(), a.IsUnspecified():
		return false
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// jwksFetcher is the fosite.JWKSFetcherStrategy for clients' jwks_uri,
// built against server-side request forgery: https only, no proxy, no
// redirects, and every connection's address checked when it is dialled
// (net.Dialer.Control, after name resolution), so a name that resolves,
// or re-resolves, to an internal address is refused; bodies are capped at
// MaxJWKSSize and fetches at JWKSFetchTimeout.
type jwksFetcher struct {
	client *http.Client
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cachedJWKS
}

type cachedJWKS struct {
	set     *jose.JSONWebKeySet
	fetched time.Time
	exp     time.Time
}

var _ fosite.JWKSFetcherStrategy = (*jwksFetcher)(nil)

func newJWKSFetcher(allowLoopback bool, roots *x509.CertPool, now func() time.Time) *jwksFetcher {
	dialer := &net.Dialer{Timeout: JWKSFetchTimeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !addressAllowed(ap.Addr(), allowLoopback) {
			return fmt.Errorf("dial %s: %w", address, errForbiddenAddress)
		}
		return nil
	}}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would connect on our behalf, unchecked
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    JWKSFetchTimeout,
		ResponseHeaderTimeout:  JWKSFetchTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        time.Minute,
		ForceAttemptHTTP2:      true,
	}
	return &jwksFetcher{
		client: &http.Client{Transport: tr, Timeout: JWKSFetchTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("jwks_uri redirects are not followed") }},
		now:   now,
		cache: map[string]cachedJWKS{},
	}
}

// Resolve implements fosite.JWKSFetcherStrategy.
func (f *jwksFetcher) Resolve(ctx context.Context, location string, ignoreCache bool) (*jose.JSONWebKeySet, error) {
	now := f.now()
	f.mu.Lock()
	c, ok := f.cache[location]
	f.mu.Unlock()
	if ok && now.Before(c.exp) && (!ignoreCache || now.Before(c.fetched.Add(JWKSMinRefetch))) {
		return c.set, nil
	}
	set, err := f.fetch(ctx, location)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.cache) >= maxJWKSCached {
		for k := range f.cache { // drop one at random
			delete(f.cache, k)
			break
		}
	}
	f.cache[location] = cachedJWKS{set: set, fetched: now, exp: now.Add(JWKSCacheTTL)}
	f.mu.Unlock()
	return set, nil
}

func (f *jwksFetcher) fetch(ctx context.Context, location string) (*jose.JSONWebKeySet, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("jwks_uri %q: want an https URL", location)
	}
	ctx, cancel := context.WithTimeout(ctx, JWKSFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks_uri: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks_uri: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks_uri: %w", err)
	}
	if len(body) > MaxJWKSSize {
		return nil, fmt.Errorf("fetch jwks_uri: larger than %d bytes", MaxJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("fetch jwks_uri: %w", err)
	}
	return &set, nil
}
