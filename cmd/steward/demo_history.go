package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
)

// aliceTerms are the demo customer's sharing terms: retail firms may use
// her contact details and preferences for marketing for up to 90 days; no
// one gets her location; anything else is asked.
const aliceTerms = `{"format":"steward.terms/v1","rules":[
 {"effect":"deny","match":{"categories":["Location"]},"note":"Never my location"},
 {"effect":"allow","match":{"sectors":["retail"],"purposes":["Marketing"],"categories":["Contact","Preference"]},"constraints":{"max_duration":"P90D"},"note":"Shops may market to me"},
 {"effect":"ask"}
]}`

// seedDemoHistory gives the demo something to look at: the firms'
// registrations on the ledger, Alice's terms, and requests decided under
// them by the real policy — one granted at once by her standing allow, one
// refused, one waiting for her answer. It runs once, when Alice has no
// terms yet.
func seedDemoHistory(ctx context.Context, dataDir string, creds demoCredentials) error {
	s, _, err := backend.Open(ctx, "", dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	var alice broker.Customer
	var firms []broker.Firm
	err = s.View(ctx, func(tx store.Tx) (err error) {
		if alice, err = tx.GetCustomerByHandle(ctx, "alice"); err != nil {
			return err
		}
		firms, err = tx.ListFirms(ctx, store.Page{})
		return err
	})
	if err != nil {
		return err
	}
	err = s.View(ctx, func(tx store.Tx) error { _, err := tx.LatestTerms(ctx, alice.ID); return err })
	if err == nil {
		return nil // already seeded
	} else if !errors.Is(err, broker.ErrNotFound) {
		return err
	}
	byName := map[string]broker.Firm{}
	err = s.Update(ctx, func(tx store.Tx) error {
		for _, f := range firms {
			byName[f.LegalName] = f
			b, err := broker.Entry{Type: broker.EntryFirmRegistered, Time: f.CreatedAt, Firm: f.ID}.CanonicalBytes()
			if err != nil {
				return err
			}
			if err := tx.StageLedgerEntry(ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if creds.InitialAccessToken != "" {
		// The demo retail firm's registration token lasts a year.
		hash := oauth.HashInitialAccessToken(creds.InitialAccessToken)
		now := time.Now()
		if err := s.OAuth().CreateInitialAccessToken(ctx, hash, byName["Acme Retail Ltd"].ID, now, now.AddDate(1, 0, 0)); err != nil {
			return fmt.Errorf("demo registration token: %w", err)
		}
	}
	eng, err := policy.New(ctx, policy.Config{})
	if err != nil {
		return err
	}
	svc := consentService(s, eng)
	if _, err := svc.SaveTerms(ctx, alice.ID, []byte(aliceTerms)); err != nil {
		return fmt.Errorf("alice's terms: %w", err)
	}
	requests := []struct {
		firm, purpose, duration string
		categories              []string
	}{
		{"Acme Retail Ltd", "DirectMarketing", "P30D", []string{"Contact", "Preference"}},
		{"Acme Retail Ltd", "PersonalisedAdvertising", "P30D", []string{"Location"}},
		{"Northwind Bank plc", "CreditChecking", "P1Y", []string{"Financial"}},
	}
	for _, r := range requests {
		f, ok := byName[r.firm]
		if !ok {
			return fmt.Errorf("demo firm %q missing", r.firm)
		}
		req := broker.DataRequest{Scope: broker.Scope{Categories: r.categories, Purpose: r.purpose, Duration: broker.MustParseDuration(r.duration)}}
		if _, err := svc.Request(ctx, alice.ID, f.ID, "", req); err != nil {
			return fmt.Errorf("demo request by %s: %w", r.firm, err)
		}
	}
	return nil
}
