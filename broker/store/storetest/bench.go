package storetest

import (
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// BenchConsentWrite measures one consent transition written with its
// history row: a transaction that reads (and locks) the consent, applies
// the state machine and stores the new version plus its event. Each
// iteration creates a request and grants it, so it is two writes; the
// reported ns/op is per transition.
func BenchConsentWrite(b *testing.B, s store.Store) {
	ctx := b.Context()
	c, f := NewCustomer("bench"), NewFirm("Bench Ltd", "retail")
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, c); err != nil {
			return err
		}
		return tx.CreateFirm(ctx, f)
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		con, ev, err := broker.NewConsentRequest(c.ID, f.ID, "", RequestScope(), time.Now(), "firm")
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateConsent(ctx, con, ev) }); err != nil {
			b.Fatal(err)
		}
		if err := s.Update(ctx, func(tx store.Tx) error {
			cur, err := tx.GetConsent(ctx, con.ID)
			if err != nil {
				return err
			}
			next, ev, err := cur.Grant(RequestScope(), time.Now(), "customer")
			if err != nil {
				return err
			}
			return tx.UpdateConsent(ctx, next, ev)
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "transitions/s")
}

// BenchConsentRead measures reading one consent in a read-only transaction,
// in parallel (b.RunParallel) as request handlers would.
func BenchConsentRead(b *testing.B, s store.Store) {
	ctx := b.Context()
	c, f := NewCustomer("bench"), NewFirm("Bench Ltd", "retail")
	con, ev, _ := broker.NewConsentRequest(c.ID, f.ID, "", RequestScope(), time.Now(), "firm")
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, c); err != nil {
			return err
		}
		if err := tx.CreateFirm(ctx, f); err != nil {
			return err
		}
		return tx.CreateConsent(ctx, con, ev)
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.View(ctx, func(tx store.Tx) error {
				_, err := tx.GetConsent(ctx, con.ID)
				return err
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
