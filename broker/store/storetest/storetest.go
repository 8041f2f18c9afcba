// Package storetest is the conformance suite every store.Store must pass.
// Each backend's tests call Run with a constructor that returns a fresh,
// migrated, empty store.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Run runs the conformance suite. newStore must return a fresh, migrated,
// empty store; the suite closes nothing it did not open.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Taxonomy", testTaxonomy},
		{"Customers", testCustomers},
		{"Firms", testFirms},
		{"Clients", testClients},
		{"Regulators", testRegulators},
		{"Records", testRecords},
		{"CustomerKeys", testCustomerKeys},
		{"ForgetCustomer", testForgetCustomer},
		{"Terms", testTerms},
		{"ConsentLifecycle", testConsentLifecycle},
		{"ConsentIllegalTransitions", testConsentIllegalTransitions},
		{"ConsentStaleVersion", testConsentStaleVersion},
		{"ConsentConcurrency", testConsentConcurrency},
		{"ConsentListing", testConsentListing},
		{"Disclosures", testDisclosures},
		{"DeletionAttestations", testDeletionAttestations},
		{"AccessContext", testAccessContext},
		{"RecordDisclosure", testRecordDisclosure},
		{"DPoPProofs", testDPoPProofs},
		{"AccessContexts", testAccessContexts},
		{"Pseudonyms", testPseudonyms},
		{"Decisions", testDecisions},
		{"Webhooks", testWebhooks},
		{"Backchannel", testBackchannel},
		{"ConsentTokens", testConsentTokens},
		{"Rollback", testRollback},
		{"ReadOnlyView", testReadOnlyView},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Now is a fixed clock the fixtures use, at microsecond precision as stored.
var Now = time.Date(2026, 11, 23, 9, 30, 0, 123456000, time.UTC)

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(t.Context(), fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// NewCustomer returns a valid customer with the given handle.
func NewCustomer(handle string) broker.Customer {
	return broker.Customer{ID: broker.NewCustomerID(), Handle: handle, DisplayName: "Test " + handle,
		Email: handle + "@example.org", Jurisdiction: "GB", CreatedAt: Now}
}

// NewFirm returns a valid approved firm.
func NewFirm(name, sector string) broker.Firm {
	return broker.Firm{ID: broker.NewFirmID(), LegalName: name, Sector: sector, Jurisdiction: "GB",
		Status: broker.FirmApproved, CreatedAt: Now, UpdatedAt: Now}
}

// Fixture creates one customer and one firm and returns them.
func Fixture(t *testing.T, s store.Store) (broker.Customer, broker.Firm) {
	t.Helper()
	c, f := NewCustomer("alice"), NewFirm("Acme Retail Ltd", "retail")
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateCustomer(t.Context(), c); err != nil {
			return err
		}
		return tx.CreateFirm(t.Context(), f)
	})
	return c, f
}

// RequestScope is the scope the fixtures ask for.
func RequestScope() broker.Scope {
	return broker.Scope{Categories: []string{"Contact", "Preference", "PurchasesAndSpendingHabit"}, Purpose: "Marketing",
		Duration: broker.MustParseDuration("P90D"), Frequency: broker.Frequency{Max: 10, Per: broker.MustParseDuration("P1D")}}
}

// NewRequest stores a requested consent and returns it.
func NewRequest(t *testing.T, s store.Store, c broker.CustomerID, f broker.FirmID) broker.Consent {
	t.Helper()
	con, ev, err := broker.NewConsentRequest(c, f, "", RequestScope(), Now, "firm")
	if err != nil {
		t.Fatal(err)
	}
	update(t, s, func(tx store.Tx) error { return tx.CreateConsent(t.Context(), con, ev) })
	return con
}

func testTaxonomy(t *testing.T, s store.Store) {
	view(t, s, func(tx store.Tx) error {
		cats, err := tx.ListCategories(t.Context())
		if err != nil {
			return err
		}
		if len(cats) != len(broker.Categories) {
			t.Errorf("%d categories, want %d", len(cats), len(broker.Categories))
		}
		for _, c := range cats {
			want, _ := broker.CategoryByName(c.Name)
			if diff := cmp.Diff(want, c); diff != "" {
				t.Errorf("category %s (-want +got):\n%s", c.Name, diff)
			}
		}
		ps, err := tx.ListPurposes(t.Context())
		if err != nil {
			return err
		}
		if len(ps) != len(broker.Purposes) {
			t.Errorf("%d purposes, want %d", len(ps), len(broker.Purposes))
		}
		return nil
	})
}

func testCustomers(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := NewCustomer("alice"), NewCustomer("bob")
	a.Minor, a.PasswordHash = true, "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA"
	// Whole seconds and trailing zeros must survive the round trip too.
	a.CreatedAt, b.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC)
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, a); err != nil {
			return err
		}
		return tx.CreateCustomer(ctx, b)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetCustomer(ctx, a.ID)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("GetCustomer (-want +got):\n%s", diff)
		}
		byHandle, err := tx.GetCustomerByHandle(ctx, "bob")
		if err != nil {
			return err
		}
		if !byHandle.CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("CreatedAt %v read back as %v", b.CreatedAt, byHandle.CreatedAt)
		}
		if byHandle.ID != b.ID {
			t.Errorf("GetCustomerByHandle(bob) = %s, want %s", byHandle.ID, b.ID)
		}
		_, err = tx.GetCustomer(ctx, broker.NewCustomerID())
		wantErr(t, err, broker.ErrNotFound)
		list, err := tx.ListCustomers(ctx, store.Page{})
		if err != nil {
			return err
		}
		if len(list) != 2 {
			t.Errorf("ListCustomers returned %d, want 2", len(list))
		}
		page, err := tx.ListCustomers(ctx, store.Page{After: string(list[0].ID), Limit: 5})
		if err != nil {
			return err
		}
		if len(page) != 1 || page[0].ID != list[1].ID {
			t.Errorf("second page = %v, want [%s]", page, list[1].ID)
		}
		return nil
	})
	dup := NewCustomer("alice")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateCustomer(ctx, dup) }), broker.ErrConflict)
	bad := NewCustomer("x")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateCustomer(ctx, bad) }), broker.ErrInvalid)
}

func testFirms(t *testing.T, s store.Store) {
	ctx := t.Context()
	f := NewFirm("Northwind Bank plc", "financial")
	f.Status = broker.FirmPending
	update(t, s, func(tx store.Tx) error { return tx.CreateFirm(ctx, f) })
	later := Now.Add(time.Hour)
	update(t, s, func(tx store.Tx) error {
		got, err := tx.SetFirmStatus(ctx, f.ID, broker.FirmApproved, later)
		if err != nil {
			return err
		}
		if got.Status != broker.FirmApproved || !got.UpdatedAt.Equal(later) {
			t.Errorf("SetFirmStatus = %+v", got)
		}
		return nil
	})
	// approved → pending is not a move an operator can make.
	err := s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.SetFirmStatus(ctx, f.ID, broker.FirmPending, later)
		return err
	})
	wantErr(t, err, broker.ErrTransition)
	err = s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.SetFirmStatus(ctx, broker.NewFirmID(), broker.FirmSuspended, later)
		return err
	})
	wantErr(t, err, broker.ErrNotFound)
	update(t, s, func(tx store.Tx) error {
		got, err := tx.SetFirmWebhook(ctx, f.ID, "https://northwind.example/steward/hooks", later)
		if err != nil || got.WebhookURL != "https://northwind.example/steward/hooks" {
			t.Errorf("SetFirmWebhook = %+v, %v", got, err)
		}
		return err
	})
	for _, bad := range []string{"http://northwind.example/hooks", "ftp://x", "https://user:pw@x.example/", "/relative"} {
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { _, err := tx.SetFirmWebhook(ctx, f.ID, bad, later); return err }), broker.ErrInvalid)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetFirm(ctx, f.ID)
		if err != nil {
			return err
		}
		want := f
		want.Status, want.UpdatedAt, want.WebhookURL = broker.FirmApproved, later, "https://northwind.example/steward/hooks"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetFirm (-want +got):\n%s", diff)
		}
		list, err := tx.ListFirms(ctx, store.Page{})
		if err != nil || len(list) != 1 {
			t.Errorf("ListFirms = %v, %v", list, err)
		}
		return nil
	})
	bad := NewFirm("Bad", "astrology")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateFirm(ctx, bad) }), broker.ErrInvalid)
}

func testClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, f := Fixture(t, s)
	c := broker.Client{ID: broker.NewClientID(), FirmID: f.ID, Name: "Acme app", RedirectURIs: []string{"https://acme.example/cb"},
		JWKS: []byte(`{"keys":[]}`), TokenEndpointAuthSigningAlg: "ES256", Status: broker.ClientActive, CreatedAt: Now}
	update(t, s, func(tx store.Tx) error { return tx.CreateClient(ctx, c) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetClient(ctx, c.ID)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("GetClient (-want +got):\n%s", diff)
		}
		list, err := tx.ListClients(ctx, f.ID)
		if err != nil || len(list) != 1 {
			t.Errorf("ListClients = %v, %v", list, err)
		}
		return nil
	})
	orphan := c
	orphan.ID, orphan.FirmID = broker.NewClientID(), broker.NewFirmID()
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.CreateClient(ctx, orphan) }), broker.ErrNotFound)
}

func testRegulators(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := broker.Regulator{ID: broker.NewRegulatorID(), Name: "Information Commissioner", Jurisdiction: "GB", CreatedAt: Now}
	update(t, s, func(tx store.Tx) error { return tx.CreateRegulator(ctx, r) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListRegulators(ctx)
		if diff := cmp.Diff([]broker.Regulator{r}, got); diff != "" || err != nil {
			t.Errorf("ListRegulators (-want +got): %v\n%s", err, diff)
		}
		return nil
	})
}

func testRecords(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, _ := Fixture(t, s)
	r := broker.SealedRecord{CustomerID: c.ID, Category: "Contact", Sealed: []byte{1, 0, 0xff, 'x'}, Source: "customer", UpdatedAt: Now}
	update(t, s, func(tx store.Tx) error { return tx.PutRecord(ctx, r) })
	r2 := r
	r2.Sealed, r2.Source, r2.UpdatedAt = []byte{1, 2, 3, 0, 4}, "import", Now.Add(time.Minute)
	other := r
	other.Category = "Preference"
	update(t, s, func(tx store.Tx) error {
		if err := tx.PutRecord(ctx, r2); err != nil {
			return err
		}
		return tx.PutRecord(ctx, other)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListRecords(ctx, c.ID)
		if err != nil {
			return err
		}
		// Binary bytes, NUL and 0xff included, survive exactly.
		if diff := cmp.Diff([]broker.SealedRecord{r2, other}, got); diff != "" {
			t.Errorf("ListRecords (-want +got):\n%s", diff)
		}
		none, err := tx.ListRecords(ctx, broker.NewCustomerID())
		if err != nil || len(none) != 0 {
			t.Errorf("ListRecords(unknown) = %v, %v; want none", none, err)
		}
		return nil
	})
	for _, bad := range []broker.SealedRecord{
		{CustomerID: c.ID, Category: "Horoscope", Sealed: []byte{1}, Source: "customer", UpdatedAt: Now},
		{CustomerID: c.ID, Category: "Contact", Sealed: nil, Source: "customer", UpdatedAt: Now},
		{CustomerID: c.ID, Category: "Contact", Sealed: make([]byte, broker.MaxSealedBytes+1), Source: "customer", UpdatedAt: Now},
	} {
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.PutRecord(ctx, bad) }), broker.ErrInvalid)
	}
	unknown := r
	unknown.CustomerID = broker.NewCustomerID()
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.PutRecord(ctx, unknown) }), broker.ErrNotFound)
}

func testCustomerKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, _ := Fixture(t, s)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetCustomerKey(ctx, c.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
	// Concurrent first use settles on one key, whichever insert won.
	var wg sync.WaitGroup
	got := make([]broker.CustomerKey, 8)
	for i := range got {
		wg.Go(func() {
			k := broker.CustomerKey{CustomerID: c.ID, Wrapped: []byte{byte(i), 0, 0xfe}, KeyVersion: 1, CreatedAt: Now}
			if err := s.Update(ctx, func(tx store.Tx) (err error) { got[i], err = tx.EnsureCustomerKey(ctx, k); return err }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var stored broker.CustomerKey
	view(t, s, func(tx store.Tx) (err error) {
		stored, err = tx.GetCustomerKey(ctx, c.ID)
		return err
	})
	for _, k := range got {
		if diff := cmp.Diff(stored, k); diff != "" {
			t.Errorf("EnsureCustomerKey returned a key other than the stored one (-stored +returned):\n%s", diff)
		}
	}
	// Rewrap is a compare-and-swap on the version.
	next := stored
	next.Wrapped, next.KeyVersion = []byte("rewrapped"), 2
	update(t, s, func(tx store.Tx) error { return tx.RewrapCustomerKey(ctx, next, 1) })
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.RewrapCustomerKey(ctx, next, 1) }), broker.ErrConflict)
	d := NewCustomer("dora")
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, d); err != nil {
			return err
		}
		_, err := tx.EnsureCustomerKey(ctx, broker.CustomerKey{CustomerID: d.ID, Wrapped: []byte("d"), KeyVersion: 1, CreatedAt: Now})
		return err
	})
	view(t, s, func(tx store.Tx) error {
		all, err := tx.ListCustomerKeys(ctx, store.Page{})
		if err != nil {
			return err
		}
		if len(all) != 2 || all[0].CustomerID > all[1].CustomerID {
			t.Fatalf("ListCustomerKeys = %v; want two, by customer id", all)
		}
		rest, err := tx.ListCustomerKeys(ctx, store.Page{After: string(all[0].CustomerID)})
		if err != nil || len(rest) != 1 || rest[0].CustomerID != all[1].CustomerID {
			t.Errorf("second page = %v, %v", rest, err)
		}
		for _, k := range all {
			if k.CustomerID == c.ID && (k.KeyVersion != 2 || string(k.Wrapped) != "rewrapped") {
				t.Errorf("rewrapped key = %+v", k)
			}
		}
		return nil
	})
	wantErr(t, s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.EnsureCustomerKey(ctx, broker.CustomerKey{CustomerID: broker.NewCustomerID(), Wrapped: []byte("x"), KeyVersion: 1, CreatedAt: Now})
		return err
	}), broker.ErrNotFound)
	wantErr(t, s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.EnsureCustomerKey(ctx, broker.CustomerKey{CustomerID: d.ID, KeyVersion: 1, CreatedAt: Now})
		return err
	}), broker.ErrInvalid)
}

func testForgetCustomer(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	keep := NewCustomer("bob")
	update(t, s, func(tx store.Tx) error { return tx.CreateCustomer(ctx, keep) })
	con := NewRequest(t, s, c.ID, f.ID)
	for _, id := range []broker.CustomerID{c.ID, keep.ID} {
		update(t, s, func(tx store.Tx) error {
			if _, err := tx.EnsureCustomerKey(ctx, broker.CustomerKey{CustomerID: id, Wrapped: []byte("k"), KeyVersion: 1, CreatedAt: Now}); err != nil {
				return err
			}
			if err := tx.PutRecord(ctx, broker.SealedRecord{CustomerID: id, Category: "Contact", Sealed: []byte("s"), Source: "customer", UpdatedAt: Now}); err != nil {
				return err
			}
			if _, err := tx.AddTerms(ctx, id, []byte(`{"version":1,"rules":[]}`), Now); err != nil {
				return err
			}
			_, err := tx.Pseudonym(ctx, id, f.ID)
			return err
		})
	}
	var psn broker.Pseudonym
	view(t, s, func(tx store.Tx) (err error) { psn, err = tx.Pseudonym(ctx, c.ID, f.ID); return err })
	tomb := broker.NewTombstone()
	update(t, s, func(tx store.Tx) error { return tx.ForgetCustomer(ctx, c.ID, tomb) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetCustomer(ctx, c.ID)
		if err != nil {
			return err
		}
		want := broker.Customer{ID: c.ID, Handle: tomb, Jurisdiction: c.Jurisdiction, CreatedAt: c.CreatedAt}
		if diff := cmp.Diff(want, got); diff != "" || !got.Forgotten() {
			t.Errorf("forgotten customer (-want +got):\n%s", diff)
		}
		_, err = tx.GetCustomerKey(ctx, c.ID)
		wantErr(t, err, broker.ErrNotFound)
		recs, _ := tx.ListRecords(ctx, c.ID)
		terms, _ := tx.ListTerms(ctx, c.ID)
		if len(recs) != 0 || len(terms) != 0 {
			t.Errorf("after forget: %d records, %d terms versions; want none", len(recs), len(terms))
		}
		// The consent stays, for accountability, naming only the anonymised row.
		if _, err := tx.GetConsent(ctx, con.ID); err != nil {
			t.Errorf("consent gone after forget: %v", err)
		}
		// The other customer is untouched.
		if k, err := tx.GetCustomerKey(ctx, keep.ID); err != nil || string(k.Wrapped) != "k" {
			t.Errorf("other customer's key = %v, %v", k, err)
		}
		recs, _ = tx.ListRecords(ctx, keep.ID)
		if len(recs) != 1 {
			t.Errorf("other customer has %d records, want 1", len(recs))
		}
		return nil
	})
	// The pseudonym mapping is gone: the firm's pseudonym resolves to nobody.
	view(t, s, func(tx store.Tx) error {
		_, err := tx.ResolvePseudonym(ctx, f.ID, psn)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.ForgetCustomer(ctx, broker.NewCustomerID(), broker.NewTombstone()) }), broker.ErrNotFound)
}

