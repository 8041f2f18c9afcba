package broker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	testTime = time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC)
	testHash = "sha256:" + strings.Repeat("ab", 32)
)

// sampleEntries returns one valid entry of every type, with fixed ids.
func sampleEntries() []Entry {
	firm := FirmID("firm_" + strings.Repeat("a", 26))
	psn := Pseudonym("psn_" + strings.Repeat("b", 26))
	con := ConsentID("con_" + strings.Repeat("c", 26))
	dis := DisclosureID("dis_" + strings.Repeat("d", 26))
	cats := []string{"EmailAddress", "PhysicalAddress"}
	return []Entry{
		{Type: EntryTermsVersioned, Time: testTime, Customer: psn, TermsHash: testHash},
		{Type: EntryConsentRequested, Time: testTime, Firm: firm, Customer: psn, Consent: con, Categories: cats, Purpose: "DirectMarketing"},
		{Type: EntryConsentGranted, Time: testTime, Firm: firm, Customer: psn, Consent: con, Categories: cats, Purpose: "DirectMarketing", DecisionHash: testHash, TermsHash: testHash},
		{Type: EntryConsentDenied, Time: testTime, Firm: firm, Customer: psn, Consent: con, DecisionHash: testHash},
		{Type: EntryConsentNarrowed, Time: testTime, Firm: firm, Customer: psn, Consent: con, Categories: cats[:1], Purpose: "DirectMarketing"},
		{Type: EntryConsentRevoked, Time: testTime, Firm: firm, Customer: psn, Consent: con},
		{Type: EntryConsentExpired, Time: testTime, Firm: firm, Customer: psn, Consent: con},
		{Type: EntryDisclosure, Time: testTime, Firm: firm, Customer: psn, Consent: con, Disclosure: dis, Categories: cats, Purpose: "DirectMarketing", DecisionHash: testHash, TermsHash: testHash, Commitment: testHash},
		{Type: EntryDataReturned, Time: testTime, Firm: firm, Customer: psn, Categories: []string{"Interest"}, Commitment: testHash},
		{Type: EntryDeletionAttested, Time: testTime, Firm: firm, Customer: psn, Consent: con},
		{Type: EntryFirmRegistered, Time: testTime, Firm: firm},
		{Type: EntryFirmSuspended, Time: testTime, Firm: firm},
		{Type: EntryPolicyBundle, Time: testTime, BundleHash: testHash},
	}
}

