package consent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

type fixture struct {
	svc      *consent.Service
	store    store.Store
	customer broker.Customer
	retail   broker.Firm
	bank     broker.Firm
	now      time.Time
}

func setup(t *testing.T, s backend.Migrator) *fixture {
	t.Helper()
	eng, err := policy.New(t.Context(), policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	decide := func(ctx context.Context, c broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
		return eng.Consent(ctx, policy.ConsentRequest{Customer: c, Firm: f, Terms: tv, Request: req, Now: now})
	}
	fx := &fixture{store: s, now: storetest.Now}
	fx.svc = consent.New(s, decide, func() time.Time { return fx.now })
	fx.customer = storetest.NewCustomer("alice")
	fx.retail = storetest.NewFirm("Acme Retail Ltd", "retail")
	fx.bank = storetest.NewFirm("Northwind Bank plc", "financial")
	err = s.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.CreateCustomer(t.Context(), fx.customer); err != nil {
			return err
		}
		if err := tx.CreateFirm(t.Context(), fx.retail); err != nil {
			return err
		}
		return tx.CreateFirm(t.Context(), fx.bank)
	})
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

const aliceTerms = `{"format":"steward.terms/v1","rules":[
 {"effect":"deny","match":{"categories":["Location"]}},
 {"effect":"allow","match":{"sectors":["retail"],"purposes":["Marketing"],"categories":["Contact","Preference"]},"constraints":{"max_duration":"P90D"}},
 {"effect":"deny","match":{"sectors":["financial"],"purposes":["Marketing"]}}
]}`

func request(purpose, duration string, cats ...string) broker.DataRequest {
	return broker.DataRequest{Scope: broker.Scope{Categories: cats, Purpose: purpose, Duration: broker.MustParseDuration(duration)}}
}

// TestRequestDecisions: a standing allow grants at once (narrowed to what
// the terms allow), a deny refuses, no matching rule asks; each outcome is
// stored with the decision record that explains it.
func TestRequestDecisions(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		tv, err := fx.svc.SaveTerms(ctx, fx.customer.ID, []byte(aliceTerms))
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name      string
			firm      broker.Firm
			req       broker.DataRequest
			state     broker.ConsentState
			effect    broker.Effect
			wantScope []string
		}{
			{"standing allow", fx.retail, request("DirectMarketing", "P30D", "Contact"), broker.ConsentGranted, broker.EffectAllow, []string{"Contact"}},
			{"deny by sector", fx.bank, request("Marketing", "P30D", "Contact"), broker.ConsentDenied, broker.EffectDeny, nil},
			{"no rule matches: ask", fx.bank, request("ServiceProvision", "P30D", "Contact"), broker.ConsentRequested, broker.EffectAsk, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				out, err := fx.svc.Request(ctx, fx.customer.ID, tc.firm.ID, "", tc.req)
				if err != nil {
					t.Fatal(err)
				}
				if out.Consent.State != tc.state || out.Decision.Effect != tc.effect {
					t.Fatalf("state %s effect %s; want %s %s (reasons %v)", out.Consent.State, out.Decision.Effect, tc.state, tc.effect, out.Decision.Reasons)
				}
				if tc.wantScope != nil && strings.Join(out.Consent.Granted.Categories, ",") != strings.Join(tc.wantScope, ",") {
					t.Errorf("granted %v, want %v", out.Consent.Granted.Categories, tc.wantScope)
				}
				if out.Decision.TermsHash != tv.Hash {
					t.Errorf("decision terms hash %s, want %s", out.Decision.TermsHash, tv.Hash)
				}
				err = s.View(ctx, func(tx store.Tx) error {
					stored, err := tx.GetConsent(ctx, out.Consent.ID)
					if err != nil {
						return err
					}
					if stored.State != tc.state {
						t.Errorf("stored state %s, want %s", stored.State, tc.state)
					}
					rec, err := tx.GetDecision(ctx, out.DecisionHash)
					if err != nil {
						return err
					}
					if rec.ConsentID != out.Consent.ID || len(rec.Decision.Reasons) == 0 || rec.Decision.Reasons[0].Text == "" {
						t.Errorf("decision record %+v", rec)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

func TestAnswerAndRevoke(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		out, err := fx.svc.Request(ctx, fx.customer.ID, fx.bank.ID, "", request("ServiceProvision", "P60D", "Contact", "Financial"))
		if err != nil || out.Consent.State != broker.ConsentRequested {
			t.Fatalf("request: %v %s", err, out.Consent.State)
		}
		id := out.Consent.ID
		// Another customer cannot answer it, and learns nothing about it.
		if _, err := fx.svc.Approve(ctx, broker.NewCustomerID(), id, nil); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("approve by another customer: %v, want ErrNotFound", err)
		}
		wider := out.Consent.Requested
		wider.Categories = append(wider.Categories, "Location")
		if _, err := fx.svc.Approve(ctx, fx.customer.ID, id, &wider); !errors.Is(err, broker.ErrScopeWidened) {
			t.Errorf("approve wider: %v, want ErrScopeWidened", err)
		}
		narrow := out.Consent.Requested
		narrow.Categories = []string{"Contact"}
		narrow.Duration = broker.MustParseDuration("P7D")
		c, err := fx.svc.Approve(ctx, fx.customer.ID, id, &narrow)
		if err != nil || c.State != broker.ConsentGranted || len(c.Granted.Categories) != 1 {
			t.Fatalf("approve narrowed: %v %+v", err, c)
		}
		if _, err := fx.svc.Refuse(ctx, fx.customer.ID, id, "too late"); !errors.Is(err, broker.ErrTransition) {
			t.Errorf("refuse after grant: %v, want ErrTransition", err)
		}
		if c, err = fx.svc.Revoke(ctx, fx.customer.ID, id, "changed my mind"); err != nil || c.State != broker.ConsentRevoked {
			t.Fatalf("revoke: %v %s", err, c.State)
		}
		if _, err := fx.svc.Revoke(ctx, fx.customer.ID, id, ""); !errors.Is(err, broker.ErrTransition) {
			t.Errorf("second revoke: %v, want ErrTransition", err)
		}
	})
}

func TestExpireDue(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		if _, err := fx.svc.SaveTerms(ctx, fx.customer.ID, []byte(aliceTerms)); err != nil {
			t.Fatal(err)
		}
		short, _ := fx.svc.Request(ctx, fx.customer.ID, fx.retail.ID, "", request("Marketing", "P1D", "Contact"))
		long, _ := fx.svc.Request(ctx, fx.customer.ID, fx.retail.ID, "", request("Marketing", "P30D", "Contact"))
		if short.Consent.State != broker.ConsentGranted || long.Consent.State != broker.ConsentGranted {
			t.Fatalf("setup: %s %s", short.Consent.State, long.Consent.State)
		}
		fx.now = fx.now.Add(24 * time.Hour)
		// Two sweepers at once, as two replicas would run them.
		results := make(chan int, 2)
		for range 2 {
			go func() {
				n, err := fx.svc.ExpireDue(ctx, 100)
				if err != nil {
					t.Error(err)
				}
				results <- n
			}()
		}
		if total := <-results + <-results; total != 1 {
			t.Errorf("sweepers expired %d consents, want exactly 1", total)
		}
		_ = s.View(ctx, func(tx store.Tx) error {
			a, _ := tx.GetConsent(ctx, short.Consent.ID)
			b, _ := tx.GetConsent(ctx, long.Consent.ID)
			if a.State != broker.ConsentExpired || b.State != broker.ConsentGranted {
				t.Errorf("after sweep: %s %s; want expired granted", a.State, b.State)
			}
			return nil
		})
	})
}

