package ledger_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestCheckpointFormat(t *testing.T) {
	signer, verifier, vkey := ledgertest.NewKey(t)
	root := tlog.RecordHash([]byte("root"))
	c := ledger.Checkpoint{Origin: ledgertest.Origin, Size: 1234, Hash: root}
	want := "steward.test/ledger\n1234\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
	if got := string(c.Text()); got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	msg, err := ledger.SignCheckpoint(c, signer)
	if err != nil {
		t.Fatal(err)
	}
	// The signed note is text, a blank line, then "— <name> <base64>".
	if !strings.HasPrefix(string(msg), want+"\n— "+ledgertest.Origin+" ") {
		t.Errorf("signed note:\n%s", msg)
	}
	// note.Open with the published vkey verifies it.
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil || n.Text != want {
		t.Fatalf("note.Open: %v, text %q", err, n.Text)
	}
	// So does transparency-dev/formats, which we did not write.
	fc, _, _, err := fmtlog.ParseCheckpoint(msg, ledgertest.Origin, verifier)
	if err != nil {
		t.Fatalf("formats ParseCheckpoint: %v", err)
	}
	if fc.Size != 1234 || !bytes.Equal(fc.Hash, root[:]) {
		t.Errorf("formats parsed %+v", fc)
	}
	got, _, err := ledger.OpenCheckpoint(msg, verifier)
	if err != nil || got != c {
		t.Errorf("OpenCheckpoint = %+v, %v", got, err)
	}
	// A checkpoint signed by another key with the same name fails.
	other, _, _ := ledgertest.NewKey(t)
	forged, _ := ledger.SignCheckpoint(c, other)
	if _, _, err := ledger.OpenCheckpoint(forged, verifier); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("OpenCheckpoint of a forgery: %v", err)
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	h := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, text := range []string{
		"", "o\n1\n", "\n1\n" + h + "\n", "o\n01\n" + h + "\n", "o\n-1\n" + h + "\n", "o\n+1\n" + h + "\n",
		"o\n1\n" + h[:40] + "\n", "o\n1\n" + h, "o\n1\n" + h + "\next", "o\n1\n" + h + "\n\n",
	} {
		if _, err := ledger.ParseCheckpoint([]byte(text)); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("ParseCheckpoint(%q): %v, want ErrInvalid", text, err)
		}
	}
	if c, err := ledger.ParseCheckpoint([]byte("o\n1\n" + h + "\nextension line\n")); err != nil || c.Size != 1 {
		t.Errorf("checkpoint with an extension line: %+v, %v", c, err)
	}
}

func TestTilePaths(t *testing.T) {
	tests := []struct {
		ref  ledger.TileRef
		path string
	}{
		{ledger.TileRef{Level: 0, Index: 1234067, Width: 256}, "tile/0/x001/x234/067"},
		{ledger.TileRef{Level: 0, Index: 1234067, Width: 8}, "tile/0/x001/x234/067.p/8"},
		{ledger.TileRef{Level: -1, Index: 1234067, Width: 256}, "tile/entries/x001/x234/067"},
		{ledger.TileRef{Level: -1, Index: 1234067, Width: 8}, "tile/entries/x001/x234/067.p/8"},
		{ledger.TileRef{Level: 0, Index: 0, Width: 256}, "tile/0/000"},
		{ledger.TileRef{Level: 2, Index: 999, Width: 1}, "tile/2/999.p/1"},
		{ledger.TileRef{Level: 1, Index: 1000, Width: 255}, "tile/1/x001/000.p/255"},
		{ledger.TileRef{Level: 63, Index: 1 << 40, Width: 256}, "tile/63/x001/x099/x511/x627/776"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := tt.ref.Path(); got != tt.path {
				t.Errorf("Path() = %q, want %q", got, tt.path)
			}
			got, err := ledger.ParseTilePath(tt.path)
			if err != nil || got != tt.ref {
				t.Errorf("ParseTilePath = %+v, %v; want %+v", got, err, tt.ref)
			}
		})
	}
	for _, bad := range []string{
		"tile/0/67", "tile/0/0067", "tile/0/001/234/067", "tile/0/x000/067", "tile/0/067.p/0", "tile/0/067.p/256",
		"tile/0/067.p/08", "tile/64/000", "tile/01/000", "tile/-1/000", "tile/0/x001/x234/067/", "tile/0/", "tile/entries",
		"tile/data/000", "tiles/0/000", "tile/8/0/000",
	} {
		if r, err := ledger.ParseTilePath(bad); err == nil {
			t.Errorf("ParseTilePath(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestEntryBundle(t *testing.T) {
	entries := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("x"), broker.MaxEntryBytes), []byte("{}")}
	b, err := ledger.MarshalEntryBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0, 1, 'a', 0, 0, 0xff, 0xff, 'x'}) {
		t.Errorf("bundle starts % x", b[:8])
	}
	got, err := ledger.ParseEntryBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(entries, got, bytes.Equal) {
		t.Errorf("round trip: got %d entries, want %d, or different bytes", len(got), len(entries))
	}
	for _, bad := range [][]byte{{0}, {0, 2, 'a'}, append(b, 0)} {
		if _, err := ledger.ParseEntryBundle(bad); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("ParseEntryBundle(% x): %v", bad, err)
		}
	}
	if _, err := ledger.MarshalEntryBundle([][]byte{make([]byte, broker.MaxEntryBytes+1)}); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("oversized entry: %v", err)
	}
}

