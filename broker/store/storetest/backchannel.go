package storetest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// testBackchannel covers share codes and backchannel requests: single
// use under concurrency, state checks, listing and cleanup.
func testBackchannel(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)

	code := store.ShareCode{Hash: "hash-1", CustomerID: c.ID, CreatedAt: Now, ExpiresAt: Now.Add(10 * time.Minute)}
	update(t, s, func(tx store.Tx) error { return tx.CreateShareCode(ctx, code) })
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateShareCode(ctx, code) }), broker.ErrConflict)
	wantErr(t, s.View(ctx, func(tx store.Tx) error { _, err := tx.GetShareCode(ctx, "nope"); return err }), broker.ErrNotFound)

	// Of concurrent uses exactly one succeeds.
	var wg sync.WaitGroup
	var mu sync.Mutex
	used := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Update(ctx, func(tx store.Tx) error {
				if _, err := tx.GetShareCode(ctx, code.Hash); err != nil {
					return err
				}
				return tx.UseShareCode(ctx, code.Hash, Now.Add(time.Second))
			})
			if err == nil {
				mu.Lock()
				used++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if used != 1 {
		t.Errorf("share code used %d times, want 1", used)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetShareCode(ctx, code.Hash)
		if err == nil && !got.UsedAt.Equal(Now.Add(time.Second)) {
			t.Errorf("used_at = %v", got.UsedAt)
		}
		return err
	})

	r := store.BackchannelRequest{ID: "bcr_1", AuthReqHash: "arh-1", ClientID: broker.NewClientID(), FirmID: f.ID, CustomerID: c.ID,
		ConsentID: con.ID, State: store.BackchannelPending, Requested: json.RawMessage(`[{"type":"steward_customer_data"}]`),
		BindingMessage: "ACME 1", NotificationToken: "tok", Reasons: []string{"Your terms do not say."}, Interval: 5 * time.Second,
		CreatedAt: Now, ExpiresAt: Now.Add(10 * time.Minute)}
	update(t, s, func(tx store.Tx) error { return tx.CreateBackchannelRequest(ctx, r) })
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateBackchannelRequest(ctx, r) }), broker.ErrConflict)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetBackchannelRequestByHash(ctx, "arh-1")
		if diff := cmp.Diff(r, got); err == nil && diff != "" {
			t.Errorf("stored request (-want +got):\n%s", diff)
		}
		return err
	})

	// Polls and the answer move it; a stale state is a conflict.
	r.LastPolledAt, r.Interval = Now.Add(time.Minute), 10*time.Second
	update(t, s, func(tx store.Tx) error { return tx.UpdateBackchannelRequest(ctx, r, store.BackchannelPending) })
	r.State, r.Granted, r.DecidedAt = store.BackchannelGranted, json.RawMessage(`[{"type":"steward_customer_data","x":1}]`), Now.Add(2*time.Minute)
	update(t, s, func(tx store.Tx) error { return tx.UpdateBackchannelRequest(ctx, r, store.BackchannelPending) })
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateBackchannelRequest(ctx, r, store.BackchannelPending) }), broker.ErrConflict)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetBackchannelRequest(ctx, "bcr_1")
		if diff := cmp.Diff(r, got); err == nil && diff != "" {
			t.Errorf("updated request (-want +got):\n%s", diff)
		}
		return err
	})

	// Listing: the customer's pending, unexpired requests only.
	other := NewCustomer("bob")
	update(t, s, func(tx store.Tx) error { return tx.CreateCustomer(ctx, other) })
	pending := r
	pending.ID, pending.AuthReqHash, pending.State, pending.Granted, pending.DecidedAt = "bcr_2", "arh-2", store.BackchannelPending, nil, time.Time{}
	expired := pending
	expired.ID, expired.AuthReqHash, expired.ExpiresAt = "bcr_3", "arh-3", Now.Add(time.Minute)
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateBackchannelRequest(ctx, pending); err != nil {
			return err
		}
		return tx.CreateBackchannelRequest(ctx, expired)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListBackchannelRequests(ctx, c.ID, store.BackchannelPending, Now.Add(5*time.Minute))
		if err == nil && (len(got) != 1 || got[0].ID != "bcr_2") {
			t.Errorf("pending requests: %+v", got)
		}
		if err != nil {
			return err
		}
		got, err = tx.ListBackchannelRequests(ctx, other.ID, store.BackchannelPending, Now)
		if err == nil && len(got) != 0 {
			t.Errorf("bob's pending requests: %+v", got)
		}
		return err
	})

	update(t, s, func(tx store.Tx) error {
		got, err := tx.ListLapsedBackchannelRequests(ctx, Now.Add(5*time.Minute), 10)
		if err == nil && (len(got) != 1 || got[0].ID != "bcr_3") {
			t.Errorf("lapsed requests: %+v", got)
		}
		return err
	})

	// Cleanup deletes what expired: the code, then every request.
	update(t, s, func(tx store.Tx) error {
		n, err := tx.DeleteExpiredBackchannel(ctx, Now.Add(5*time.Minute))
		if err == nil && n != 1 {
			t.Errorf("deleted %d rows at +5m, want 1 (the expired request)", n)
		}
		if err != nil {
			return err
		}
		n, err = tx.DeleteExpiredBackchannel(ctx, Now.Add(time.Hour))
		if err == nil && n != 3 {
			t.Errorf("deleted %d rows at +1h, want 3", n)
		}
		return err
	})
}