// TestSaveTermsRefusesBadDocuments: nothing is stored from a bad document,
// and the message points at the rule.
func TestSaveTermsRefusesBadDocuments(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		bad := []struct{ doc, want string }{
			{`{"format":"steward.terms/v1","rules":[{"effect":"allow","match":{"categories":["Horoscope"]}}]}`, "rule 1"},
			{`{"format":"steward.terms/v1","rules":[{"effect":"perhaps"}]}`, "rule 1"},
			{`{"format":"steward.terms/v1","rules":[{"effect":"deny","match":{"purposes":["Marketing"]}},{"effect":"allow","match":{"purposes":["DirectMarketing"]}}]}`, "rule 2"},
			{`{"format":"steward.terms/v1","rules":[],"extra":1}`, ""},
			{`not json`, ""},
		}
		for _, b := range bad {
			_, err := fx.svc.SaveTerms(ctx, fx.customer.ID, []byte(b.doc))
			if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
				t.Errorf("SaveTerms(%s) = %v; want ErrInvalid naming %q", b.doc, err, b.want)
			}
		}
		_ = s.View(ctx, func(tx store.Tx) error {
			all, err := tx.ListTerms(ctx, fx.customer.ID)
			if len(all) != 0 || err != nil {
				t.Errorf("bad documents stored %d versions (%v)", len(all), err)
			}
			return nil
		})
	})
}

func TestSuspendedFirmCannotAsk(t *testing.T) {
	fx := setup(t, backendtest.Open(t, ""))
	ctx := t.Context()
	if err := fx.store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.SetFirmStatus(ctx, fx.retail.ID, broker.FirmSuspended, fx.now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.svc.Request(ctx, fx.customer.ID, fx.retail.ID, "", request("Marketing", "P1D", "Contact")); !errors.Is(err, broker.ErrForbidden) {
		t.Errorf("request by suspended firm: %v, want ErrForbidden", err)
	}
	_ = fx.store.View(ctx, func(tx store.Tx) error {
		cs, _ := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: fx.customer.ID})
		if len(cs) != 0 {
			t.Errorf("%d consents stored for a refused request", len(cs))
		}
		return nil
	})
}