// TestProofsLarge cross-checks proofs at random sizes up to 100,000.
func TestProofsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100,000-entry log")
	}
	ledgertest.CheckProofs(t, memory.New(), 100_000, 2000)
}

// newLog builds an integrated log of n valid entries.
func newLog(t *testing.T, n int) (*memory.Storage, note.Signer, note.Verifier, string, [][]byte) {
	t.Helper()
	s := memory.New()
	signer, verifier, vkey := ledgertest.NewKey(t)
	es := ledgertest.Entries(t, n)
	if err := s.Stage(t.Context(), es...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sequence(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ledger.Integrate(t.Context(), s, signer, n); err != nil {
		t.Fatal(err)
	}
	return s, signer, verifier, vkey, es
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestHandler(t *testing.T) {
	const n = 600 // two full bundles and a partial one of 88
	s, _, verifier, vkey, es := newLog(t, n)
	h, err := ledger.Handler(s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, body := get(t, srv, "/ledger/checkpoint")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("checkpoint: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	c, _, err := ledger.OpenCheckpoint(body, verifier)
	if err != nil || c.Size != n {
		t.Fatalf("served checkpoint: %+v, %v", c, err)
	}
	if _, body := get(t, srv, "/ledger/vkey"); strings.TrimSpace(string(body)) != vkey {
		t.Errorf("vkey = %q", body)
	}

	tests := []struct {
		path   string
		status int
		cache  string
		size   int
	}{
		{"/ledger/tile/0/000", 200, "public, max-age=31536000, immutable", 256 * 32},
		{"/ledger/tile/0/002.p/88", 200, "public, max-age=60", 88 * 32},
		{"/ledger/tile/0/002.p/10", 200, "public, max-age=60", 10 * 32},
		{"/ledger/tile/0/002.p/89", 404, "", 0},
		{"/ledger/tile/0/002", 404, "", 0},
		{"/ledger/tile/0/003.p/1", 404, "", 0},
		{"/ledger/tile/1/000.p/2", 200, "public, max-age=60", 2 * 32},
		{"/ledger/tile/entries/001", 200, "public, max-age=31536000, immutable", -1},
		{"/ledger/tile/entries/002.p/88", 200, "public, max-age=60", -1},
		{"/ledger/tile/0/0000", 404, "", 0},
		{"/ledger/entry/600", 404, "", 0},
		{"/ledger/entry/x", 400, "", 0},
		{"/ledger/proof/consistency?from=10&to=601", 400, "", 0},
	}
	for _, tt := range tests {
		resp, body := get(t, srv, tt.path)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.path, resp.StatusCode, tt.status)
			continue
		}
		if tt.status != 200 {
			continue
		}
		if got := resp.Header.Get("Cache-Control"); got != tt.cache {
			t.Errorf("%s: Cache-Control %q, want %q", tt.path, got, tt.cache)
		}
		if tt.size >= 0 && len(body) != tt.size {
			t.Errorf("%s: %d bytes, want %d", tt.path, len(body), tt.size)
		}
	}
	// Entry bundles hold the entries, and level-0 tiles their leaf hashes.
	_, bundle := get(t, srv, "/ledger/tile/entries/002.p/88")
	got, err := ledger.ParseEntryBundle(bundle)
	if err != nil || !cmp.Equal(got, es[512:600]) {
		t.Errorf("bundle 2: %d entries, %v", len(got), err)
	}
	_, tile := get(t, srv, "/ledger/tile/0/002.p/88")
	if h := tlog.RecordHash(es[599]); !bytes.Equal(tile[87*32:], h[:]) {
		t.Error("last hash of tile 0/002.p/88 is not entry 599's leaf hash")
	}

	// Inclusion proof via JSON, checked against the served checkpoint.
	_, body = get(t, srv, "/ledger/entry/345")
	var er ledger.EntryResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(er.Entry, es[345]) || er.TreeSize != n {
		t.Errorf("entry 345: %+v", er)
	}
	rc := broker.Receipt{Index: 345, LeafHash: er.LeafHash, Checkpoint: er.Checkpoint, Proof: er.Proof}
	if _, err := ledger.VerifyReceipt(rc, er.Entry, verifier); err != nil {
		t.Errorf("entry 345's proof does not verify: %v", err)
	}
	// Consistency proof via JSON.
	_, body = get(t, srv, "/ledger/proof/consistency?from=300")
	var cr ledger.ConsistencyResponse
	if err := json.Unmarshal(body, &cr); err != nil {
		t.Fatal(err)
	}
	proof := make(tlog.TreeProof, len(cr.Proof))
	for i, p := range cr.Proof {
		h, err := tlog.ParseHash(p)
		if err != nil {
			t.Fatal(err)
		}
		proof[i] = h
	}
	old, err := tlog.TreeHash(300, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return s.ReadHashes(t.Context(), idx) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.CheckConsistency(proof, 300, old, n, c.Hash); err != nil || cr.To != n {
		t.Errorf("consistency 300 -> %d: %v", cr.To, err)
	}
	// Receipts by leaf hash.
	lh := tlog.RecordHash(es[7])
	_, body = get(t, srv, "/ledger/receipt/"+hex.EncodeToString(lh[:]))
	var got2 broker.Receipt
	if err := json.Unmarshal(body, &got2); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.VerifyReceipt(got2, es[7], verifier); err != nil || got2.Index != 7 {
		t.Errorf("receipt: %+v, %v", got2, err)
	}
	for _, enc := range []string{base64.URLEncoding.EncodeToString(lh[:]), base64.RawURLEncoding.EncodeToString(lh[:])} {
		if resp, _ := get(t, srv, "/ledger/receipt/"+enc); resp.StatusCode != 200 {
			t.Errorf("receipt by base64url %s: %d", enc, resp.StatusCode)
		}
	}
	if resp, _ := get(t, srv, "/ledger/receipt/abcd"); resp.StatusCode != 400 {
		t.Errorf("receipt by a short hash: %d", resp.StatusCode)
	}
}

func TestReceipt(t *testing.T) {
	s, signer, verifier, _, es := newLog(t, 10)
	ctx := t.Context()
	extra := ledgertest.Entries(t, 1)[0]
	// Staged only: no receipt yet.
	if err := s.Stage(ctx, extra); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.NewReceipt(ctx, s, tlog.RecordHash(extra)); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("receipt for a staged entry: %v", err)
	}
	// Sequenced: an index, no proof.
	if _, err := s.Sequence(ctx, 10); err != nil {
		t.Fatal(err)
	}
	rc, err := ledger.NewReceipt(ctx, s, tlog.RecordHash(extra))
	if err != nil || rc.Index != 10 || rc.Integrated() {
		t.Fatalf("receipt for a sequenced entry: %+v, %v", rc, err)
	}
	if _, err := ledger.VerifyReceipt(rc, extra, verifier); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("VerifyReceipt without proof: %v", err)
	}
	// Integrated: verifies offline.
	if _, _, err := ledger.Integrate(ctx, s, signer, 100); err != nil {
		t.Fatal(err)
	}
	rc, err = ledger.NewReceipt(ctx, s, tlog.RecordHash(es[3]))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rc)
	var back broker.Receipt
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	c, err := ledger.VerifyReceipt(back, es[3], verifier)
	if err != nil || c.Size != 11 {
		t.Fatalf("VerifyReceipt: %+v, %v", c, err)
	}
	// Any change is caught.
	bad := []func(r *broker.Receipt) []byte{
		func(r *broker.Receipt) []byte { return es[4] },
		func(r *broker.Receipt) []byte { r.Index = 4; return es[3] },
		func(r *broker.Receipt) []byte { r.Proof = r.Proof[1:]; return es[3] },
		func(r *broker.Receipt) []byte { r.Proof[0] = r.Proof[1]; return es[3] },
		func(r *broker.Receipt) []byte {
			r.Checkpoint = strings.Replace(r.Checkpoint, "\n11\n", "\n12\n", 1)
			return es[3]
		},
	}
	for i, f := range bad {
		r := back
		r.Proof = append([]string(nil), back.Proof...)
		entry := f(&r)
		if _, err := ledger.VerifyReceipt(r, entry, verifier); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("tampered receipt %d: %v, want ErrInvalid", i, err)
		}
	}
}

