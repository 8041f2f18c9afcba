package oauth_test

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// TestJWKSURIOnLoopback: a client whose jwks_uri is on this machine is
// refused (invalid_client) unless the operator's knob allows loopback, as
// the tests and the demo do.
func TestJWKSURIOnLoopback(t *testing.T) {
	c, jwks := newKeyClient(t, jose.ES256)
	keys := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	}))
	defer keys.Close()
	roots := x509.NewCertPool()
	roots.AddCert(keys.Certificate())

	for _, tc := range []struct {
		name     string
		loopback bool
		status   int
	}{{"refused", false, http.StatusUnauthorized}, {"allowed by the knob", true, http.StatusOK}} {
		t.Run(tc.name, func(t *testing.T) {
			s := backendtest.Open(t, "")
			e := newEnvConfig(t, s, func(cfg *oauth.Config) { cfg.JWKSAllowLoopback, cfg.JWKSRootCAs = tc.loopback, roots })
			if err := s.Update(t.Context(), func(tx store.Tx) error {
				return tx.CreateClient(t.Context(), broker.Client{ID: c.id, FirmID: e.firm.ID, Name: "Remote keys", RedirectURIs: []string{redirectURI},
					JWKSURI: keys.URL + "/jwks", Status: broker.ClientActive, CreatedAt: storetest.Now})
			}); err != nil {
				t.Fatal(err)
			}
			st, out := e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"client_credentials"}}))
			if st != tc.status || (st != http.StatusOK && out["error"] != "invalid_client") {
				t.Errorf("token with keys at %s: %d %v, want %d", keys.URL, st, out, tc.status)
			}
		})
	}
}

// TestJWKSRefetchBounded: assertions that do not verify (anyone can send
// them for a known client id) do not make Steward fetch the client's
// jwks_uri again and again.
func TestJWKSRefetchBounded(t *testing.T) {
	c, jwks := newKeyClient(t, jose.ES256)
	var hits atomic.Int32
	keys := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	}))
	defer keys.Close()
	roots := x509.NewCertPool()
	roots.AddCert(keys.Certificate())
	s := backendtest.Open(t, "")
	e := newEnvConfig(t, s, func(cfg *oauth.Config) { cfg.JWKSAllowLoopback, cfg.JWKSRootCAs = true, roots })
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		return tx.CreateClient(t.Context(), broker.Client{ID: c.id, FirmID: e.firm.ID, Name: "Remote keys", RedirectURIs: []string{redirectURI},
			JWKSURI: keys.URL + "/jwks", Status: broker.ClientActive, CreatedAt: storetest.Now})
	}); err != nil {
		t.Fatal(err)
	}
	junk, _ := newKeyClient(t, jose.ES256)
	junk.id = c.id
	for range 6 {
		if st, out := e.post(t, oauth.PathToken, e.authForm(t, junk, url.Values{"grant_type": {"client_credentials"}})); st != http.StatusUnauthorized {
			t.Fatalf("junk assertion: %d %v", st, out)
		}
	}
	if st, out := e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"client_credentials"}})); st != http.StatusOK {
		t.Fatalf("real assertion: %d %v", st, out)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("jwks_uri fetched %d times for 6 junk assertions and one real one, want 1", n)
	}
}
