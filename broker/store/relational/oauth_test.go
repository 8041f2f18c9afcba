package relational_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

func TestOAuthStorage(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		o := s.OAuth()
		now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
		later := now.Add(time.Hour)

		if err := o.CreateRequest(ctx, "code", "sig1", "req1", "cli_x", "", []byte(`{"a":1}`), later); err != nil {
			t.Fatal(err)
		}
		if err := o.CreateRequest(ctx, "code", "sig1", "req1", "cli_x", "", []byte(`{}`), later); !errors.Is(err, broker.ErrConflict) {
			t.Fatalf("duplicate signature: got %v, want ErrConflict", err)
		}
		data, active, err := o.GetRequest(ctx, "code", "sig1", now)
		if err != nil || !active || string(data) != `{"a":1}` {
			t.Fatalf("GetRequest = %s, %v, %v", data, active, err)
		}
		if _, _, err := o.GetRequest(ctx, "code", "sig1", later); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("expired request: got %v, want ErrNotFound", err)
		}
		if err := o.DeactivateRequest(ctx, "code", "sig1"); err != nil {
			t.Fatal(err)
		}
		if err := o.DeactivateRequest(ctx, "code", "sig1"); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("second deactivation: got %v, want ErrNotFound", err)
		}
		if _, active, err := o.GetRequest(ctx, "code", "sig1", now); err != nil || active {
			t.Fatalf("used code: active=%v err=%v, want inactive row", active, err)
		}

		// Rotation: one winner; the family's access tokens go.
		for _, r := range []struct{ kind, sig string }{{"refresh", "r1"}, {"refresh", "r0"}, {"access", "a1"}, {"access", "a0"}} {
			if err := o.CreateRequest(ctx, r.kind, r.sig, "req2", "cli_x", "", []byte(`{}`), later); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.RotateRefreshToken(ctx, "req2", "r1"); err != nil {
			t.Fatal(err)
		}
		if err := o.RotateRefreshToken(ctx, "req2", "r1"); !errors.Is(err, broker.ErrConflict) {
			t.Fatalf("second rotation: got %v, want ErrConflict", err)
		}
		if _, active, err := o.GetRequest(ctx, "refresh", "r0", now); err != nil || active {
			t.Fatalf("sibling refresh token: active=%v err=%v", active, err)
		}
		if _, _, err := o.GetRequest(ctx, "access", "a0", now); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("access token after rotation: %v, want ErrNotFound", err)
		}

		// jti replay.
		if err := o.UseJTI(ctx, "j1", later, now); err != nil {
			t.Fatal(err)
		}
		if err := o.UseJTI(ctx, "j1", later, now); !errors.Is(err, broker.ErrConflict) {
			t.Fatalf("replayed jti: got %v, want ErrConflict", err)
		}
		if used, err := o.JTIUsed(ctx, "j1", now); err != nil || !used {
			t.Fatalf("JTIUsed = %v, %v", used, err)
		}
		if err := o.UseJTI(ctx, "j1", later.Add(time.Hour), later); err != nil {
			t.Fatalf("jti reused after its expiry: %v", err)
		}

		// Transactions: a rolled-back write is gone, a committed one stays,
		// and reads inside see the transaction's own writes.
		txctx, err := o.BeginTx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.CreateRequest(txctx, "access", "tx1", "req4", "cli_x", "", []byte(`{}`), later); err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.GetRequest(txctx, "access", "tx1", now); err != nil {
			t.Errorf("read own write in transaction: %v", err)
		}
		if err := o.RollbackTx(txctx); err != nil {
			t.Fatal(err)
		}
		if err := o.RollbackTx(txctx); err != nil {
			t.Errorf("second rollback: %v", err)
		}
		if _, _, err := o.GetRequest(ctx, "access", "tx1", now); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("rolled-back request: %v, want ErrNotFound", err)
		}
		txctx, err = o.BeginTx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.DeactivateRequests(txctx, "refresh", "req2"); err != nil {
			t.Fatal(err)
		}
		if err := o.CommitTx(txctx); err != nil {
			t.Fatal(err)
		}
		_ = o.RollbackTx(txctx) // harmless after commit
		if err := o.CreateRequest(ctx, "access", "tx2", "req4", "cli_x", "", []byte(`{}`), later); err != nil {
			t.Fatalf("write after the transaction ended: %v", err)
		}
		if err := o.DeleteRequest(ctx, "access", "tx2"); err != nil {
			t.Fatal(err)
		}

		// Cleanup removes only what expired.
		if err := o.CreateRequest(ctx, "par", "p1", "req3", "cli_x", "", []byte(`{}`), now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		n, err := o.Cleanup(ctx, now.Add(2*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("Cleanup = %d, %v; want 1", n, err)
		}
		n, err = o.Cleanup(ctx, later.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(int64(4), n); /* code, two refresh tokens, one jti */ diff != "" {
			t.Errorf("rows cleaned (-want +got):\n%s", diff)
		}
	})
}

