package notify_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/notify"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// receiver is a firm's webhook endpoint: it verifies each JWS against
// Steward's JWKS and applies each delivery id once, however often it
// arrives.
type receiver struct {
	t       *testing.T
	jwks    jose.JSONWebKeySet
	mode    atomic.Value // "ok", "down", "500", "slow"
	mu      sync.Mutex
	posts   int
	applied map[string]notify.Event
}

// counts reads the number of posts and of distinct effects.
func (rc *receiver) counts() (posts, applied int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.posts, len(rc.applied)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.posts++
	rc.mu.Unlock()
	switch rc.mode.Load() {
	case "down":
		// Drop the connection without answering, as a dead endpoint would.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case "500":
		http.Error(w, "internal error", 500)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get("Content-Type") != "application/jose" {
		rc.t.Errorf("content type %q", r.Header.Get("Content-Type"))
	}
	jws, err := jose.ParseSigned(string(body))
	if err != nil {
		rc.t.Errorf("not a JWS: %v", err)
		http.Error(w, "bad", 400)
		return
	}
	keys := rc.jwks.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		rc.t.Errorf("unknown key id %q", jws.Signatures[0].Header.KeyID)
		return
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		rc.t.Errorf("signature does not verify: %v", err)
		http.Error(w, "bad signature", 401)
		return
	}
	var ev notify.Event
	if err := json.Unmarshal(payload, &ev); err != nil || ev.ID != r.Header.Get("Steward-Delivery-Id") {
		rc.t.Errorf("event %s (%v) vs header %s", payload, err, r.Header.Get("Steward-Delivery-Id"))
	}
	rc.mu.Lock()
	rc.applied[ev.ID] = ev // idempotent: a duplicate changes nothing
	rc.mu.Unlock()
	if rc.mode.Load() == "slow" {
		time.Sleep(time.Second) // past the sender's timeout, after the effect
	}
	w.WriteHeader(http.StatusNoContent)
}

type fixture struct {
	store  backend.Migrator
	rc     *receiver
	srv    *httptest.Server
	firm   broker.Firm
	clock  atomic.Pointer[time.Time]
	newSnd func(t *testing.T) *notify.Sender
}

func setup(t *testing.T, s backend.Migrator) *fixture { return setupTimeout(t, s, 5*time.Second) }

// setupTimeout makes a fixture whose senders give up on an attempt after
// timeout. Tests that do not test timeouts use a generous one, so a busy
// machine cannot turn a 500 into a late-arriving post.
func setupTimeout(t *testing.T, s backend.Migrator, timeout time.Duration) *fixture {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	fx := &fixture{store: s, firm: storetest.NewFirm("Acme Retail Ltd", "retail")}
	now := storetest.Now
	fx.clock.Store(&now)
	cfg := notify.Config{Key: priv, KeyID: "webhook-1", Timeout: timeout, MaxAttempts: 3,
		BaseDelay: time.Second, MaxDelay: time.Minute, Now: func() time.Time { return *fx.clock.Load() }}
	fx.newSnd = func(t *testing.T) *notify.Sender {
		snd, err := notify.New(s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return snd
	}
	fx.rc = &receiver{t: t, jwks: fx.newSnd(t).JWKS(), applied: map[string]notify.Event{}}
	fx.rc.mode.Store("ok")
	fx.srv = httptest.NewServer(fx.rc)
	t.Cleanup(fx.srv.Close)
	if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateFirm(t.Context(), fx.firm) }); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) advance(d time.Duration) {
	n := fx.clock.Load().Add(d)
	fx.clock.Store(&n)
}

