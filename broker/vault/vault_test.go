package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
	"github.com/stewardhq/steward/broker/vault"
)

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, vault.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newService(t testing.TB, s store.Store, cfg vault.Config) *vault.Service {
	t.Helper()
	if cfg.MasterKey == nil {
		cfg.MasterKey = newKey(t)
	}
	v, err := vault.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func createCustomer(t testing.TB, s store.Store, handle string) broker.Customer {
	t.Helper()
	c := storetest.NewCustomer(handle)
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.CreateCustomer(context.Background(), c) }); err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	aliceContact = `{"phone":"+44 20 7946 0018","email":"alice@example.org","address":"12 Elm Row, London N1 2AB"}`
	alicePrefs   = `{"contact_by":"email","interests":["cycling","cooking"]}`
)

func mustPut(t *testing.T, v *vault.Service, c broker.CustomerID, cat, val string) {
	t.Helper()
	if err := v.Put(t.Context(), c, cat, json.RawMessage(val), "customer"); err != nil {
		t.Fatal(err)
	}
}

func rawRecords(t *testing.T, s store.Store, c broker.CustomerID) []broker.SealedRecord {
	t.Helper()
	var out []broker.SealedRecord
	if err := s.View(t.Context(), func(tx store.Tx) (err error) { out, err = tx.ListRecords(t.Context(), c); return err }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSealedAtRest(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		v := newService(t, s, vault.Config{})
		alice := createCustomer(t, s, "alice")
		mustPut(t, v, alice.ID, "Contact", aliceContact)
		mustPut(t, v, alice.ID, "Preference", alicePrefs)

		got, err := v.Records(t.Context(), alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"Contact":    `{"address":"12 Elm Row, London N1 2AB","email":"alice@example.org","phone":"+44 20 7946 0018"}`,
			"Preference": alicePrefs,
		}
		if len(got) != 2 {
			t.Fatalf("Records = %d, want 2", len(got))
		}
		for _, r := range got {
			if string(r.Value) != want[r.Category] || r.Source != "customer" {
				t.Errorf("%s = %s from %s; want %s", r.Category, r.Value, r.Source, want[r.Category])
			}
		}
		only, err := v.Records(t.Context(), alice.ID, "Preference")
		if err != nil || len(only) != 1 || only[0].Category != "Preference" {
			t.Errorf("Records(Preference) = %v, %v", only, err)
		}
		// The store holds only ciphertext: no plaintext byte sequence survives.
		for _, r := range rawRecords(t, s, alice.ID) {
			for _, needle := range []string{"alice@example.org", "7946", "cycling", "Elm Row"} {
				if bytes.Contains(r.Sealed, []byte(needle)) {
					t.Errorf("sealed %s record contains %q", r.Category, needle)
				}
			}
		}
		// Sealing is randomised: writing the same value twice gives new bytes.
		before := rawRecords(t, s, alice.ID)[0].Sealed
		mustPut(t, v, alice.ID, "Contact", aliceContact)
		if bytes.Equal(before, rawRecords(t, s, alice.ID)[0].Sealed) {
			t.Error("resealing the same value gave the same bytes; nonces must be random")
		}
	})
}

func TestSealedValuesAreBound(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		v := newService(t, s, vault.Config{})
		alice, bob := createCustomer(t, s, "alice"), createCustomer(t, s, "bob")
		mustPut(t, v, alice.ID, "Contact", aliceContact)
		mustPut(t, v, bob.ID, "Contact", `{"email":"bob@example.org"}`)
		mustPut(t, v, bob.ID, "Preference", `{"contact_by":"post"}`)
		stolen := rawRecords(t, s, alice.ID)[0]
		tests := []struct {
			name string
			rec  broker.SealedRecord
		}{
			{"alice's value copied to bob", broker.SealedRecord{CustomerID: bob.ID, Category: "Contact", Sealed: stolen.Sealed, Source: "x", UpdatedAt: time.Now()}},
			{"bob's Contact copied to his Preference", broker.SealedRecord{CustomerID: bob.ID, Category: "Preference", Sealed: rawRecords(t, s, bob.ID)[0].Sealed, Source: "x", UpdatedAt: time.Now()}},
			{"one bit flipped", broker.SealedRecord{CustomerID: alice.ID, Category: "Contact", Sealed: flip(stolen.Sealed), Source: "x", UpdatedAt: time.Now()}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutRecord(ctx, tc.rec) }); err != nil {
					t.Fatal(err)
				}
				_, err := v.Records(ctx, tc.rec.CustomerID, tc.rec.Category)
				if !errors.Is(err, broker.ErrUnreadable) {
					t.Errorf("Records after tampering: %v, want ErrUnreadable", err)
				}
			})
		}
	})
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 1
	return c
}

