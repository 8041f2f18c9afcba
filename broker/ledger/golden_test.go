package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"golang.org/x/mod/sumdb/note"
)

// goldenDir holds a small ledger built deterministically by
// TestGoldenLedger. Verifier and CLI tests read it; rebuild it with
//
//	STEWARD_UPDATE_GOLDEN=1 go test -run TestGoldenLedger ./broker/ledger/
//
// and CI fails if a rebuild differs from what is committed.
const goldenDir = "testdata/ledger"

// goldenOrigin is the golden log's origin; its key is derived from a fixed
// seed, so it is a test key and nothing else.
const goldenOrigin = "golden.steward.test/ledger"

// goldenID makes a well-formed id from a counter.
func goldenID(prefix string, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := []byte("aaaaaaaaaaaaaaaaaaaaaaaaaa")
	for i := len(b) - 1; n > 0; i-- {
		b[i] = alphabet[n%32]
		n /= 32
	}
	return prefix + "_" + string(b)
}

func goldenHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return fmt.Sprintf("sha256:%x", h)
}

// goldenEntries tells a small story: a policy bundle, three firms, and
// customers granting, using, narrowing and revoking consents.
func goldenEntries(t *testing.T) [][]byte {
	t.Helper()
	at := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	var out [][]byte
	add := func(e broker.Entry) {
		at = at.Add(1500 * time.Millisecond)
		e.Time = at
		b, err := e.CanonicalBytes()
		if err != nil {
			t.Fatalf("golden entry %d: %v", len(out), err)
		}
		out = append(out, b)
	}
	add(broker.Entry{Type: broker.EntryPolicyBundle, BundleHash: goldenHash("bundle-1")})
	for f := range 3 {
		add(broker.Entry{Type: broker.EntryFirmRegistered, Firm: broker.FirmID(goldenID("firm", f))})
	}
	for c := 0; len(out) < 580; c++ {
		firm := broker.FirmID(goldenID("firm", c%3))
		psn := broker.Pseudonym(goldenID("psn", c))
		con := broker.ConsentID(goldenID("con", c))
		terms := goldenHash(fmt.Sprintf("terms-%d", c))
		cats := []string{"EmailAddress", "PhysicalAddress"}
		add(broker.Entry{Type: broker.EntryTermsVersioned, Customer: psn, TermsHash: terms})
		add(broker.Entry{Type: broker.EntryConsentRequested, Firm: firm, Customer: psn, Consent: con, Categories: cats, Purpose: "DirectMarketing"})
		if c%7 == 3 {
			add(broker.Entry{Type: broker.EntryConsentDenied, Firm: firm, Customer: psn, Consent: con, DecisionHash: goldenHash(fmt.Sprintf("deny-%d", c))})
			continue
		}
		add(broker.Entry{Type: broker.EntryConsentGranted, Firm: firm, Customer: psn, Consent: con, Categories: cats, Purpose: "DirectMarketing", DecisionHash: goldenHash(fmt.Sprintf("grant-%d", c)), TermsHash: terms})
		add(broker.Entry{Type: broker.EntryDisclosure, Firm: firm, Customer: psn, Consent: con, Disclosure: broker.DisclosureID(goldenID("dis", c)), Categories: cats, Purpose: "DirectMarketing", DecisionHash: goldenHash(fmt.Sprintf("access-%d", c)), TermsHash: terms, Commitment: goldenHash(fmt.Sprintf("content-%d", c))})
		switch c % 5 {
		case 0:
			add(broker.Entry{Type: broker.EntryConsentNarrowed, Firm: firm, Customer: psn, Consent: con, Categories: cats[:1], Purpose: "DirectMarketing"})
		case 1:
			add(broker.Entry{Type: broker.EntryConsentRevoked, Firm: firm, Customer: psn, Consent: con})
			add(broker.Entry{Type: broker.EntryDeletionAttested, Firm: firm, Customer: psn, Consent: con, Categories: cats})
		case 2:
			add(broker.Entry{Type: broker.EntryDataReturned, Firm: firm, Customer: psn, Consent: con, Categories: []string{"Interest"}, Commitment: goldenHash(fmt.Sprintf("returned-%d", c))})
		case 4:
			add(broker.Entry{Type: broker.EntryConsentExpired, Firm: firm, Customer: psn, Consent: con})
		}
	}
	add(broker.Entry{Type: broker.EntryFirmSuspended, Firm: broker.FirmID(goldenID("firm", 2))})
	return out
}

func goldenKey(t *testing.T) (note.Signer, string) {
	t.Helper()
	seed := sha256.Sum256([]byte("steward golden ledger test key"))
	skey, vkey, err := note.GenerateKey(bytes.NewReader(seed[:]), goldenOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func TestGoldenLedger(t *testing.T) {
	signer, vkey := goldenKey(t)
	s := memory.New()
	es := goldenEntries(t)
	// Integrate in a few steps, as a running log would.
	for _, part := range [][2]int{{0, 100}, {100, 300}, {300, len(es)}} {
		ledgertest.BuildLog(t, s, signer, es[part[0]:part[1]])
	}
	dir := goldenDir
	if os.Getenv("STEWARD_UPDATE_GOLDEN") == "" {
		dir = t.TempDir()
	} else if err := os.RemoveAll(goldenDir); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	if dir == goldenDir {
		t.Logf("rewrote %s (%d entries)", goldenDir, len(es))
		return
	}
	// Compare with the committed files.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, err := os.ReadFile(filepath.Join(goldenDir, rel))
		if err != nil {
			t.Errorf("golden ledger lacks %s (rebuild with STEWARD_UPDATE_GOLDEN=1): %v", rel, err)
			return nil
		}
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, want) {
			t.Errorf("golden %s differs from a rebuild (rebuild with STEWARD_UPDATE_GOLDEN=1)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGoldenLedgerVerifies(t *testing.T) {
	vkey, err := os.ReadFile(filepath.Join(goldenDir, "vkey"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Verify(t.Context(), verify.DirSource(goldenDir), verify.Config{VerifierKey: string(bytes.TrimSpace(vkey))})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("golden ledger:\n%s", rep)
	}
}