func TestRevokeConsentTokens(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		o := s.OAuth()
		later := time.Now().Add(time.Hour)
		cus, firm := storetest.Fixture(t, s)
		granted := func() broker.Consent {
			c := storetest.NewRequest(t, s, cus.ID, firm.ID)
			if err := s.Update(ctx, func(tx store.Tx) error {
				next, ev, err := c.Grant(c.Requested, storetest.Now, "test")
				if err != nil {
					return err
				}
				c = next
				return tx.UpdateConsent(ctx, next, ev)
			}); err != nil {
				t.Fatal(err)
			}
			return c
		}
		a, b := granted(), granted()
		for _, r := range []struct{ kind, sig, consent string }{
			{"code", "c1", string(a.ID)}, {"pkce", "c1", string(a.ID)}, {"access", "a1", string(a.ID)}, {"refresh", "r1", string(a.ID)},
			{"access", "a2", string(b.ID)}, {"access", "a3", ""}, {"par", "p1", ""},
		} {
			if err := o.CreateRequest(ctx, r.kind, r.sig, "req_"+r.consent, "cli_x", r.consent, []byte(`{}`), later); err != nil {
				t.Fatal(err)
			}
		}
		// No token under a consent that is not granted, or not there.
		requested := storetest.NewRequest(t, s, cus.ID, firm.ID)
		for _, id := range []broker.ConsentID{requested.ID, "con_missing"} {
			if err := o.CreateRequest(ctx, "access", "x-"+string(id), "req_x", "cli_x", string(id), []byte(`{}`), later); !errors.Is(err, broker.ErrForbidden) {
				t.Errorf("token under consent %s: %v, want ErrForbidden", id, err)
			}
		}
		var n int64
		if err := s.Update(ctx, func(tx store.Tx) (err error) {
			n, err = tx.RevokeConsentTokens(ctx, a.ID)
			return err
		}); err != nil || n != 4 {
			t.Fatalf("RevokeConsentTokens = %d, %v; want 4", n, err)
		}
		for _, r := range []struct {
			kind, sig string
			alive     bool
		}{{"code", "c1", false}, {"pkce", "c1", false}, {"access", "a1", false}, {"refresh", "r1", false},
			{"access", "a2", true}, {"access", "a3", true}, {"par", "p1", true}} {
			_, _, err := o.GetRequest(ctx, r.kind, r.sig, time.Now())
			if alive := err == nil; alive != r.alive {
				t.Errorf("%s %s: alive=%v (err %v), want %v", r.kind, r.sig, alive, err, r.alive)
			}
		}
		// An empty consent id matches nothing, not the grants without one.
		if err := s.Update(ctx, func(tx store.Tx) (err error) {
			n, err = tx.RevokeConsentTokens(ctx, "")
			return err
		}); err != nil || n != 0 {
			t.Fatalf("RevokeConsentTokens(\"\") = %d, %v; want 0", n, err)
		}
		// A rolled-back end leaves the tokens alone.
		boom := errors.New("boom")
		if err := s.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.RevokeConsentTokens(ctx, b.ID); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, _, err := o.GetRequest(ctx, "access", "a2", time.Now()); err != nil {
			t.Errorf("token of a consent whose end rolled back: %v", err)
		}
	})
}

func TestLoginFailures(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		o := s.OAuth()
		now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
		for i := range 3 {
			at := now.Add(time.Duration(i) * time.Minute)
			if err := o.AddLoginFailure(ctx, []string{"handle:h", "ip:192.0.2.1"}, at, at.Add(15*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		n, oldest, err := o.LoginFailures(ctx, "handle:h", now.Add(5*time.Minute))
		if err != nil || n != 3 || !oldest.Equal(now.Add(15*time.Minute)) {
			t.Fatalf("LoginFailures = %d, %v, %v; want 3, %v", n, oldest, err, now.Add(15*time.Minute))
		}
		// The first failure has left the window.
		if n, oldest, err := o.LoginFailures(ctx, "ip:192.0.2.1", now.Add(15*time.Minute)); err != nil || n != 2 || !oldest.Equal(now.Add(16*time.Minute)) {
			t.Errorf("LoginFailures after a failure expired = %d, %v, %v; want 2, %v", n, oldest, err, now.Add(16*time.Minute))
		}
		if n, oldest, err := o.LoginFailures(ctx, "handle:other", now); err != nil || n != 0 || !oldest.IsZero() {
			t.Errorf("LoginFailures of a clean subject = %d, %v, %v", n, oldest, err)
		}
		if err := o.ClearLoginFailures(ctx, "handle:h"); err != nil {
			t.Fatal(err)
		}
		if n, _, err := o.LoginFailures(ctx, "handle:h", now); err != nil || n != 0 {
			t.Errorf("after ClearLoginFailures: %d, %v", n, err)
		}
		// Cleanup removes the address's expired rows only.
		removed, err := o.Cleanup(ctx, now.Add(16*time.Minute))
		if err != nil || removed != 2 {
			t.Errorf("Cleanup = %d, %v; want 2", removed, err)
		}
	})
}