func TestPutRefuses(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		v := newService(t, s, vault.Config{})
		alice := createCustomer(t, s, "alice")
		for _, tc := range []struct{ cat, val string }{
			{"Horoscope", `{"sign":"leo"}`},
			{"Contact", `{"email":"not an email"}`},
			{"Contact", `{"fax":"+44 1"}`},
			{"Contact", `{}`},
			{"Demographic", `{"birth_year":1850}`},
			{"Demographic", `{"household_size":"3"}`},
			{"Contact", `{"address":"=HYPERLINK(\"http://evil\")"}`},
		} {
			err := v.Put(t.Context(), alice.ID, tc.cat, json.RawMessage(tc.val), "customer")
			if !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("Put(%s, %s) = %v, want ErrInvalid", tc.cat, tc.val, err)
			}
		}
		if err := v.Put(t.Context(), broker.NewCustomerID(), "Contact", json.RawMessage(aliceContact), "customer"); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("Put for an unknown customer = %v, want ErrNotFound", err)
		}
		if n := len(rawRecords(t, s, alice.ID)); n != 0 {
			t.Errorf("%d records stored after refusals, want 0", n)
		}
	})
}

// TestForget erases one of two customers and checks that nothing of hers
// can be read or linked, that the other is untouched, and that the ledger
// still verifies.
func TestForget(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		v := newService(t, s, vault.Config{})
		alice, bob := createCustomer(t, s, "alice"), createCustomer(t, s, "bob")
		firm := storetest.NewFirm("Acme Retail Ltd", "retail")
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateFirm(ctx, firm) }); err != nil {
			t.Fatal(err)
		}
		for _, c := range []broker.Customer{alice, bob} {
			mustPut(t, v, c.ID, "Contact", `{"email":"`+c.Handle+`@example.org"}`)
			mustPut(t, v, c.ID, "Preference", alicePrefs)
		}
		// A granted consent through package consent, and a bare requested
		// one with a hand-staged entry.
		allow := func(_ context.Context, _ broker.Customer, _ broker.Firm, _ broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
			return broker.Decision{Kind: broker.DecisionConsent, Effect: broker.EffectAllow, Scope: req.Scope, DecidedAt: now,
				Reasons: []broker.Reason{{Source: broker.ReasonTerms, Rule: 1, Text: "allowed"}}}, nil
		}
		granted, err := consent.New(s, allow, nil).Request(ctx, alice.ID, firm.ID, "", broker.DataRequest{Scope: storetest.RequestScope()})
		if err != nil || granted.Consent.State != broker.ConsentGranted {
			t.Fatalf("request: %v, %v", granted.Consent.State, err)
		}
		con := storetest.NewRequest(t, s, alice.ID, firm.ID)
		var psn broker.Pseudonym
		if err := s.Update(ctx, func(tx store.Tx) (err error) {
			if psn, err = tx.Pseudonym(ctx, alice.ID, firm.ID); err != nil {
				return err
			}
			e := broker.Entry{Type: broker.EntryConsentRequested, Time: storetest.Now, Firm: firm.ID, Customer: psn, Consent: con.ID,
				Categories: con.Requested.Categories, Purpose: con.Requested.Purpose}
			b, err := e.CanonicalBytes()
			if err != nil {
				return err
			}
			return tx.StageLedgerEntry(ctx, b)
		}); err != nil {
			t.Fatal(err)
		}
		signer, _, vkey := ledgertest.NewKey(t)
		lg := s.Ledger()
		integrate := func() {
			t.Helper()
			if _, err := lg.Sequence(ctx, 100); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ledger.Integrate(ctx, lg, signer, 100); err != nil {
				t.Fatal(err)
			}
		}
		integrate()
		stolen := rawRecords(t, s, alice.ID) // a copy that survives, as in a backup
		var wrapped broker.CustomerKey
		_ = s.View(ctx, func(tx store.Tx) (err error) { wrapped, err = tx.GetCustomerKey(ctx, alice.ID); return err })

		if err := v.Forget(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		if err := v.Forget(ctx, alice.ID); err != nil {
			t.Fatalf("second Forget: %v", err)
		}
		if err := v.Forget(ctx, broker.NewCustomerID()); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("Forget(unknown) = %v, want ErrNotFound", err)
		}

		// Her open consents ended, each with its ledger entry.
		if err := s.View(ctx, func(tx store.Tx) error {
			for id, want := range map[broker.ConsentID]broker.ConsentState{granted.Consent.ID: broker.ConsentRevoked, con.ID: broker.ConsentDenied} {
				c, err := tx.GetConsent(ctx, id)
				if err != nil {
					return err
				}
				if c.State != want {
					t.Errorf("consent %s is %s after Forget, want %s", id, c.State, want)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := consent.New(s, allow, nil).Request(ctx, alice.ID, firm.ID, "", broker.DataRequest{Scope: storetest.RequestScope()}); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("consent request for a forgotten customer: %v, want ErrNotFound", err)
		}

		// Nothing of alice's is readable or linkable.
		if recs, err := v.Records(ctx, alice.ID); err != nil || len(recs) != 0 {
			t.Errorf("Records after Forget = %v, %v; want none", recs, err)
		}
		if n := len(rawRecords(t, s, alice.ID)); n != 0 {
			t.Errorf("%d sealed rows remain", n)
		}
		// Put the surviving ciphertext back: it still cannot be opened,
		// because the key that sealed it is gone.
		err = s.Update(ctx, func(tx store.Tx) error {
			for _, r := range stolen {
				if err := tx.PutRecord(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Records(ctx, alice.ID); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("opening surviving ciphertext after Forget: %v, want an error (no data key)", err)
		}
		if err := s.Update(ctx, func(tx store.Tx) error {
			_, err := tx.EnsureCustomerKey(ctx, wrapped) // even the old wrapped key, restored from a backup…
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// (with the master key it would: backups of customer_keys must expire)
		other := newService(t, s, vault.Config{}) // …does not open without the master key
		if _, err := other.Records(ctx, alice.ID); !errors.Is(err, broker.ErrUnreadable) {
			t.Errorf("opening with another master key: %v, want ErrUnreadable", err)
		}
		var got broker.Customer
		if err := s.View(ctx, func(tx store.Tx) (err error) {
			got, err = tx.GetCustomer(ctx, alice.ID)
			if err != nil {
				return err
			}
			_, err = tx.ResolvePseudonym(ctx, firm.ID, psn)
			if !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("pseudonym still resolves: %v", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !got.Forgotten() || got.DisplayName != "" || got.Email != "" || got.PasswordHash != "" || strings.Contains(got.Handle, "alice") {
			t.Errorf("customer row after Forget = %+v", got)
		}

		// Bob is untouched.
		recs, err := v.Records(ctx, bob.ID)
		if err != nil || len(recs) != 2 || string(recs[0].Value) != `{"email":"bob@example.org"}` {
			t.Errorf("bob's vault = %v, %v", recs, err)
		}

		// The ledger still verifies, and never named alice.
		integrate()
		dir := t.TempDir()
		if err := ledger.Export(ctx, lg, dir, vkey); err != nil {
			t.Fatal(err)
		}
		rep, err := verify.Verify(ctx, verify.DirSource(dir), verify.Config{VerifierKey: vkey})
		if err != nil || !rep.OK() {
			t.Fatalf("ledger after Forget: %v\n%s", err, rep)
		}
		leaves, err := lg.ReadLeaves(ctx, 0, int(rep.Checkpoint.Size))
		if err != nil {
			t.Fatal(err)
		}
		var types []broker.EntryType
		for _, l := range leaves {
			e, _ := broker.ParseEntry(l)
			types = append(types, e.Type)
		}
		wantTypes := []broker.EntryType{broker.EntryConsentRequested, broker.EntryConsentGranted, broker.EntryConsentRequested}
		if len(types) != 5 || !slices.Equal(types[:3], wantTypes) || !slices.Contains(types[3:], broker.EntryConsentRevoked) || !slices.Contains(types[3:], broker.EntryConsentDenied) {
			t.Errorf("ledger entry types = %v; want %v then a revocation and a refusal", types, wantTypes)
		}
		for _, l := range leaves {
			for _, pii := range []string{string(alice.ID), alice.Handle, alice.Email, alice.DisplayName} {
				if bytes.Contains(l, []byte(pii)) {
					t.Errorf("ledger entry %s names alice (%q)", l, pii)
				}
			}
		}
	})
}

func TestRewrap(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		old := newKey(t)
		v1 := newService(t, s, vault.Config{MasterKey: old})
		var cs []broker.Customer
		for _, h := range []string{"alice", "bob", "carol"} {
			c := createCustomer(t, s, h)
			mustPut(t, v1, c.ID, "Contact", `{"email":"`+h+`@example.org"}`)
			cs = append(cs, c)
		}
		next := newKey(t)
		v2 := newService(t, s, vault.Config{MasterKey: next, KeyVersion: 2, RetiredKeys: map[int][]byte{1: old}})
		// Before rewrap, v2 reads version-1 keys through its retired key.
		if recs, err := v2.Records(ctx, cs[0].ID); err != nil || len(recs) != 1 {
			t.Fatalf("v2 before rewrap: %v, %v", recs, err)
		}
		n, err := v2.Rewrap(ctx)
		if err != nil || n != 3 {
			t.Fatalf("Rewrap = %d, %v; want 3", n, err)
		}
		if n, err := v2.Rewrap(ctx); err != nil || n != 0 {
			t.Errorf("second Rewrap = %d, %v; want 0", n, err)
		}
		// Every key moved: the new master key alone reads them all, the old one none.
		v3 := newService(t, s, vault.Config{MasterKey: next, KeyVersion: 2})
		for _, c := range cs {
			recs, err := v3.Records(ctx, c.ID)
			if err != nil || len(recs) != 1 {
				t.Errorf("after rewrap %s: %v, %v", c.Handle, recs, err)
			}
			if _, err := v1.Records(ctx, c.ID); !errors.Is(err, broker.ErrUnreadable) {
				t.Errorf("old master key still reads %s: %v", c.Handle, err)
			}
		}
		var keys []broker.CustomerKey
		_ = s.View(ctx, func(tx store.Tx) (err error) { keys, err = tx.ListCustomerKeys(ctx, store.Page{}); return err })
		for _, k := range keys {
			if k.KeyVersion != 2 {
				t.Errorf("key of %s at version %d after rewrap", k.CustomerID, k.KeyVersion)
			}
		}
	})
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "master.key")
	c1, err := vault.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if len(c1.MasterKey) != vault.KeySize || c1.KeyVersion != 1 || c1.RetiredKeys != nil {
		t.Fatalf("new key file config = version %d, %d bytes, retired %v", c1.KeyVersion, len(c1.MasterKey), c1.RetiredKeys)
	}
	again, err := vault.LoadOrCreateKeyFile(path)
	if err != nil || !bytes.Equal(again.MasterKey, c1.MasterKey) {
		t.Fatalf("reload gave another key: %v", err)
	}
	c2, err := vault.RotateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.KeyVersion != 2 || bytes.Equal(c2.MasterKey, c1.MasterKey) || !bytes.Equal(c2.RetiredKeys[1], c1.MasterKey) {
		t.Errorf("rotated config = version %d retired %v", c2.KeyVersion, c2.RetiredKeys)
	}
	if diff := cmp.Diff(c2, must(vault.LoadOrCreateKeyFile(path))); diff != "" {
		t.Errorf("reload after rotate (-rotated +reloaded):\n%s", diff)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.LoadOrCreateKeyFile(path); err == nil {
		t.Error("a world-readable key file was accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("1 abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.LoadOrCreateKeyFile(bad); err == nil {
		t.Error("a short key was accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestNewRefusesBadKeys(t *testing.T) {
	for _, cfg := range []vault.Config{
		{},
		{MasterKey: make([]byte, 16)},
		{MasterKey: make([]byte, 32), KeyVersion: -1},
		{MasterKey: make([]byte, 32), KeyVersion: 2, RetiredKeys: map[int][]byte{1: make([]byte, 31)}},
	} {
		if _, err := vault.New(nil, cfg); err == nil {
			t.Errorf("New(%d-byte key, version %d) succeeded", len(cfg.MasterKey), cfg.KeyVersion)
		}
	}
}

// TestConcurrentFirstPut writes a new customer's first records from many
// goroutines at once: they must all end up sealed under the one data key
// that won, so every record opens.
func TestConcurrentFirstPut(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		v := newService(t, s, vault.Config{})
		alice := createCustomer(t, s, "alice")
		cats := []string{"Contact", "Preference", "Gender", "Religion", "Interest", "Genetic"}
		vals := []string{aliceContact, alicePrefs, `{"gender":"f"}`, `{"religion":"none"}`, `{"interests":["x"]}`, `{"summary":"y"}`}
		errs := make(chan error, len(cats))
		for i := range cats {
			go func() { errs <- v.Put(t.Context(), alice.ID, cats[i], json.RawMessage(vals[i]), "customer") }()
		}
		for range cats {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		recs, err := v.Records(t.Context(), alice.ID)
		if err != nil || len(recs) != len(cats) {
			t.Fatalf("Records = %d, %v; want %d", len(recs), err, len(cats))
		}
	})
}

// TestOpenRecords: opening records and a key the caller read already gives
// the same records as RecordsTx; a missing key, another customer's key or
// another customer's record is refused, and a record that does not open
// fails the whole call.
func TestOpenRecords(t *testing.T) {
	s := backendtest.Open(t, "")
	v := newService(t, s, vault.Config{})
	alice, bob := createCustomer(t, s, "alice"), createCustomer(t, s, "bob")
	mustPut(t, v, alice.ID, "Contact", aliceContact)
	mustPut(t, v, alice.ID, "Preference", alicePrefs)
	mustPut(t, v, bob.ID, "Preference", alicePrefs)
	ctx := t.Context()
	err := s.View(ctx, func(tx store.Tx) error {
		k, err := tx.GetCustomerKey(ctx, alice.ID)
		if err != nil {
			return err
		}
		sealed, err := tx.ListRecords(ctx, alice.ID)
		if err != nil {
			return err
		}
		bobs, err := tx.ListRecords(ctx, bob.ID)
		if err != nil {
			return err
		}
		want, err := v.RecordsTx(ctx, tx, alice.ID, "Preference")
		if err != nil {
			return err
		}
		got, err := v.OpenRecords(k, alice.ID, sealed, "Preference")
		if err != nil || len(got) != 1 || string(got[0].Value) != string(want[0].Value) {
			t.Errorf("OpenRecords = %v, %v; want %v", got, err, want)
		}
		if len(sealed) != 2 {
			t.Errorf("OpenRecords changed the records it was given: %d left", len(sealed))
		}
		if got, err := v.OpenRecords(k, alice.ID, sealed, "Location"); err != nil || len(got) != 0 {
			t.Errorf("OpenRecords of a category with no record = %v, %v", got, err)
		}
		if _, err := v.OpenRecords(broker.CustomerKey{}, alice.ID, sealed); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("OpenRecords without a key: %v, want ErrNotFound", err)
		}
		if _, err := v.OpenRecords(k, bob.ID, bobs); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("OpenRecords with another customer's key: %v, want ErrInvalid", err)
		}
		if _, err := v.OpenRecords(k, alice.ID, append(slices.Clone(sealed), bobs...)); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("OpenRecords with another customer's record: %v, want ErrInvalid", err)
		}
		bad := slices.Clone(sealed)
		bad[0].Sealed = append(slices.Clone(bad[0].Sealed[:len(bad[0].Sealed)-1]), bad[0].Sealed[len(bad[0].Sealed)-1]^1)
		if _, err := v.OpenRecords(k, alice.ID, bad); !errors.Is(err, broker.ErrUnreadable) {
			t.Errorf("OpenRecords of a tampered record: %v, want ErrUnreadable", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