func (fx *fixture) enqueue(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	err := fx.store.Update(t.Context(), func(tx store.Tx) error {
		for i := range n {
			id, err := notify.Enqueue(t.Context(), tx, fx.firm.ID, fx.srv.URL+"/hooks", "consent.revoked",
				map[string]any{"consent_id": "con_x", "n": i}, *fx.clock.Load())
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (fx *fixture) states(t *testing.T) map[broker.WebhookState]int {
	t.Helper()
	out := map[broker.WebhookState]int{}
	_ = fx.store.View(t.Context(), func(tx store.Tx) error {
		all, err := tx.ListWebhooks(t.Context(), "", store.Page{})
		for _, d := range all {
			out[d.State]++
		}
		return err
	})
	return out
}

func TestDelivered(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ids := fx.enqueue(t, 3)
		n, err := fx.newSnd(t).RunOnce(t.Context())
		if err != nil || n != 3 {
			t.Fatalf("RunOnce = %d, %v", n, err)
		}
		if n, _ := fx.newSnd(t).RunOnce(t.Context()); n != 0 {
			t.Errorf("second round delivered %d again", n)
		}
		posts, applied := fx.rc.counts()
		fx.rc.mu.Lock()
		typ := fx.rc.applied[ids[0]].Type
		fx.rc.mu.Unlock()
		if applied != 3 || posts != 3 || typ != "consent.revoked" {
			t.Errorf("receiver applied %d from %d posts", applied, posts)
		}
		if st := fx.states(t); st[broker.WebhookDelivered] != 3 {
			t.Errorf("states %v", st)
		}
	})
}

// TestEndpointDownThenUp: failed attempts are retried after backoff, not
// before, and nothing is lost.
func TestEndpointDownThenUp(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		fx.rc.mode.Store("down")
		fx.enqueue(t, 2)
		snd := fx.newSnd(t)
		if n, err := snd.RunOnce(t.Context()); n != 0 || err != nil {
			t.Fatalf("delivered %d to a dead endpoint (%v)", n, err)
		}
		posts, _ := fx.rc.counts()
		if n, _ := snd.RunOnce(t.Context()); n != 0 {
			t.Errorf("delivered %d before the backoff elapsed", n)
		}
		if p, _ := fx.rc.counts(); p != posts {
			t.Errorf("retried before the backoff elapsed")
		}
		fx.rc.mode.Store("ok")
		fx.advance(2 * time.Second) // past the first backoff (1 s ± 20%)
		if n, err := snd.RunOnce(t.Context()); n != 2 || err != nil {
			t.Fatalf("after recovery delivered %d (%v), want 2", n, err)
		}
		if _, applied := fx.rc.counts(); fx.states(t)[broker.WebhookDelivered] != 2 || applied != 2 {
			t.Errorf("states %v, applied %d", fx.states(t), applied)
		}
	})
}

// TestDeadLetter: an endpoint that keeps answering 500 exhausts the
// attempts and the delivery lands on the dead-letter list, once.
func TestDeadLetter(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		fx.rc.mode.Store("500")
		fx.enqueue(t, 1)
		snd := fx.newSnd(t)
		for range 3 {
			if _, err := snd.RunOnce(t.Context()); err != nil {
				t.Fatal(err)
			}
			fx.advance(time.Hour)
		}
		if p, _ := fx.rc.counts(); p != 3 {
			t.Errorf("%d attempts, want MaxAttempts = 3", p)
		}
		_ = s.View(t.Context(), func(tx store.Tx) error {
			dead, err := tx.ListWebhooks(t.Context(), broker.WebhookDead, store.Page{})
			if err != nil || len(dead) != 1 || dead[0].Attempts != 3 || dead[0].LastError == "" {
				t.Errorf("dead letters %+v (%v)", dead, err)
			}
			return nil
		})
		fx.advance(24 * time.Hour)
		_, _ = snd.RunOnce(t.Context())
		if p, _ := fx.rc.counts(); p != 3 {
			t.Error("a dead delivery was retried")
		}
	})
}

// TestSlowEndpoint: an endpoint that applies the event but answers after
// the timeout gets it again; its effect happens once because the id is
// stable.
func TestSlowEndpoint(t *testing.T) {
	fx := setupTimeout(t, backendtest.Open(t, ""), 200*time.Millisecond)
	fx.rc.mode.Store("slow")
	fx.enqueue(t, 1)
	snd := fx.newSnd(t)
	if n, _ := snd.RunOnce(t.Context()); n != 0 {
		t.Fatal("a timed-out attempt counted as delivered")
	}
	fx.rc.mode.Store("ok")
	delivered := 0
	for i := 0; i < 3 && delivered == 0; i++ { // a loaded machine may time out a retry too
		fx.advance(time.Hour)
		delivered, _ = snd.RunOnce(t.Context())
	}
	if delivered != 1 {
		t.Fatal("not delivered on retry")
	}
	if posts, applied := fx.rc.counts(); posts < 2 || applied != 1 {
		t.Errorf("%d posts, %d effects; want at least 2 posts and exactly 1 effect", posts, applied)
	}
}

// TestTwoWorkers: two senders (two replicas) over one outbox deliver each
// webhook once.
func TestTwoWorkers(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		fx.enqueue(t, 40)
		var wg sync.WaitGroup
		for range 2 {
			snd := fx.newSnd(t)
			wg.Go(func() {
				for range 5 {
					if _, err := snd.RunOnce(t.Context()); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if posts, applied := fx.rc.counts(); posts != 40 || applied != 40 {
			t.Errorf("%d posts for %d deliveries; want 40 each", posts, applied)
		}
	})
}
