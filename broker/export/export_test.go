package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/export"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
	"github.com/stewardhq/steward/broker/store/storetest"
	"github.com/stewardhq/steward/broker/vault"
)

// world is two customers, each with a vault, terms, consents with two
// firms, decisions and disclosures, all sequenced into the ledger.
type world struct {
	s            backend.Migrator
	vault        *vault.Service
	exp          *export.Service
	alice, bob   broker.Customer
	acme, globex broker.Firm
}

var decide consent.DecideConsent = func(_ context.Context, _ broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, now time.Time) (broker.Decision, error) {
	d := broker.Decision{Kind: broker.DecisionConsent, Effect: broker.EffectAsk, Scope: req.Scope, TermsHash: tv.Hash,
		PolicyHash: broker.HashDocument([]byte("policy")), DecidedAt: now,
		Reasons: []broker.Reason{{Source: broker.ReasonTerms, Rule: 1, Text: "Your rule 1 asks you about insurers"}}}
	if f.Sector == "retail" {
		d.Effect, d.Reasons = broker.EffectAllow, []broker.Reason{{Source: broker.ReasonTerms, Rule: 2, Text: "Your rule 2 allows retail firms"}}
	}
	return d, nil
}

func newWorld(t testing.TB, s backend.Migrator, disclosures int) *world {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, vault.KeySize)
	_, _ = rand.Read(key)
	v, err := vault.New(s, vault.Config{MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := export.New(export.Config{Store: s, Vault: v.RecordsTx, Ledger: s.Ledger()})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{s: s, vault: v, exp: exp,
		alice: storetest.NewCustomer("alice"), bob: storetest.NewCustomer("bob"),
		acme: storetest.NewFirm("Acme Retail Ltd", "retail"), globex: storetest.NewFirm("Globex Insurance", "insurance")}
	w.bob.Jurisdiction = "DE"
	if err := s.Update(ctx, func(tx store.Tx) error {
		for _, c := range []broker.Customer{w.alice, w.bob} {
			if err := tx.CreateCustomer(ctx, c); err != nil {
				return err
			}
			if _, err := tx.AddTerms(ctx, c.ID, []byte(`{"version":1,"owner":"`+c.Handle+`","rules":[]}`), storetest.Now); err != nil {
				return err
			}
		}
		for _, f := range []broker.Firm{w.acme, w.globex} {
			if err := tx.CreateFirm(ctx, f); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []broker.Customer{w.alice, w.bob} {
		for cat, val := range map[string]string{
			"Contact":    `{"email":"` + c.Handle + `@example.org","phone":"+44 20 7946 0018"}`,
			"Preference": `{"interests":["` + c.Handle + `-hobby"]}`,
			"Health":     `{"allergies":["` + c.Handle + `-allergy"]}`,
		} {
			if err := v.Put(ctx, c.ID, cat, json.RawMessage(val), "customer"); err != nil {
				t.Fatal(err)
			}
		}
	}
	cs := consent.New(s, decide, nil)
	req := broker.DataRequest{Scope: storetest.RequestScope()}
	for _, c := range []broker.Customer{w.alice, w.bob} {
		granted, err := cs.Request(ctx, c.ID, w.acme.ID, "", req)
		if err != nil {
			t.Fatal(err)
		}
		special := req
		special.Scope.Categories = []string{"Health"}
		special.Scope.Purpose = "AcademicResearch"
		asked, err := cs.Request(ctx, c.ID, w.globex.ID, "", special)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.Approve(ctx, c.ID, asked.Consent.ID, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.Revoke(ctx, c.ID, asked.Consent.ID, "changed my mind"); err != nil {
			t.Fatal(err)
		}
		n := 3
		if c.ID == w.alice.ID {
			n = disclosures
		}
		disclose(t, s, c, w.acme, granted, n)
	}
	if _, err := s.Ledger().Sequence(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for {
		before, _ := s.Ledger().Size(ctx)
		after, err := s.Ledger().Sequence(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if after == before {
			break
		}
	}
	return w
}

// disclose records n disclosures under a granted consent with their
// ledger entries, as the Data API will.
func disclose(t testing.TB, s store.Store, c broker.Customer, f broker.Firm, o consent.Outcome, n int) {
	t.Helper()
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		psn, err := tx.Pseudonym(ctx, c.ID, f.ID)
		if err != nil {
			return err
		}
		for i := range n {
			d := broker.Disclosure{ID: broker.NewDisclosureID(), ConsentID: o.Consent.ID, FirmID: f.ID, CustomerID: c.ID,
				Categories: []string{"Contact"}, At: storetest.Now.Add(time.Duration(i) * time.Millisecond), ReceiptID: "r"}
			if err := tx.InsertDisclosure(ctx, d); err != nil {
				return err
			}
			e := broker.Entry{Type: broker.EntryDisclosure, Time: d.At, Firm: f.ID, Customer: psn, Categories: d.Categories,
				Purpose: o.Consent.Granted.Purpose, Consent: o.Consent.ID, Disclosure: d.ID, DecisionHash: o.DecisionHash,
				TermsHash: broker.HashDocument([]byte("t")), Commitment: broker.Commit(broker.NewSalt(), []byte("v"))}
			b, err := e.CanonicalBytes()
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
		t.Fatal(err)
	}
}

func TestExport(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		w := newWorld(t, s, 5)
		a, err := w.exp.Export(ctx, w.alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Round trip: the archive is JSON that reads back to the same archive.
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var back export.Archive
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(*a, back); diff != "" {
			t.Errorf("archive JSON round trip (-exported +read back):\n%s", diff)
		}
		// Contents.
		if a.Format != export.FormatVersion || a.Customer.ID != w.alice.ID || a.Customer.Email != w.alice.Email {
			t.Errorf("profile = %+v", a.Customer)
		}
		if bytes.Contains(b, []byte("argon2")) || bytes.Contains(b, []byte("password")) {
			t.Error("archive carries a password hash")
		}
		if len(a.Vault) != 3 || !bytes.Contains(a.Vault[0].Value, []byte("alice@example.org")) {
			t.Errorf("vault = %v", a.Vault)
		}
		if len(a.Terms) != 1 || len(a.Consents) != 2 || len(a.Firms) != 2 || len(a.Pseudonyms) != 2 {
			t.Errorf("terms %d consents %d firms %d pseudonyms %d; want 1 2 2 2", len(a.Terms), len(a.Consents), len(a.Firms), len(a.Pseudonyms))
		}
		if len(a.Disclosures) != 5 || len(a.Decisions) != 2 {
			t.Errorf("disclosures %d decisions %d; want 5 2", len(a.Disclosures), len(a.Decisions))
		}
		states := map[broker.ConsentState]int{}
		for _, c := range a.Consents {
			states[c.State] = len(c.History)
			if len(c.Ledger) != len(c.History) {
				t.Errorf("consent %s: %d ledger entries for %d events", c.ID, len(c.Ledger), len(c.History))
			}
			for _, le := range c.Ledger {
				checkLeaf(t, le)
			}
		}
		if states[broker.ConsentGranted] != 2 || states[broker.ConsentRevoked] != 3 {
			t.Errorf("consent histories = %v; want granted after 2 events, revoked after 3", states)
		}
		for _, d := range a.Disclosures {
			if d.Ledger == nil || d.Ledger.Type != broker.EntryDisclosure {
				t.Errorf("disclosure %s has no ledger entry", d.ID)
				continue
			}
			checkLeaf(t, *d.Ledger)
			var e map[string]any
			_ = json.Unmarshal(d.Ledger.Entry, &e)
			if e["disclosure"] != string(d.ID) {
				t.Errorf("disclosure %s matched to entry %s", d.ID, d.Ledger.Entry)
			}
		}

		// Exactly alice's data: nothing that identifies bob or his records.
		bobArchive, err := w.exp.Export(ctx, w.bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		var bobIDs []string
		bobIDs = append(bobIDs, string(w.bob.ID), w.bob.Email, "bob-hobby", "bob-allergy", `"owner":"bob"`)
		for _, p := range bobArchive.Pseudonyms {
			bobIDs = append(bobIDs, string(p.Pseudonym))
		}
		for _, c := range bobArchive.Consents {
			bobIDs = append(bobIDs, string(c.ID))
			for _, le := range c.Ledger {
				bobIDs = append(bobIDs, le.LeafHash)
			}
		}
		for _, d := range bobArchive.Disclosures {
			bobIDs = append(bobIDs, string(d.ID))
		}
		for _, id := range bobIDs {
			if strings.Contains(string(b), strings.Trim(mustJSON(id), `"`)) {
				t.Errorf("alice's archive contains bob's %q", id)
			}
		}
		for _, d := range a.Decisions {
			if d.CustomerID != w.alice.ID {
				t.Errorf("decision of %s in alice's archive", d.CustomerID)
			}
		}
		if _, err := w.exp.Export(ctx, broker.NewCustomerID()); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("Export(unknown) = %v, want ErrNotFound", err)
		}
		if err := w.vault.Forget(ctx, w.alice.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := w.exp.Export(ctx, w.alice.ID); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("Export(forgotten) = %v, want ErrNotFound", err)
		}
	})
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkLeaf checks that a ledger entry's leaf hash is the RFC 6962 hash of
// its bytes, so the customer can check it against the public ledger.
func checkLeaf(t *testing.T, le export.LedgerEntry) {
	t.Helper()
	h := tlog.RecordHash(le.Entry)
	if le.LeafHash != base64.StdEncoding.EncodeToString(h[:]) || le.Index < 0 {
		t.Errorf("ledger entry %d: leaf hash %s does not match its bytes", le.Index, le.LeafHash)
	}
	if _, err := broker.ParseEntry(le.Entry); err != nil {
		t.Errorf("ledger entry %d: %v", le.Index, err)
	}
}

// TestConsentRecordsJSONLD checks the ISO/IEC 27560 consent records: JSON
// with an @context, one dpv:ConsentRecord per consent, DPV status names in
// history order, the pseudonym as data subject, the firm as controller,
// and DPV IRIs for purposes and categories.
func TestConsentRecordsJSONLD(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		w := newWorld(t, s, 1)
		a, err := w.exp.Export(t.Context(), w.alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Context map[string]any   `json:"@context"`
			Graph   []map[string]any `json:"@graph"`
		}
		if err := json.Unmarshal(a.ConsentRecords, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Context["dpv"] != "https://w3id.org/dpv#" || doc.Context["pd"] != "https://w3id.org/dpv/pd#" {
			t.Errorf("@context = %v", doc.Context)
		}
		if len(doc.Graph) != 2 {
			t.Fatalf("@graph has %d records, want 2", len(doc.Graph))
		}
		psn := map[string]string{}
		for _, p := range a.Pseudonyms {
			psn[string(p.FirmID)] = string(p.Pseudonym)
		}
		byFirm := map[string]map[string]any{}
		for _, r := range doc.Graph {
			if r["@type"] != "dpv:ConsentRecord" || r["dct:conformsTo"] != export.RecordSchema {
				t.Errorf("record type %v conforms to %v", r["@type"], r["dct:conformsTo"])
			}
			ctrl := r["dpv:hasDataController"].(map[string]any)
			firm := ctrl["dct:identifier"].(string)
			byFirm[firm] = r
			subj := r["dpv:hasDataSubject"].(map[string]any)
			if subj["@type"] != "dpv:DataSubject" || subj["dct:identifier"] != psn[firm] || psn[firm] == "" {
				t.Errorf("data subject = %v, want the pseudonym %s", subj, psn[firm])
			}
		}
		statuses := func(r map[string]any) []string {
			var out []string
			for _, s := range r["dpv:hasConsentStatus"].([]any) {
				out = append(out, s.(map[string]any)["@type"].(string))
			}
			return out
		}
		acme, globex := byFirm[string(w.acme.ID)], byFirm[string(w.globex.ID)]
		if diff := cmp.Diff([]string{"dpv:ConsentRequested", "dpv:ConsentGiven"}, statuses(acme)); diff != "" {
			t.Errorf("acme statuses (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"dpv:ConsentRequested", "dpv:ConsentGiven", "dpv:ConsentWithdrawn"}, statuses(globex)); diff != "" {
			t.Errorf("globex statuses (-want +got):\n%s", diff)
		}
		proc := acme["dpv:hasProcess"].(map[string]any)
		if proc["dpv:hasPurpose"] != "dpv:Marketing" || acme["dpv:hasLegalBasis"] != "dpv:ExpressedConsent" {
			t.Errorf("acme process = %v, basis %v", proc, acme["dpv:hasLegalBasis"])
		}
		if diff := cmp.Diff([]any{"pd:Contact", "pd:Preference", "pd:PurchasesAndSpendingHabit"}, proc["dpv:hasPersonalData"]); diff != "" {
			t.Errorf("acme personal data (-want +got):\n%s", diff)
		}
		gp := globex["dpv:hasProcess"].(map[string]any)
		health := gp["dpv:hasPersonalData"].([]any)[0].(map[string]any)
		if gp["dpv:hasPurpose"] != "dpv:AcademicResearch" || health["@type"] != "dpv:SpecialCategoryPersonalData" ||
			health["skos:broader"] != "pd:Health" || globex["dpv:hasLegalBasis"] != "dpv:ExplicitlyExpressedConsent" {
			t.Errorf("globex record = %v", globex)
		}
		dur := proc["dpv:hasDuration"].(map[string]any)
		if dur["@type"] != "dpv:TemporalDuration" || dur["rdf:value"].(map[string]any)["@value"] != "P90D" {
			t.Errorf("duration = %v", dur)
		}
		// Given under the customer's standing terms: indicated by the data subject.
		given := acme["dpv:hasConsentStatus"].([]any)[1].(map[string]any)
		req := acme["dpv:hasConsentStatus"].([]any)[0].(map[string]any)
		if given["dpv:isIndicatedBy"] != "dpv:DataSubject" || req["dpv:isIndicatedBy"] != "urn:steward:firm:"+string(w.acme.ID) {
			t.Errorf("indicated by: request %v, given %v", req["dpv:isIndicatedBy"], given["dpv:isIndicatedBy"])
		}
		if _, err := time.Parse(time.RFC3339Nano, given["dpv:isIndicatedAtTime"].(string)); err != nil {
			t.Errorf("event time: %v", err)
		}
		// No name, email or customer id anywhere in the JSON-LD.
		for _, pii := range []string{string(w.alice.ID), w.alice.Email, w.alice.DisplayName} {
			if bytes.Contains(a.ConsentRecords, []byte(pii)) {
				t.Errorf("consent records contain %q", pii)
			}
		}
	})
}

func TestCategoryIRIs(t *testing.T) {
	for _, c := range broker.Categories {
		for _, iri := range export.CategoryIRIs(c.Name) {
			if !strings.HasPrefix(iri, "pd:") {
				t.Errorf("%s → %s, want a pd: term", c.Name, iri)
			}
		}
	}
	for _, p := range broker.Purposes {
		if iri := export.PurposeIRI(p.Name); !strings.Contains(iri, ":"+p.Name) {
			t.Errorf("%s → %s", p.Name, iri)
		}
	}
	if got := export.CategoryIRIs("RacialOrEthnicOrigin"); len(got) != 2 {
		t.Errorf("RacialOrEthnicOrigin → %v", got)
	}
}

// BenchmarkExport1000Disclosures times one customer's export with 1,000
// disclosures, two consents and a vault, every ledger entry integrated so
// each receipt gets its inclusion proof, and the archive marshalled.
func BenchmarkExport1000Disclosures(b *testing.B) {
	backends := []string{"sqlite"}
	if os.Getenv("DATABASE_URL") != "" {
		backends = append(backends, "postgres")
	}
	for _, name := range backends {
		b.Run(name, func(b *testing.B) {
			url := "" // a fresh database each time the benchmark body runs
			if name == "postgres" {
				url = pgtest.URL(b)
			}
			s := backendtest.Open(b, url)
			w := newWorld(b, s, 1000)
			signer, _, _ := ledgertest.NewKey(b)
			if _, _, err := ledger.Integrate(b.Context(), s.Ledger(), signer, 2000); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				a, err := w.exp.Export(b.Context(), w.alice.ID)
				if err != nil {
					b.Fatal(err)
				}
				if len(a.Disclosures) != 1000 || a.Disclosures[999].Ledger == nil || !a.Disclosures[999].Ledger.Integrated() {
					b.Fatalf("%d disclosures", len(a.Disclosures))
				}
				if _, err := json.Marshal(a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestExportReceiptsVerify integrates the ledger, adds one more disclosure
// after the checkpoint, and checks that every entry the checkpoint covers
// carries a receipt that verifies offline with the log's key, and that
// the later one carries its index and leaf hash only.
func TestExportReceiptsVerify(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		ctx := t.Context()
		w := newWorld(t, s, 3)
		signer, verifier, _ := ledgertest.NewKey(t)
		if _, _, err := ledger.Integrate(ctx, s.Ledger(), signer, 1000); err != nil {
			t.Fatal(err)
		}
		var granted consent.Outcome
		a, err := w.exp.Export(ctx, w.alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range a.Consents {
			if c.State == broker.ConsentGranted {
				granted.Consent, granted.DecisionHash = c.Consent, broker.HashDocument([]byte("d"))
			}
		}
		disclose(t, s, w.alice, w.acme, granted, 1)
		if _, err := s.Ledger().Sequence(ctx, 0); err != nil {
			t.Fatal(err)
		}
		a, err = w.exp.Export(ctx, w.alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		var entries []export.LedgerEntry
		for _, c := range a.Consents {
			entries = append(entries, c.Ledger...)
		}
		for _, d := range a.Disclosures {
			if d.Ledger != nil {
				entries = append(entries, *d.Ledger)
			}
		}
		proved, late := 0, 0
		for _, le := range entries {
			if !le.Integrated() {
				late++
				continue
			}
			if _, err := ledger.VerifyReceipt(le.Receipt, le.Entry, verifier); err != nil {
				t.Errorf("receipt for entry %d: %v", le.Index, err)
			}
			proved++
		}
		if proved != 5+3 || late != 1 {
			t.Errorf("%d receipts with proofs, %d without; want 8 and 1", proved, late)
		}
	})
}