func testTerms(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, _ := Fixture(t, s)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.LatestTerms(ctx, c.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
	docs := []string{`{"version":1,"rules":[]}`, `{"version":1,"rules":[{"effect":"deny"}]}`}
	for i, d := range docs {
		update(t, s, func(tx store.Tx) error {
			tv, err := tx.AddTerms(ctx, c.ID, []byte(d), Now.Add(time.Duration(i)*time.Second))
			if err != nil {
				return err
			}
			if tv.Version != i+1 || tv.Hash != broker.HashDocument([]byte(d)) {
				t.Errorf("AddTerms = version %d hash %s", tv.Version, tv.Hash)
			}
			return nil
		})
	}
	view(t, s, func(tx store.Tx) error {
		latest, err := tx.LatestTerms(ctx, c.ID)
		if err != nil {
			return err
		}
		if latest.Version != 2 || string(latest.Document) != docs[1] {
			t.Errorf("LatestTerms = v%d %s; want v2 with the exact bytes saved", latest.Version, latest.Document)
		}
		all, err := tx.ListTerms(ctx, c.ID)
		if err != nil || len(all) != 2 || all[0].Version != 1 {
			t.Errorf("ListTerms = %v, %v", all, err)
		}
		return nil
	})
}

func testConsentLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	narrowed := RequestScope()
	narrowed.Categories = []string{"Contact"}
	narrowed.Duration = broker.MustParseDuration("P30D")
	steps := []func(broker.Consent) (broker.Consent, broker.ConsentEvent, error){
		func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Grant(RequestScope(), Now.Add(time.Minute), "customer")
		},
		func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Narrow(narrowed, Now.Add(2*time.Minute), "customer")
		},
		func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Revoke(Now.Add(3*time.Minute), "customer", "changed my mind")
		},
	}
	for i, step := range steps {
		update(t, s, func(tx store.Tx) error {
			cur, err := tx.GetConsent(ctx, con.ID)
			if err != nil {
				return err
			}
			next, ev, err := step(cur)
			if err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
			return tx.UpdateConsent(ctx, next, ev)
		})
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetConsent(ctx, con.ID)
		if err != nil {
			return err
		}
		if got.State != broker.ConsentRevoked || got.Version != 4 || !got.EndedAt.Equal(Now.Add(3*time.Minute)) {
			t.Errorf("final consent = %+v", got)
		}
		if want := narrowed.Duration.AddTo(Now.Add(time.Minute)); !got.ExpiresAt.Equal(want) {
			t.Errorf("ExpiresAt = %v, want %v (narrowing shortens expiry)", got.ExpiresAt, want)
		}
		if diff := cmp.Diff([]string{"Contact"}, got.Granted.Categories); diff != "" {
			t.Errorf("granted categories (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(RequestScope(), got.Requested); diff != "" {
			t.Errorf("requested scope changed (-want +got):\n%s", diff)
		}
		hist, err := tx.ConsentHistory(ctx, con.ID)
		if err != nil {
			return err
		}
		checkHistory(t, got, hist)
		var states []broker.ConsentState
		for _, e := range hist {
			states = append(states, e.To)
		}
		want := []broker.ConsentState{broker.ConsentRequested, broker.ConsentGranted, broker.ConsentGranted, broker.ConsentRevoked}
		if diff := cmp.Diff(want, states); diff != "" {
			t.Errorf("history states (-want +got):\n%s", diff)
		}
		return nil
	})

	// Expiry and denial paths on fresh requests.
	exp := NewRequest(t, s, c.ID, f.ID)
	den := NewRequest(t, s, c.ID, f.ID)
	update(t, s, func(tx store.Tx) error {
		g, ev, err := exp.Grant(RequestScope(), Now, "customer")
		if err != nil {
			return err
		}
		if err := tx.UpdateConsent(ctx, g, ev); err != nil {
			return err
		}
		e, ev, err := g.Expire(g.ExpiresAt)
		if err != nil {
			return err
		}
		if err := tx.UpdateConsent(ctx, e, ev); err != nil {
			return err
		}
		d, ev, err := den.Deny(Now, "customer", "no thanks")
		if err != nil {
			return err
		}
		return tx.UpdateConsent(ctx, d, ev)
	})
	view(t, s, func(tx store.Tx) error {
		e, _ := tx.GetConsent(ctx, exp.ID)
		d, _ := tx.GetConsent(ctx, den.ID)
		if e.State != broker.ConsentExpired || d.State != broker.ConsentDenied {
			t.Errorf("states = %s, %s; want expired, denied", e.State, d.State)
		}
		return nil
	})
}

// checkHistory verifies that a consent's history replays to its state.
func checkHistory(t *testing.T, c broker.Consent, hist []broker.ConsentEvent) {
	t.Helper()
	if len(hist) != c.Version {
		t.Fatalf("history has %d events, consent version %d", len(hist), c.Version)
	}
	prev := broker.ConsentState("")
	for i, e := range hist {
		if e.Seq != i+1 || e.From != prev {
			t.Fatalf("event %d = seq %d from %q, want seq %d from %q", i, e.Seq, e.From, i+1, prev)
		}
		if prev.Final() {
			t.Fatalf("event %d leaves final state %s", i, prev)
		}
		prev = e.To
	}
	if prev != c.State {
		t.Fatalf("history ends in %s, consent is %s", prev, c.State)
	}
}

func testConsentIllegalTransitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	wider := RequestScope()
	wider.Categories = append(wider.Categories, "Location")
	longer := RequestScope()
	longer.Duration = broker.MustParseDuration("P1Y")
	denied := NewRequest(t, s, c.ID, f.ID)
	granted := NewRequest(t, s, c.ID, f.ID)
	update(t, s, func(tx store.Tx) error {
		d, ev, _ := denied.Deny(Now, "customer", "")
		if err := tx.UpdateConsent(ctx, d, ev); err != nil {
			return err
		}
		g, ev, _ := granted.Grant(RequestScope(), Now, "customer")
		return tx.UpdateConsent(ctx, g, ev)
	})
	type move func(broker.Consent) (broker.Consent, broker.ConsentEvent, error)
	cases := []struct {
		name string
		id   broker.ConsentID
		move move
		want error
	}{
		{"revoke denied", denied.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Revoke(Now, "customer", "")
		}, broker.ErrTransition},
		{"grant denied", denied.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Grant(RequestScope(), Now, "customer")
		}, broker.ErrTransition},
		{"grant granted", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Grant(RequestScope(), Now, "customer")
		}, broker.ErrTransition},
		{"deny granted", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Deny(Now, "customer", "")
		}, broker.ErrTransition},
		{"expire before time", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Expire(Now.Add(time.Hour))
		}, broker.ErrTransition},
		{"narrow wider categories", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Narrow(wider, Now, "customer")
		}, broker.ErrScopeWidened},
		{"narrow longer", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Narrow(longer, Now, "customer")
		}, broker.ErrScopeWidened},
		{"narrow after expiry", granted.ID, func(x broker.Consent) (broker.Consent, broker.ConsentEvent, error) {
			return x.Narrow(RequestScope(), x.ExpiresAt, "customer")
		}, broker.ErrTransition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before broker.Consent
			var hist []broker.ConsentEvent
			view(t, s, func(tx store.Tx) (err error) {
				before, err = tx.GetConsent(ctx, tc.id)
				if err != nil {
					return err
				}
				hist, err = tx.ConsentHistory(ctx, tc.id)
				return err
			})
			err := s.Update(ctx, func(tx store.Tx) error {
				cur, err := tx.GetConsent(ctx, tc.id)
				if err != nil {
					return err
				}
				next, ev, err := tc.move(cur)
				if err != nil {
					return err
				}
				return tx.UpdateConsent(ctx, next, ev)
			})
			wantErr(t, err, tc.want)
			view(t, s, func(tx store.Tx) error {
				after, err := tx.GetConsent(ctx, tc.id)
				if err != nil {
					return err
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("refused transition changed the consent (-before +after):\n%s", diff)
				}
				h, err := tx.ConsentHistory(ctx, tc.id)
				if len(h) != len(hist) || err != nil {
					t.Errorf("history grew from %d to %d events", len(hist), len(h))
				}
				return nil
			})
		})
	}
	// Expired consents cannot be granted: the state machine has no way back.
	exp := NewRequest(t, s, c.ID, f.ID)
	update(t, s, func(tx store.Tx) error {
		g, ev, _ := exp.Grant(RequestScope(), Now, "customer")
		if err := tx.UpdateConsent(ctx, g, ev); err != nil {
			return err
		}
		e, ev, err := g.Expire(g.ExpiresAt.Add(time.Second))
		if err != nil {
			return err
		}
		return tx.UpdateConsent(ctx, e, ev)
	})
	err := s.Update(ctx, func(tx store.Tx) error {
		cur, _ := tx.GetConsent(ctx, exp.ID)
		_, _, err := cur.Grant(RequestScope(), Now, "customer")
		return err
	})
	wantErr(t, err, broker.ErrTransition)
}

func testConsentStaleVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	g, gev, _ := con.Grant(RequestScope(), Now, "customer")
	d, dev, _ := con.Deny(Now, "customer", "")
	update(t, s, func(tx store.Tx) error { return tx.UpdateConsent(ctx, g, gev) })
	// A writer that read version 1 loses: its deny must not overwrite the grant.
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateConsent(ctx, d, dev) }), broker.ErrConflict)
	missing := g
	missing.ID = broker.NewConsentID()
	gev.ConsentID = missing.ID
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateConsent(ctx, missing, gev) }), broker.ErrNotFound)
}

// testConsentConcurrency runs 50 goroutines that each try to grant, narrow
// or revoke the same consent. Whatever interleaving the backend allows,
// the consent ends in a legal state and its history replays to it.
func testConsentConcurrency(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	const workers = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range workers {
		wg.Go(func() {
			at := Now.Add(time.Duration(i) * time.Second)
			err := s.Update(ctx, func(tx store.Tx) error {
				cur, err := tx.GetConsent(ctx, con.ID)
				if err != nil {
					return err
				}
				var next broker.Consent
				var ev broker.ConsentEvent
				switch i % 3 {
				case 0:
					next, ev, err = cur.Grant(RequestScope(), at, "customer")
				case 1:
					sc := cur.Granted
					if len(sc.Categories) > 1 {
						sc.Categories = sc.Categories[:len(sc.Categories)-1]
					}
					next, ev, err = cur.Narrow(sc, at, "customer")
				case 2:
					next, ev, err = cur.Revoke(at, "customer", "")
				}
				if err != nil {
					return err
				}
				return tx.UpdateConsent(ctx, next, ev)
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				outcomes["ok"]++
			case errors.Is(err, broker.ErrTransition), errors.Is(err, broker.ErrScopeWidened), errors.Is(err, broker.ErrConflict):
				outcomes["refused"]++
			default:
				t.Errorf("worker %d: unexpected error %v", i, err)
			}
		})
	}
	wg.Wait()
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetConsent(ctx, con.ID)
		if err != nil {
			return err
		}
		hist, err := tx.ConsentHistory(ctx, con.ID)
		if err != nil {
			return err
		}
		checkHistory(t, got, hist)
		if got.Version-1 != outcomes["ok"] {
			t.Errorf("%d successful updates but version %d", outcomes["ok"], got.Version)
		}
		if !slices.Contains([]broker.ConsentState{broker.ConsentRequested, broker.ConsentGranted, broker.ConsentRevoked}, got.State) {
			t.Errorf("final state %s is not reachable by grant/narrow/revoke", got.State)
		}
		grants := 0
		for _, e := range hist {
			if e.From == broker.ConsentRequested && e.To == broker.ConsentGranted {
				grants++
			}
		}
		if grants > 1 {
			t.Errorf("consent granted %d times", grants)
		}
		return nil
	})
}

func testConsentListing(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	other := NewFirm("Other Telecom", "telecom")
	update(t, s, func(tx store.Tx) error { return tx.CreateFirm(ctx, other) })
	a := NewRequest(t, s, c.ID, f.ID)
	NewRequest(t, s, c.ID, other.ID)
	update(t, s, func(tx store.Tx) error {
		g, ev, _ := a.Grant(RequestScope(), Now, "customer")
		return tx.UpdateConsent(ctx, g, ev)
	})
	view(t, s, func(tx store.Tx) error {
		byFirm, _ := tx.ListConsents(ctx, store.ConsentFilter{FirmID: f.ID})
		byCustomer, _ := tx.ListConsents(ctx, store.ConsentFilter{CustomerID: c.ID})
		granted, _ := tx.ListConsents(ctx, store.ConsentFilter{State: broker.ConsentGranted})
		soon, _ := tx.ListConsents(ctx, store.ConsentFilter{ExpiringBy: Now.AddDate(0, 0, 89)})
		due, err := tx.ListConsents(ctx, store.ConsentFilter{ExpiringBy: Now.AddDate(0, 0, 90)})
		if err != nil {
			return err
		}
		if len(byFirm) != 1 || len(byCustomer) != 2 || len(granted) != 1 || len(soon) != 0 || len(due) != 1 {
			t.Errorf("listing counts: firm %d customer %d granted %d expiring-early %d due %d; want 1 2 1 0 1",
				len(byFirm), len(byCustomer), len(granted), len(soon), len(due))
		}
		return nil
	})
}