// ledgerTypes sequences everything staged and returns the entry types in
// log order, checking each entry parses strictly and names no customer.
func ledgerTypes(t *testing.T, s backend.Migrator, customer broker.Customer) []broker.EntryType {
	t.Helper()
	ctx := t.Context()
	size, err := s.Ledger().Sequence(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if size == 0 {
		return nil
	}
	leaves, err := s.Ledger().ReadLeaves(ctx, 0, int(size))
	if err != nil {
		t.Fatal(err)
	}
	var types []broker.EntryType
	for _, b := range leaves {
		e, err := broker.ParseEntry(b)
		if err != nil {
			t.Fatalf("ledger entry %s: %v", b, err)
		}
		if strings.Contains(string(b), string(customer.ID)) || strings.Contains(string(b), customer.Handle) {
			t.Errorf("ledger entry names the customer: %s", b)
		}
		types = append(types, e.Type)
	}
	return types
}

// TestLedgerEntries: every consent event stages its ledger entry in the
// same transaction; a refused transition stages nothing.
func TestLedgerEntries(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		out, err := fx.svc.Request(ctx, fx.customer.ID, fx.bank.ID, "", request("ServiceProvision", "P60D", "Contact", "Financial"))
		if err != nil {
			t.Fatal(err)
		}
		narrow := out.Consent.Requested
		narrow.Categories = []string{"Contact", "Financial"}
		if _, err := fx.svc.Approve(ctx, fx.customer.ID, out.Consent.ID, nil); err != nil {
			t.Fatal(err)
		}
		narrow.Categories = []string{"Contact"}
		if _, err := fx.svc.Narrow(ctx, fx.customer.ID, out.Consent.ID, narrow); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.svc.Revoke(ctx, fx.customer.ID, out.Consent.ID, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.svc.Revoke(ctx, fx.customer.ID, out.Consent.ID, ""); !errors.Is(err, broker.ErrTransition) {
			t.Fatalf("second revoke: %v", err)
		}
		denied, err := fx.svc.Request(ctx, fx.customer.ID, fx.bank.ID, "", request("Marketing", "P1D", "Contact"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fx.svc.Refuse(ctx, fx.customer.ID, denied.Consent.ID, "no"); err != nil {
			t.Fatal(err)
		}
		got := ledgerTypes(t, s, fx.customer)
		want := []broker.EntryType{broker.EntryConsentRequested, broker.EntryConsentGranted, broker.EntryConsentNarrowed,
			broker.EntryConsentRevoked, broker.EntryConsentRequested, broker.EntryConsentDenied}
		if strings.Join(asStrings(got), " ") != strings.Join(asStrings(want), " ") {
			t.Errorf("ledger = %v\nwant     %v", got, want)
		}
	})
}

func asStrings(ts []broker.EntryType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// TestEndAnnounced: revoking or expiring a consent of a firm that takes
// webhooks enqueues, in the same transaction, a delivery asking it to
// delete the data; a firm without a webhook URL gets none.
func TestEndAnnounced(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		fx := setup(t, s)
		ctx := t.Context()
		if err := s.Update(ctx, func(tx store.Tx) error {
			_, err := tx.SetFirmWebhook(ctx, fx.bank.ID, "https://northwind.example/hooks", fx.now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		grant := func(f broker.Firm, d string) broker.ConsentID {
			out, err := fx.svc.Request(ctx, fx.customer.ID, f.ID, "", request("ServiceProvision", d, "Contact"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fx.svc.Approve(ctx, fx.customer.ID, out.Consent.ID, nil); err != nil {
				t.Fatal(err)
			}
			return out.Consent.ID
		}
		revoked, expiring, quiet := grant(fx.bank, "P30D"), grant(fx.bank, "P1D"), grant(fx.retail, "P30D")
		if _, err := fx.svc.Revoke(ctx, fx.customer.ID, revoked, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.svc.Revoke(ctx, fx.customer.ID, quiet, ""); err != nil {
			t.Fatal(err)
		}
		fx.now = fx.now.Add(48 * time.Hour)
		if n, err := fx.svc.ExpireDue(ctx, 10); err != nil || n != 1 {
			t.Fatalf("ExpireDue = %d, %v", n, err)
		}
		var got []broker.WebhookDelivery
		_ = s.View(ctx, func(tx store.Tx) (err error) { got, err = tx.ListWebhooks(ctx, "", store.Page{}); return err })
		seen := map[broker.ConsentID]string{}
		for _, d := range got {
			var ev consent.ConsentEnded
			if err := json.Unmarshal(d.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			if d.FirmID != fx.bank.ID || ev.Action != "delete_data" || !strings.HasPrefix(string(ev.Customer), "psn_") {
				t.Errorf("delivery %+v / %+v", d, ev)
			}
			seen[ev.ConsentID] = d.EventType
		}
		if len(got) != 2 || seen[revoked] != "consent.revoked" || seen[expiring] != "consent.expired" {
			t.Errorf("deliveries %v; want revoked and expired for the bank only", seen)
		}
	})
}