func TestExport(t *testing.T) {
	s, _, verifier, vkey, es := newLog(t, 300)
	dir := t.TempDir()
	if err := ledger.Export(t.Context(), s, dir, vkey); err != nil {
		t.Fatal(err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := ledger.OpenCheckpoint(msg, verifier); err != nil || c.Size != 300 {
		t.Errorf("exported checkpoint: %+v, %v", c, err)
	}
	for _, p := range []string{"tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/000", "tile/entries/001.p/44", "vkey"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("export lacks %s: %v", p, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "tile/entries/001.p/44"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ledger.ParseEntryBundle(b); err != nil || !cmp.Equal(got, es[256:]) {
		t.Errorf("exported bundle 1: %v", err)
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("steward.test/ledger\n5\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ledger.ParseCheckpoint(b)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(b, c.Text()) {
			t.Fatalf("accepted %q but it does not start with %q", b, c.Text())
		}
	})
}

func FuzzParseTilePath(f *testing.F) {
	f.Add("tile/0/x001/x234/067.p/8")
	f.Add("tile/entries/000")
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ledger.ParseTilePath(p)
		if err != nil {
			return
		}
		if r.Path() != p {
			t.Fatalf("accepted %q, which prints as %q", p, r.Path())
		}
	})
}

func TestTLogProofReceipt(t *testing.T) {
	s, _, verifier, _, es := newLog(t, 50)
	rc, err := ledger.NewReceipt(t.Context(), s, tlog.RecordHash(es[17]))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ledger.MarshalTLogProof(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("c2sp.org/tlog-proof@v1\nindex 17\n")) {
		t.Errorf("tlog-proof:\n%s", b)
	}
	back, err := ledger.ParseTLogProof(b, es[17])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rc, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := ledger.VerifyReceipt(back, es[17], verifier); err != nil {
		t.Error(err)
	}
	other, _ := ledger.ParseTLogProof(b, es[18])
	if _, err := ledger.VerifyReceipt(other, es[18], verifier); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("proof for entry 17 verified for entry 18: %v", err)
	}
}

func FuzzParseEntryBundle(f *testing.F) {
	b, _ := ledger.MarshalEntryBundle([][]byte{[]byte("a"), {}, []byte("{}")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ledger.ParseEntryBundle(b)
		if err != nil {
			return
		}
		again, err := ledger.MarshalEntryBundle(es)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("bundle does not round-trip: %v", err)
		}
	})
}