func testDisclosures(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	salt := broker.NewSalt()
	d := broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: con.ID, FirmID: f.ID, CustomerID: c.ID,
		Categories: []string{"Contact"}, Fields: map[string][]string{"Contact": {"email"}}, At: Now, ReceiptID: "rcpt-1",
		Purpose: "ServiceProvision", Commitment: broker.Commit(salt, []byte(`{}`)), Salt: salt}
	plain := d
	plain.ID, plain.Fields, plain.At, plain.Salt, plain.Commitment = broker.NewDisclosureID(), nil, Now.Add(time.Second), nil, ""
	update(t, s, func(tx store.Tx) error {
		if err := tx.InsertDisclosure(ctx, d); err != nil {
			return err
		}
		return tx.InsertDisclosure(ctx, plain)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListDisclosures(ctx, c.ID, store.Page{})
		if err != nil {
			return err
		}
		want := []broker.Disclosure{d, plain}
		slices.SortFunc(want, func(a, b broker.Disclosure) int { return cmpString(string(a.ID), string(b.ID)) })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListDisclosures (-want +got):\n%s", diff)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.CountDisclosuresSince(ctx, con.ID, []time.Time{Now.Add(time.Hour), Now, Now.Add(time.Millisecond), Now.Add(-time.Hour)})
		if err != nil {
			return err
		}
		if diff := cmp.Diff([]int{0, 2, 1, 2}, got); diff != "" {
			t.Errorf("CountDisclosuresSince (-want +got):\n%s", diff)
		}
		return nil
	})
	bad := d
	bad.ID, bad.ConsentID = broker.NewDisclosureID(), broker.NewConsentID()
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.InsertDisclosure(ctx, bad) }), broker.ErrNotFound)
	// A disclosure names its consent's firm and customer, no others.
	otherFirm, otherCustomer := NewFirm("Other Retail Ltd", "retail"), NewCustomer("carol")
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateFirm(ctx, otherFirm); err != nil {
			return err
		}
		return tx.CreateCustomer(ctx, otherCustomer)
	})
	wrongFirm, wrongCustomer := d, d
	wrongFirm.ID, wrongFirm.FirmID = broker.NewDisclosureID(), otherFirm.ID
	wrongCustomer.ID, wrongCustomer.CustomerID = broker.NewDisclosureID(), otherCustomer.ID
	for _, bad := range []broker.Disclosure{wrongFirm, wrongCustomer} {
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.InsertDisclosure(ctx, bad) }), broker.ErrNotFound)
	}

	// Forgetting the customer destroys the salts that open the commitments.
	update(t, s, func(tx store.Tx) error { return tx.ForgetCustomer(ctx, c.ID, "forgotten-"+string(c.ID)) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.ListDisclosures(ctx, c.ID, store.Page{})
		if err != nil {
			return err
		}
		for _, g := range got {
			if g.Salt != nil || (g.ID == d.ID && g.Commitment != d.Commitment) {
				t.Errorf("after forget: disclosure %s salt %x commitment %q", g.ID, g.Salt, g.Commitment)
			}
		}
		return nil
	})
}

func testRecordDisclosure(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	rec := broker.NewDecisionRecord(c.ID, f.ID, con.ID, broker.DataRequest{Scope: RequestScope()},
		broker.Decision{Kind: broker.DecisionAccess, Effect: broker.EffectAllow, PolicyHash: "sha256:" + strings.Repeat("ab", 32), DecidedAt: Now})
	sealed, err := broker.SealDecision(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := sealed.Hash()
	d := broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: con.ID, FirmID: f.ID, CustomerID: c.ID, Categories: []string{"Contact"},
		Purpose: "Marketing", At: Now, ReceiptID: "leaf", Commitment: broker.Commit(broker.NewSalt(), []byte(`{}`))}
	entry, err := broker.Entry{Type: broker.EntryDisclosure, Time: Now, Firm: f.ID, Customer: broker.NewPseudonym(), Consent: con.ID,
		Disclosure: d.ID, Categories: []string{"Contact"}, Purpose: "Marketing", DecisionHash: want, Commitment: d.Commitment}.CanonicalBytes()
	if err != nil {
		t.Fatal(err)
	}
	// A malformed entry stores nothing at all.
	wantErr(t, s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.RecordDisclosures(ctx, []store.DisclosureWrite{{Decision: sealed, Disclosure: &d, Entry: []byte(`{"type":"disclosure"}`)}})
		return err
	}), broker.ErrInvalid)
	// A disclosure under an unknown consent fails as a whole too.
	bad := d
	bad.ID, bad.ConsentID = broker.NewDisclosureID(), broker.NewConsentID()
	wantErr(t, s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.RecordDisclosures(ctx, []store.DisclosureWrite{{Decision: sealed, Disclosure: &bad, Entry: entry}})
		return err
	}), broker.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		if ds, _ := tx.ListDisclosures(ctx, c.ID, store.Page{}); len(ds) != 0 {
			t.Errorf("a failed RecordDisclosure left %d disclosures", len(ds))
		}
		if _, err := tx.GetDecision(ctx, want); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("a failed RecordDisclosure left its decision: %v", err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		got, err := tx.RecordDisclosures(ctx, []store.DisclosureWrite{{Decision: sealed, Disclosure: &d, Entry: entry}})
		if err == nil && got[0] != want {
			t.Errorf("RecordDisclosure hash %s, want %s", got, want)
		}
		return err
	})
	view(t, s, func(tx store.Tx) error {
		ds, err := tx.ListDisclosures(ctx, c.ID, store.Page{})
		if err != nil || len(ds) != 1 || ds[0].ID != d.ID {
			t.Errorf("disclosures after RecordDisclosure: %v %v", ds, err)
		}
		if _, err := tx.GetDecision(ctx, want); err != nil {
			t.Errorf("decision after RecordDisclosure: %v", err)
		}
		return nil
	})

	// Many fetches' writes at once: a refusal (its decision only), two
	// disclosures, and the same decision twice (stored once).
	refusal := broker.NewDecisionRecord(c.ID, f.ID, con.ID, broker.DataRequest{Scope: RequestScope()},
		broker.Decision{Kind: broker.DecisionAccess, Effect: broker.EffectDeny, PolicyHash: "sha256:" + strings.Repeat("cd", 32), DecidedAt: Now})
	var writes []store.DisclosureWrite
	for range 2 {
		d := d
		d.ID = broker.NewDisclosureID()
		e, err := broker.Entry{Type: broker.EntryDisclosure, Time: Now, Firm: f.ID, Customer: broker.NewPseudonym(), Consent: con.ID,
			Disclosure: d.ID, Categories: []string{"Contact"}, Purpose: "Marketing", DecisionHash: want, Commitment: d.Commitment}.CanonicalBytes()
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, store.DisclosureWrite{Decision: sealed, Disclosure: &d, Entry: e})
	}
	sealedRefusal, err := broker.SealDecision(refusal)
	if err != nil {
		t.Fatal(err)
	}
	writes = append(writes, store.DisclosureWrite{Decision: sealedRefusal})
	// A malformed entry among them stores nothing at all, nor does an
	// entry without its disclosure, nor a decision never sealed.
	for _, bad := range []store.DisclosureWrite{{Decision: sealed, Disclosure: writes[0].Disclosure, Entry: []byte(`{}`)},
		{Decision: sealed, Entry: writes[0].Entry}, {Decision: broker.SealedDecision{}}} {
		wantErr(t, s.Update(ctx, func(tx store.Tx) error {
			_, err := tx.RecordDisclosures(ctx, append(slices.Clone(writes), bad))
			return err
		}), broker.ErrInvalid)
	}
	var hashes []string
	update(t, s, func(tx store.Tx) (err error) {
		hashes, err = tx.RecordDisclosures(ctx, writes)
		return err
	})
	refused := sealedRefusal.Hash()
	if diff := cmp.Diff([]string{want, want, refused}, hashes); diff != "" {
		t.Errorf("RecordDisclosures hashes (-want +got):\n%s", diff)
	}
	view(t, s, func(tx store.Tx) error {
		if ds, err := tx.ListDisclosures(ctx, c.ID, store.Page{}); err != nil || len(ds) != 3 {
			t.Errorf("disclosures after RecordDisclosures: %d, %v; want 3", len(ds), err)
		}
		// Numbered in turn, the two of one statement included.
		if n, err := tx.CountDisclosuresSince(ctx, con.ID, []time.Time{Now.Add(-time.Hour), Now}); err != nil || !slices.Equal(n, []int{3, 3}) {
			t.Errorf("CountDisclosuresSince after RecordDisclosures = %v, %v; want [3 3]", n, err)
		}
		if _, err := tx.GetDecision(ctx, refused); err != nil {
			t.Errorf("refusal after RecordDisclosures: %v", err)
		}
		return nil
	})
}

