package verify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/ledger/witness"
)

func exported(t *testing.T, n int) (string, string, [][]byte) {
	t.Helper()
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(t)
	es := ledgertest.Entries(t, n)
	ledgertest.BuildLog(t, s, signer, es)
	dir := t.TempDir()
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	return dir, vkey, es
}

func TestVerifyDirectory(t *testing.T) {
	dir, vkey, _ := exported(t, 700)
	state := filepath.Join(t.TempDir(), "state.json")
	rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey, StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !strings.HasPrefix(rep.String(), "PASS steward.test/ledger size 700 ") {
		t.Fatalf("report:\n%s", rep)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("state not saved: %v", err)
	}
	// Second run starts from the saved state and still passes.
	rep, err = verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey, StatePath: state})
	if err != nil || !rep.OK() || rep.Previous == nil || rep.Previous.Size != 700 {
		t.Fatalf("second run: %v\n%s", err, rep)
	}
}

func TestVerifyDirectoryTampered(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string, es [][]byte)
		kind   verify.Kind
		index  int64
	}{
		{"entry edited in a bundle", func(t *testing.T, dir string, es [][]byte) {
			p := filepath.Join(dir, "tile/entries/001")
			b, _ := os.ReadFile(p)
			b2 := strings.Replace(string(b), "00.257Z", "00.999Z", 1) // same length, still canonical
			os.WriteFile(p, []byte(b2), 0o644)
		}, verify.EntryChanged, 257},
		{"bundle deleted", func(t *testing.T, dir string, es [][]byte) {
			os.Remove(filepath.Join(dir, "tile/entries/001"))
		}, verify.EntryMissing, 256},
		{"bundle cut short", func(t *testing.T, dir string, es [][]byte) {
			p := filepath.Join(dir, "tile/entries/001")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-3], 0o644)
		}, verify.BadBundle, 256},
		{"hash tile edited", func(t *testing.T, dir string, es [][]byte) {
			p := filepath.Join(dir, "tile/0/001")
			b, _ := os.ReadFile(p)
			b[0] ^= 1
			os.WriteFile(p, b, 0o644)
		}, verify.TileMismatch, 256},
		{"entries and tiles both rewritten", func(t *testing.T, dir string, es [][]byte) {
			p := filepath.Join(dir, "tile/entries/001")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), "00.257Z", "00.999Z", 1)), 0o644)
			q := filepath.Join(dir, "tile/0/001")
			h, _ := os.ReadFile(q)
			h[32] ^= 1
			os.WriteFile(q, h, 0o644)
		}, verify.RootMismatch, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, vkey, es := exported(t, 700)
			tc.tamper(t, dir, es)
			rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				if p.Kind == tc.kind && p.Index == tc.index {
					return
				}
			}
			t.Errorf("want %s at %d; got:\n%s", tc.kind, tc.index, rep)
		})
	}
}

func TestVerifyNonCanonicalEntry(t *testing.T) {
	// A log that signed a non-canonical entry is itself at fault.
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(t)
	es := ledgertest.Entries(t, 3)
	es[1] = append([]byte(" "), es[1]...)
	ledgertest.BuildLog(t, s, signer, es)
	dir := t.TempDir()
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != verify.BadEntry || rep.Problems[0].Index != 1 {
		t.Errorf("want bad-entry at 1; got:\n%s", rep)
	}
}

func TestVerifyServerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	_, vkey, _ := exported(t, 1)
	if _, err := verify.Verify(context.Background(), verify.HTTPSource{BaseURL: srv.URL}, verify.Config{VerifierKey: vkey}); err == nil {
		t.Error("Verify against a failing server returned no error")
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	dir, vkey, _ := exported(t, 0)
	rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey})
	if err != nil || !rep.OK() || rep.Checkpoint.Size != 0 {
		t.Fatalf("%v\n%s", err, rep)
	}
}

func TestVerifyWitnessed(t *testing.T) {
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(t)
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 20))
	wkey, wvkey, err := witness.GenerateKey("w1.test")
	if err != nil {
		t.Fatal(err)
	}
	_, w2vkey, _ := witness.GenerateKey("w2.test")
	w, err := witness.New(witness.Config{Key: wkey, Logs: []string{vkey}})
	if err != nil {
		t.Fatal(err)
	}
	size, msg, _ := s.ReadCheckpoint(t.Context())
	line, err := w.AddCheckpoint(t.Context(), 0, nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCosignature(t.Context(), size, "w1.test", line); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		keys []string
		min  int
		ok   bool
	}{
		{[]string{wvkey}, 0, true},
		{[]string{wvkey, w2vkey}, 1, true},
		{[]string{wvkey, w2vkey}, 0, false},
		{[]string{w2vkey}, 0, false},
	} {
		rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey, WitnessKeys: tc.keys, MinWitnesses: tc.min})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() != tc.ok || (!tc.ok && !rep.Has(verify.Unwitnessed)) {
			t.Errorf("%d keys, min %d: ok=%v\n%s", len(tc.keys), tc.min, rep.OK(), rep)
		}
	}
}

func TestMirrorAndJSON(t *testing.T) {
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(t)
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 300))
	h, err := ledger.Handler(s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	c, err := verify.Mirror(t.Context(), verify.HTTPSource{BaseURL: srv.URL + "/ledger/", Client: srv.Client()}, dir)
	if err != nil || c.Size != 300 {
		t.Fatalf("Mirror: %+v, %v", c, err)
	}
	rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey})
	if err != nil || !rep.OK() {
		t.Fatalf("mirror does not verify: %v\n%s", err, rep)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"ok":true,"origin":"steward.test/ledger","size":300,"root":"`) || !strings.HasSuffix(string(b), `"problems":[]}`) {
		t.Errorf("JSON report: %s", b)
	}
}

func TestVerifyForgedCheckpointIsNotAFork(t *testing.T) {
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(t)
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 10))
	dir := t.TempDir()
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state.json")
	if rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey, StatePath: state}); err != nil || !rep.OK() {
		t.Fatalf("%v\n%s", err, rep)
	}
	// Someone without the key writes a checkpoint with another root.
	forger, _, _ := ledgertest.NewKey(t)
	forged, _ := ledger.SignCheckpoint(ledger.Checkpoint{Origin: ledgertest.Origin, Size: 10, Hash: ledger.EmptyRoot}, forger)
	if err := os.WriteFile(filepath.Join(dir, "checkpoint"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Verify(t.Context(), verify.DirSource(dir), verify.Config{VerifierKey: vkey, StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Has(verify.BadSignature) || rep.Has(verify.Fork) {
		t.Errorf("want bad-signature and no fork:\n%s", rep)
	}
}