func TestEntryRoundTrip(t *testing.T) {
	samples := sampleEntries()
	if got, want := len(samples), len(EntryTypes()); got != want {
		t.Fatalf("sampleEntries has %d entries, want one of each of %d types", got, want)
	}
	for _, e := range samples {
		t.Run(string(e.Type), func(t *testing.T) {
			b, err := e.CanonicalBytes()
			if err != nil {
				t.Fatal(err)
			}
			canon, err := CanonicalJSON(b)
			if err != nil || !bytes.Equal(canon, b) {
				t.Fatalf("CanonicalBytes is not JCS: %s vs %s (%v)", b, canon, err)
			}
			got, err := ParseEntry(b)
			if err != nil {
				t.Fatalf("ParseEntry(%s): %v", b, err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEntryBytesGolden(t *testing.T) {
	e := sampleEntries()[7]
	b, err := e.CanonicalBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"categories":["EmailAddress","PhysicalAddress"],"commitment":"` + testHash + `","consent":"con_cccccccccccccccccccccccccc","customer":"psn_bbbbbbbbbbbbbbbbbbbbbbbbbb","decision_hash":"` + testHash + `","disclosure":"dis_dddddddddddddddddddddddddd","firm":"firm_aaaaaaaaaaaaaaaaaaaaaaaaaa","purpose":"DirectMarketing","terms_hash":"` + testHash + `","time":"2026-11-23T10:00:00.123Z","type":"disclosure","v":1}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestEntryValidateRefuses(t *testing.T) {
	base := sampleEntries()[2] // consent.granted
	tests := []struct {
		name string
		edit func(*Entry)
	}{
		{"unknown type", func(e *Entry) { e.Type = "consent.stolen" }},
		{"no time", func(e *Entry) { e.Time = time.Time{} }},
		{"missing required", func(e *Entry) { e.DecisionHash = "" }},
		{"field not allowed", func(e *Entry) { e.BundleHash = testHash }},
		{"bad firm id", func(e *Entry) { e.Firm = "acme" }},
		{"customer id, not pseudonym", func(e *Entry) { e.Customer = Pseudonym(NewCustomerID()) }},
		{"email as pseudonym", func(e *Entry) { e.Customer = "alice@example.com" }},
		{"unknown category", func(e *Entry) { e.Categories = []string{"ShoeSize"} }},
		{"unsorted categories", func(e *Entry) { e.Categories = []string{"PhysicalAddress", "EmailAddress"} }},
		{"duplicate categories", func(e *Entry) { e.Categories = []string{"Age", "Age"} }},
		{"unknown purpose", func(e *Entry) { e.Purpose = "Curiosity" }},
		{"upper-case hash", func(e *Entry) { e.TermsHash = strings.ToUpper(testHash) }},
		{"short hash", func(e *Entry) { e.TermsHash = "sha256:abcd" }},
		{"other algorithm", func(e *Entry) { e.TermsHash = "md5:" + strings.Repeat("0", 64) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.edit(&e)
			if _, err := e.CanonicalBytes(); !errors.Is(err, ErrInvalid) {
				t.Errorf("CanonicalBytes: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestParseEntryRefusesNonCanonical(t *testing.T) {
	good, err := sampleEntries()[10].CanonicalBytes() // firm.registered
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	firm := `"firm":"firm_aaaaaaaaaaaaaaaaaaaaaaaaaa"`
	tests := map[string]string{
		"space":            strings.Replace(g, `,`, `, `, 1),
		"newline":          g + "\n",
		"reordered":        `{"type":"firm.registered",` + firm + `,"time":"2026-11-23T10:00:00.123Z","v":1}`,
		"unknown member":   strings.Replace(g, `{`, `{"extra":1,`, 1),
		"duplicate member": strings.Replace(g, `{`, `{`+firm+`,`, 1),
		"upper-case name":  strings.Replace(g, `"type"`, `"TYPE"`, 1),
		"escaped char":     strings.Replace(g, `firm_a`, `firm_\u0061`, 1),
		"time without ms":  strings.Replace(g, `10:00:00.123Z`, `10:00:00Z`, 1),
		"time with offset": strings.Replace(g, `10:00:00.123Z`, `11:00:00.123+01:00`, 1),
		"version 2":        strings.Replace(g, `"v":1`, `"v":2`, 1),
		"version 1.0":      strings.Replace(g, `"v":1`, `"v":1.0`, 1),
		"null member":      strings.Replace(g, `{`, `{"consent":null,`, 1),
		"not an object":    `[]`,
		"empty":            ``,
		"two objects":      g + g,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEntry([]byte(in)); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseEntry(%s) = %v, want ErrInvalid", in, err)
			}
		})
	}
}

func TestCommit(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, SaltSize)
	c := Commit(salt, []byte(`{"email":"a@example.com"}`))
	if err := checkHash("commitment", c); err != nil {
		t.Fatal(err)
	}
	if !CheckCommitment(salt, []byte(`{"email":"a@example.com"}`), c) {
		t.Error("CheckCommitment refused the right content")
	}
	if CheckCommitment(salt, []byte(`{"email":"b@example.com"}`), c) {
		t.Error("CheckCommitment accepted other content")
	}
	if c == Commit(NewSalt(), []byte(`{"email":"a@example.com"}`)) {
		t.Error("commitments with different salts are equal")
	}
	defer func() {
		if recover() == nil {
			t.Error("Commit accepted a short salt")
		}
	}()
	Commit([]byte("short"), nil)
}

// TestWriteFuzzCorpus keeps testdata/fuzz/FuzzParseEntry in step with the
// sample entries: run with STEWARD_UPDATE_CORPUS=1 after changing the format.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("STEWARD_UPDATE_CORPUS") == "" {
		t.Skip("set STEWARD_UPDATE_CORPUS=1 to rewrite testdata/fuzz/FuzzParseEntry")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseEntry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range sampleEntries() {
		b, err := e.CanonicalBytes()
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, string(e.Type)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		b, err := e.CanonicalBytes()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseEntry error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Anything accepted is canonical, valid, and re-encodes to itself.
		again, err := e.CanonicalBytes()
		if err != nil {
			t.Fatalf("accepted entry does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted non-canonical bytes:\n%q\n%q", b, again)
		}
		if canon, err := CanonicalJSON(b); err != nil || !bytes.Equal(canon, b) {
			t.Fatalf("accepted bytes that are not JCS: %v", err)
		}
	})
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x\u0001"]}`, `1e30`, `"\ud83d\ude00"`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := CanonicalJSON(b)
		if err != nil {
			return
		}
		c2, err := CanonicalJSON(c)
		if err != nil {
			t.Fatalf("canonical output %q does not parse: %v", c, err)
		}
		if !bytes.Equal(c, c2) {
			t.Fatalf("not idempotent: %q -> %q", c, c2)
		}
	})
}