// testDPoPProofs: a proof is used once until it expires, and a replay
// fails the transaction that offers it, whether the backend reports it at
// the call or (sending it with what follows) at a later statement or the
// commit: nothing the transaction wrote stays.
func testDPoPProofs(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	key := "proof-" + string(broker.NewDisclosureID())
	use := func(key string, exp, now time.Time) (broker.DisclosureID, error) {
		id := broker.NewDisclosureID()
		return id, s.Update(ctx, func(tx store.Tx) error {
			if err := tx.UseDPoPProof(ctx, key, exp, now); err != nil {
				return err
			}
			if err := tx.InsertDisclosure(ctx, broker.Disclosure{ID: id, ConsentID: con.ID, FirmID: f.ID, CustomerID: c.ID,
				Categories: []string{"Contact"}, At: now, ReceiptID: "r"}); err != nil {
				return err
			}
			_, err := tx.GetConsent(ctx, con.ID)
			return err
		})
	}
	stored := func() []broker.DisclosureID {
		var ids []broker.DisclosureID
		view(t, s, func(tx store.Tx) error {
			ds, err := tx.ListDisclosures(ctx, c.ID, store.Page{})
			for _, d := range ds {
				ids = append(ids, d.ID)
			}
			return err
		})
		slices.Sort(ids)
		return ids
	}
	first, err := use(key, Now.Add(time.Minute), Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := use(key, Now.Add(time.Minute), Now.Add(time.Second)); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("replayed proof: %v, want ErrConflict", err)
	}
	if diff := cmp.Diff([]broker.DisclosureID{first}, stored()); diff != "" {
		t.Errorf("a replay's transaction left rows (-want +got):\n%s", diff)
	}
	// Twice in one transaction is a replay too.
	err = s.Update(ctx, func(tx store.Tx) error {
		k := key + "-twice"
		if err := tx.UseDPoPProof(ctx, k, Now.Add(time.Minute), Now); err != nil {
			return err
		}
		return tx.UseDPoPProof(ctx, k, Now.Add(time.Minute), Now)
	})
	wantErr(t, err, broker.ErrConflict)
	// Once expired, the key may be recorded again.
	again, err := use(key, Now.Add(3*time.Minute), Now.Add(2*time.Minute))
	if err != nil {
		t.Fatalf("proof key after expiry: %v", err)
	}
	want := []broker.DisclosureID{first, again}
	slices.Sort(want)
	if diff := cmp.Diff(want, stored()); diff != "" {
		t.Errorf("disclosures (-want +got):\n%s", diff)
	}
}

// testAccessContexts: several consents read at once come back in the
// order asked, each with its own error (unknown consent, replayed proof)
// while the others stand; proofs are recorded; and transactions reading
// overlapping sets in opposite orders never deadlock.
func testAccessContexts(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	var cons []broker.Consent
	for range 4 {
		cons = append(cons, NewRequest(t, s, c.ID, f.ID))
	}
	used := "proof-" + string(broker.NewDisclosureID())
	update(t, s, func(tx store.Tx) error {
		if err := tx.UseDPoPProof(ctx, used, Now.Add(time.Minute), Now); err != nil {
			return err
		}
		for _, cat := range []string{"Contact", "Preference"} {
			if err := tx.PutRecord(ctx, broker.SealedRecord{CustomerID: c.ID, Category: cat, Sealed: []byte("sealed " + cat),
				Source: "customer", UpdatedAt: Now}); err != nil {
				return err
			}
		}
		for _, at := range []time.Time{Now.Add(-30 * time.Minute), Now} {
			if err := tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: cons[3].ID, FirmID: f.ID,
				CustomerID: c.ID, Categories: []string{"Contact"}, At: at, ReceiptID: "r"}); err != nil {
				return err
			}
		}
		return nil
	})
	proof := func(key string) *store.ProofUse {
		return &store.ProofUse{Key: key, Expires: Now.Add(time.Minute)}
	}
	// All reads at one time, then one at another: the answers are the
	// same, and each is what it would be alone.
	for _, mixed := range []bool{false, true} {
		fresh, twice := "proof-"+string(broker.NewDisclosureID()), "proof-"+string(broker.NewDisclosureID())
		at := Now
		if mixed {
			at = Now.Add(time.Second)
		}
		reads := []store.AccessRead{
			{Consent: cons[3].ID, AccessQuery: store.AccessQuery{Now: Now, Proof: proof(fresh),
				Since: []time.Time{Now.Add(-time.Hour), Now.Add(time.Hour)}, Records: true}},
			{Consent: broker.NewConsentID(), AccessQuery: store.AccessQuery{Now: Now}},
			{Consent: cons[0].ID, AccessQuery: store.AccessQuery{Now: Now, Proof: proof(twice), Records: true}},
			{Consent: cons[2].ID, AccessQuery: store.AccessQuery{Now: Now, Proof: proof(used)}},
			{Consent: cons[1].ID, AccessQuery: store.AccessQuery{Now: at, Proof: proof(twice)}},
		}
		update(t, s, func(tx store.Tx) error {
			acs, errs, err := tx.ReadAccessContexts(ctx, reads)
			if err != nil {
				return err
			}
			for i, want := range []broker.ConsentID{cons[3].ID, "", cons[0].ID, "", cons[1].ID} {
				if errs[i] == nil && acs[i].Consent.ID != want {
					t.Errorf("mixed %v, read %d: consent %q, want %q", mixed, i, acs[i].Consent.ID, want)
				}
			}
			if errs[0] != nil {
				t.Errorf("mixed %v: a good read failed: %v", mixed, errs[0])
			}
			if !errors.Is(errs[1], broker.ErrNotFound) {
				t.Errorf("mixed %v, unknown consent: %v, want ErrNotFound", mixed, errs[1])
			}
			if !errors.Is(errs[3], store.ErrProofReplayed) || !errors.Is(errs[3], broker.ErrConflict) {
				t.Errorf("mixed %v, replayed proof: %v, want ErrProofReplayed", mixed, errs[3])
			}
			// One proof on two reads: one of them is the replay.
			if a, b := errors.Is(errs[2], store.ErrProofReplayed), errors.Is(errs[4], store.ErrProofReplayed); a == b || errs[2] != nil && !a || errs[4] != nil && !b {
				t.Errorf("mixed %v, one proof twice: %v, %v; want exactly one ErrProofReplayed", mixed, errs[2], errs[4])
			}
			// Each good read is what it would be alone.
			for i, r := range reads {
				if errs[i] != nil {
					continue
				}
				q := r.AccessQuery
				q.Proof = nil
				alone, err := tx.ReadAccessContext(ctx, r.Consent, q)
				if err != nil {
					return err
				}
				if diff := cmp.Diff(alone, acs[i]); diff != "" {
					t.Errorf("mixed %v, read %d with others (-alone +with others):\n%s", mixed, i, diff)
				}
			}
			if diff := cmp.Diff([]int{2, 0}, acs[0].Counts); diff != "" {
				t.Errorf("mixed %v, counts (-want +got):\n%s", mixed, diff)
			}
			if len(acs[0].Records) != 2 {
				t.Errorf("mixed %v: %d records, want 2", mixed, len(acs[0].Records))
			}
			return nil
		})
		wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UseDPoPProof(ctx, fresh, Now.Add(time.Minute), Now) }), store.ErrProofReplayed)
	}
	err := s.View(ctx, func(tx store.Tx) error {
		_, _, err := tx.ReadAccessContexts(ctx, []store.AccessRead{{Consent: cons[0].ID, AccessQuery: store.AccessQuery{Now: Now, Proof: proof("in-a-view")}}})
		return err
	})
	if err == nil {
		t.Error("a proof was recorded in a read-only transaction")
	}

	// Overlapping sets in opposite orders, with writes, all at once: no
	// transaction deadlocks (Update would run it again: count the runs).
	var runs atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			rs := make([]store.AccessRead, len(cons))
			for i, con := range cons {
				rs[i] = store.AccessRead{Consent: con.ID}
			}
			if g%2 == 1 {
				slices.Reverse(rs)
			}
			errc <- s.Update(ctx, func(tx store.Tx) error {
				runs.Add(1)
				if _, _, err := tx.ReadAccessContexts(ctx, rs); err != nil {
					return err
				}
				for _, r := range rs {
					if err := tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: r.Consent, FirmID: f.ID,
						CustomerID: c.ID, Categories: []string{"Contact"}, At: Now, ReceiptID: "r"}); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("concurrent reads: %v", err)
		}
	}
	if n := runs.Load(); n != 8 {
		t.Errorf("%d transaction runs for 8 transactions: some deadlocked and ran again", n)
	}
}

