package oauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/web"
)

func TestReplayCache(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		now := time.Now()
		clock := func() time.Time { return now }
		// Two replicas, each with its own cache on the one database.
		a, b := oauth.NewReplayCache(s.OAuth(), clock), oauth.NewReplayCache(s.OAuth(), clock)
		key := "jkt." + strings.Repeat("j", 5000) // long jtis are hashed
		if seen, err := a.Seen(ctx, key, now.Add(time.Minute)); err != nil || seen {
			t.Fatalf("first Seen = %v, %v", seen, err)
		}
		if seen, err := b.Seen(ctx, key, now.Add(time.Minute)); err != nil || !seen {
			t.Fatalf("Seen on another replica = %v, %v; want seen", seen, err)
		}

		// Concurrent offers of one key: exactly one wins.
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			c := a
			if i%2 == 1 {
				c = b
			}
			wg.Go(func() {
				seen, err := c.Seen(ctx, "race", now.Add(time.Minute))
				if err != nil {
					t.Error(err)
				} else if !seen {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if fresh.Load() != 1 {
			t.Errorf("%d concurrent offers accepted, want 1", fresh.Load())
		}

		// After expiry a key may be recorded again, and Cleanup drops it.
		now = now.Add(2 * time.Minute)
		if seen, err := a.Seen(ctx, key, now.Add(time.Minute)); err != nil || seen {
			t.Fatalf("Seen after expiry = %v, %v", seen, err)
		}
		n, err := s.OAuth().Cleanup(ctx, now.Add(2*time.Minute))
		if err != nil || n != 2 {
			t.Fatalf("Cleanup = %d, %v; want 2 proofs", n, err)
		}
	})
}

// TestDPoPReplayAcrossReplicas sends one proof to two authorization
// servers (replicas behind one issuer) on the same database: the second
// refuses it.
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		one := newDPoPEnv(t, s)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		two, err := oauth.New(oauth.Config{Issuer: one.srv.URL, SigningKey: key, Secret: []byte(strings.Repeat("s", 32)), Store: s,
			Templates: web.Templates, DPoP: newValidator(t, s)}, s.OAuth(), consentFunc(one.svc))
		if err != nil {
			t.Fatal(err)
		}
		twoSrv := httptest.NewServer(two.Handler())
		defer twoSrv.Close()

		k := newDPoPKey(t, jose.ES256)
		pk := newPKCE()
		parForm := func() url.Values {
			return one.authForm(t, one.client, url.Values{"response_type": {"code"}, "client_id": {string(one.client.id)},
				"redirect_uri": {redirectURI}, "code_challenge": {pk.challenge}, "code_challenge_method": {"S256"},
				"state": {"state-1234567890"}, "authorization_details": {details}})
		}
		if st, out := one.postDPoP(t, k, oauth.PathPAR, parForm); st != http.StatusCreated {
			t.Fatalf("par: %d %v", st, out)
		}
		proof := k.proof(http.MethodPost, one.srv.URL+oauth.PathPAR) // with the nonce just learnt
		send := func(base string) (int, string) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+oauth.PathPAR, strings.NewReader(parForm().Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(dpop.Header, proof)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if st, body := send(one.srv.URL); st != http.StatusCreated {
			t.Fatalf("first use of the proof: %d %s", st, body)
		}
		if st, body := send(twoSrv.URL); st != http.StatusBadRequest || !strings.Contains(body, dpop.CodeInvalidDPoPProof) {
			t.Fatalf("proof replayed at another replica: %d %s, want 400 %s", st, body, dpop.CodeInvalidDPoPProof)
		}
	})
}