func testAccessContext(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	read := func() store.AccessContext {
		var a store.AccessContext
		update(t, s, func(tx store.Tx) (err error) {
			a, err = tx.ReadAccessContext(ctx, con.ID, store.AccessQuery{})
			return err
		})
		return a
	}
	a := read()
	if diff := cmp.Diff(store.AccessContext{Consent: con, Firm: f, Customer: c}, a); diff != "" {
		t.Errorf("ReadAccessContext without terms or pseudonym (-want +got):\n%s", diff)
	}
	var tv broker.TermsVersion
	var psn broker.Pseudonym
	var key broker.CustomerKey
	update(t, s, func(tx store.Tx) (err error) {
		if key, err = tx.EnsureCustomerKey(ctx, broker.CustomerKey{CustomerID: c.ID, Wrapped: []byte("wrapped"), KeyVersion: 1, CreatedAt: Now}); err != nil {
			return err
		}
		if _, err = tx.AddTerms(ctx, c.ID, []byte(`{"format":"steward.terms/v1","rules":[]}`), Now); err != nil {
			return err
		}
		if tv, err = tx.AddTerms(ctx, c.ID, []byte(`{"format":"steward.terms/v1","rules":[{"effect":"ask"}]}`), Now.Add(time.Second)); err != nil {
			return err
		}
		psn, err = tx.Pseudonym(ctx, c.ID, f.ID)
		return err
	})
	a = read()
	if diff := cmp.Diff(store.AccessContext{Consent: con, Firm: f, Customer: c, Terms: tv, Pseudonym: psn, Key: key}, a); diff != "" {
		t.Errorf("ReadAccessContext with terms and pseudonym (-want +got):\n%s", diff)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.ReadAccessContext(ctx, broker.NewConsentID(), store.AccessQuery{})
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})

	// Counts and records come with the context, as CountDisclosuresSince
	// and ListRecords give them; an unknown consent is still not found.
	other := NewCustomer("carol")
	recs := []broker.SealedRecord{
		{CustomerID: c.ID, Category: "Contact", Sealed: []byte("sealed contact"), Source: "customer", UpdatedAt: Now},
		{CustomerID: c.ID, Category: "Preference", Sealed: []byte("sealed preference"), Source: "customer", UpdatedAt: Now},
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, other); err != nil {
			return err
		}
		for _, r := range append(recs, broker.SealedRecord{CustomerID: other.ID, Category: "Contact", Sealed: []byte("x"), Source: "customer", UpdatedAt: Now}) {
			if err := tx.PutRecord(ctx, r); err != nil {
				return err
			}
		}
		// Three an hour apart, then two more at the time of the third:
		// the counts number ties too.
		for _, h := range []int{0, 1, 2, 2, 2} {
			if err := tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: con.ID, FirmID: f.ID, CustomerID: c.ID,
				Categories: []string{"Contact"}, At: Now.Add(time.Duration(h) * time.Hour), ReceiptID: "r"}); err != nil {
				return err
			}
		}
		return nil
	})
	since := []time.Time{Now.Add(-time.Hour), Now.Add(90 * time.Minute), Now.Add(time.Hour), Now.Add(2 * time.Hour), Now.Add(2*time.Hour + time.Microsecond)}
	for _, q := range []store.AccessQuery{{Since: since}, {Records: true}, {Since: since, Records: true}} {
		update(t, s, func(tx store.Tx) error {
			a, err := tx.ReadAccessContext(ctx, con.ID, q)
			if err != nil {
				return err
			}
			want := store.AccessContext{Consent: con, Firm: f, Customer: c, Terms: tv, Pseudonym: psn, Key: key, LastDisclosure: Now.Add(2 * time.Hour)}
			if q.Since != nil {
				want.Counts = []int{5, 3, 4, 3, 0}
				counts, err := tx.CountDisclosuresSince(ctx, con.ID, q.Since)
				if err != nil || !slices.Equal(counts, want.Counts) {
					t.Errorf("CountDisclosuresSince = %v, %v; want %v", counts, err, want.Counts)
				}
			}
			if q.Records {
				want.Records = recs
			}
			if diff := cmp.Diff(want, a); diff != "" {
				t.Errorf("ReadAccessContext(%+v) (-want +got):\n%s", q, diff)
			}
			_, err = tx.ReadAccessContext(ctx, broker.NewConsentID(), q)
			wantErr(t, err, broker.ErrNotFound)
			return nil
		})
	}

	// Explicit: granted by the customer, not by a standing allow.
	for _, tc := range []struct {
		actor string
		want  bool
	}{{"customer:" + string(c.ID), true}, {"terms:sha256:abc", false}} {
		con := NewRequest(t, s, c.ID, f.ID)
		granted, ev, err := con.Grant(con.Requested, Now, tc.actor)
		if err != nil {
			t.Fatal(err)
		}
		update(t, s, func(tx store.Tx) error { return tx.UpdateConsent(ctx, granted, ev) })
		got := func() store.AccessContext {
			var a store.AccessContext
			view(t, s, func(tx store.Tx) (err error) {
				a, err = tx.ReadAccessContext(ctx, con.ID, store.AccessQuery{})
				return err
			})
			return a
		}()
		if got.Explicit != tc.want {
			t.Errorf("granted by %s: Explicit = %v, want %v", tc.actor, got.Explicit, tc.want)
		}
	}
}

func testDeletionAttestations(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	a := broker.DeletionAttestation{ConsentID: con.ID, FirmID: f.ID, Categories: []string{"Contact"}, At: Now}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetDeletionAttestation(ctx, con.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
	update(t, s, func(tx store.Tx) error { return tx.AttestDeletion(ctx, a) })
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.AttestDeletion(ctx, a) }), broker.ErrConflict)
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetDeletionAttestation(ctx, con.ID)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("GetDeletionAttestation (-want +got):\n%s", diff)
		}
		return nil
	})
	unknown := a
	unknown.ConsentID = broker.NewConsentID()
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.AttestDeletion(ctx, unknown) }), broker.ErrNotFound)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testPseudonyms(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	g := NewFirm("Globex Insurance", "insurance")
	update(t, s, func(tx store.Tx) error { return tx.CreateFirm(ctx, g) })
	var pf, pg, again broker.Pseudonym
	view(t, s, func(tx store.Tx) error {
		_, err := tx.LookupPseudonym(ctx, c.ID, f.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
	update(t, s, func(tx store.Tx) (err error) {
		if pf, err = tx.Pseudonym(ctx, c.ID, f.ID); err != nil {
			return err
		}
		pg, err = tx.Pseudonym(ctx, c.ID, g.ID)
		return err
	})
	// Concurrent first use settles on one pseudonym.
	var wg sync.WaitGroup
	got := make([]broker.Pseudonym, 8)
	for i := range got {
		wg.Go(func() {
			if err := s.Update(ctx, func(tx store.Tx) (err error) { got[i], err = tx.Pseudonym(ctx, c.ID, f.ID); return err }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	view(t, s, func(tx store.Tx) (err error) {
		again, err = tx.Pseudonym(ctx, c.ID, f.ID)
		if err != nil {
			return err
		}
		looked, err := tx.LookupPseudonym(ctx, c.ID, f.ID)
		if looked != again {
			t.Errorf("LookupPseudonym = %q, Pseudonym = %q", looked, again)
		}
		return err
	})
	if pf == pg || pf == "" {
		t.Errorf("pseudonyms for two firms = %q, %q; want distinct", pf, pg)
	}
	for _, p := range append(got, again) {
		if p != pf {
			t.Errorf("pseudonym changed: %q then %q", pf, p)
		}
	}
	view(t, s, func(tx store.Tx) error {
		id, err := tx.ResolvePseudonym(ctx, f.ID, pf)
		if err != nil || id != c.ID {
			t.Errorf("ResolvePseudonym = %s, %v", id, err)
		}
		// Firm g cannot resolve firm f's pseudonym.
		_, err = tx.ResolvePseudonym(ctx, g.ID, pf)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
}

func testRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	c := NewCustomer("carol")
	err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateCustomer(ctx, c); err != nil {
			return err
		}
		return fmt.Errorf("later step: %w", boom)
	})
	wantErr(t, err, boom)
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetCustomer(ctx, c.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
}

// testConsentTokens checks the part of RevokeConsentTokens a store can
// see without the OAuth tables' writer: it ends nothing of a consent with
// no tokens, and refuses to run in a read-only transaction.
func testConsentTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	update(t, s, func(tx store.Tx) error {
		n, err := tx.RevokeConsentTokens(ctx, con.ID)
		if err != nil || n != 0 {
			t.Errorf("RevokeConsentTokens of a consent without tokens = %d, %v", n, err)
		}
		return nil
	})
	if err := s.View(ctx, func(tx store.Tx) error {
		_, err := tx.RevokeConsentTokens(ctx, con.ID)
		return err
	}); err == nil {
		t.Error("RevokeConsentTokens inside View succeeded")
	}
}

func testReadOnlyView(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := NewCustomer("dave")
	if err := s.View(ctx, func(tx store.Tx) error { return tx.CreateCustomer(ctx, c) }); err == nil {
		t.Fatal("CreateCustomer inside View succeeded")
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.GetCustomer(ctx, c.ID)
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
}

func testDecisions(t *testing.T, s store.Store) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	con := NewRequest(t, s, c.ID, f.ID)
	mk := func(effect broker.Effect, at time.Time, consent broker.ConsentID) broker.DecisionRecord {
		d := broker.Decision{Kind: broker.DecisionConsent, Effect: effect, Scope: RequestScope(),
			Reasons:   []broker.Reason{{Source: broker.ReasonTerms, Rule: 2, Text: "Your rule 2 allows Marketing by retail firms for up to 90 days"}},
			TermsHash: broker.HashDocument([]byte("terms")), PolicyHash: "sha256:policy", DecidedAt: at}
		return broker.NewDecisionRecord(c.ID, f.ID, consent, broker.DataRequest{Scope: RequestScope()}, d)
	}
	first, second := mk(broker.EffectAsk, Now, con.ID), mk(broker.EffectAllow, Now.Add(time.Minute), "")
	var h1, h2, again string
	update(t, s, func(tx store.Tx) (err error) {
		if h1, err = tx.InsertDecision(ctx, first); err != nil {
			return err
		}
		if h2, err = tx.InsertDecision(ctx, second); err != nil {
			return err
		}
		again, err = tx.InsertDecision(ctx, first)
		return err
	})
	if want, _ := first.Hash(); h1 != want || again != h1 || h1 == h2 {
		t.Errorf("hashes %s %s %s; want %s, stable and distinct", h1, h2, again, want)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.GetDecision(ctx, h1)
		if err != nil {
			return err
		}
		if gh, _ := got.Hash(); gh != h1 {
			t.Errorf("stored record hashes to %s, want %s", gh, h1)
		}
		if diff := cmp.Diff(first.Decision.Reasons, got.Decision.Reasons); diff != "" {
			t.Errorf("reasons (-want +got):\n%s", diff)
		}
		all, err := tx.ListDecisions(ctx, store.DecisionFilter{CustomerID: c.ID})
		if err != nil {
			return err
		}
		if len(all) != 2 || all[0].Decision.Effect != broker.EffectAllow {
			t.Errorf("ListDecisions = %d records, newest %v", len(all), all)
		}
		byConsent, _ := tx.ListDecisions(ctx, store.DecisionFilter{ConsentID: con.ID})
		older, _ := tx.ListDecisions(ctx, store.DecisionFilter{FirmID: f.ID, Before: Now.Add(time.Second)})
		if len(byConsent) != 1 || len(older) != 1 {
			t.Errorf("by consent %d, before %d; want 1, 1", len(byConsent), len(older))
		}
		_, err = tx.ListDecisions(ctx, store.DecisionFilter{})
		wantErr(t, err, broker.ErrInvalid)
		_, err = tx.GetDecision(ctx, "sha256:none")
		wantErr(t, err, broker.ErrNotFound)
		return nil
	})
}

func testWebhooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, f := Fixture(t, s)
	var ids []string
	update(t, s, func(tx store.Tx) error {
		for i := range 20 {
			d := broker.WebhookDelivery{ID: broker.NewWebhookID(), FirmID: f.ID, URL: "https://acme.example/hooks", EventType: "consent.revoked",
				Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)), NextAttemptAt: Now, CreatedAt: Now}
			ids = append(ids, d.ID)
			if err := tx.EnqueueWebhook(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	// Eight workers claim at once: every delivery goes to exactly one.
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var got []broker.WebhookDelivery
			err := s.Update(ctx, func(tx store.Tx) (err error) { got, err = tx.ClaimWebhooks(ctx, Now, 5, time.Minute); return err })
			if err != nil && !errors.Is(err, broker.ErrConflict) {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range got {
				claimed[d.ID]++
			}
		})
	}
	wg.Wait()
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times", id, n)
		}
	}
	// While leased, nothing more is handed out; after the lease, the rest is.
	var again []broker.WebhookDelivery
	update(t, s, func(tx store.Tx) (err error) {
		again, err = tx.ClaimWebhooks(ctx, Now.Add(time.Second), 100, time.Minute)
		return err
	})
	if len(again) != len(ids)-len(claimed) {
		t.Errorf("second claim got %d, want the %d unclaimed", len(again), len(ids)-len(claimed))
	}
	first := again
	if len(first) == 0 {
		update(t, s, func(tx store.Tx) (err error) {
			first, err = tx.ClaimWebhooks(ctx, Now.Add(2*time.Minute), 1, time.Minute)
			return err
		})
	}
	d := first[0]
	d.State, d.Attempts, d.DeliveredAt = broker.WebhookDelivered, 1, Now.Add(time.Second)
	update(t, s, func(tx store.Tx) error { return tx.FinishWebhook(ctx, d) })
	// A finished delivery cannot be finished again (a late worker loses).
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.FinishWebhook(ctx, d) }), broker.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		done, err := tx.ListWebhooks(ctx, broker.WebhookDelivered, store.Page{})
		if err != nil {
			return err
		}
		if len(done) != 1 || done[0].ID != d.ID || string(done[0].Payload) != string(d.Payload) || done[0].Attempts != 1 {
			t.Errorf("delivered list = %+v", done)
		}
		all, _ := tx.ListWebhooks(ctx, "", store.Page{})
		if len(all) != len(ids) {
			t.Errorf("%d deliveries listed, want %d", len(all), len(ids))
		}
		return nil
	})
}

// DisclosureSeqBackfill tests migration 0012 on s, a store migrated up to
// 0011: it stores disclosures as 0011 left the table (insertOld, no seq),
// out of time order and interleaved between two consents, runs migrate
// (the rest of the migrations), and checks that the frequency counts are
// right and that the next disclosure follows on.
func DisclosureSeqBackfill(t *testing.T, s store.Store, insertOld func(d broker.Disclosure) error, migrate func() ([]int, error)) {
	ctx := t.Context()
	c, f := Fixture(t, s)
	cons := []broker.Consent{NewRequest(t, s, c.ID, f.ID), NewRequest(t, s, c.ID, f.ID)}
	for i, h := range []int{2, 0, 1, 5} {
		if err := insertOld(broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: cons[i%2].ID, FirmID: f.ID, CustomerID: c.ID,
			At: Now.Add(time.Duration(h) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := migrate(); err != nil || !slices.Contains(applied, 12) {
		t.Fatalf("migrate applied %v, %v; want 12 among them", applied, err)
	}
	since := []time.Time{Now.Add(-time.Hour), Now.Add(90 * time.Minute), Now.Add(3 * time.Hour)}
	counts := func(con broker.ConsentID) (n []int) {
		t.Helper()
		update(t, s, func(tx store.Tx) (err error) {
			n, err = tx.CountDisclosuresSince(ctx, con, since)
			return err
		})
		return n
	}
	// cons[0]: at 2h and 1h; cons[1]: at 0h and 5h.
	if got := counts(cons[0].ID); !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("counts of the first consent after the migration = %v, want [2 1 0]", got)
	}
	if got := counts(cons[1].ID); !slices.Equal(got, []int{2, 1, 1}) {
		t.Errorf("counts of the second consent after the migration = %v, want [2 1 1]", got)
	}
	update(t, s, func(tx store.Tx) error {
		return tx.InsertDisclosure(ctx, broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: cons[1].ID, FirmID: f.ID,
			CustomerID: c.ID, Categories: []string{"Contact"}, At: Now.Add(6 * time.Hour), ReceiptID: "r"})
	})
	if got := counts(cons[1].ID); !slices.Equal(got, []int{3, 2, 2}) {
		t.Errorf("counts of the second consent after one more = %v, want [3 2 2]", got)
	}
}
