package witness_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/ledger/witness"
	"golang.org/x/mod/sumdb/note"
)

const witnessName = "witness.regulator.test"

type fixture struct {
	s        *memory.Storage
	signer   note.Signer
	logKey   note.Verifier
	vkey     string
	wkey     string // witness private key
	wvkey    string // witness public key
	entries  [][]byte
	statedir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{s: memory.New(), statedir: t.TempDir()}
	f.signer, f.logKey, f.vkey = ledgertest.NewKey(t)
	var err error
	f.wkey, f.wvkey, err = witness.GenerateKey(witnessName)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// grow appends n entries to the log and returns the new checkpoint note.
func (f *fixture) grow(t *testing.T, n int) []byte {
	t.Helper()
	es := ledgertest.Entries(t, n)
	f.entries = append(f.entries, es...)
	ledgertest.BuildLog(t, f.s, f.signer, es)
	_, msg, err := f.s.ReadCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func (f *fixture) witness(t *testing.T) *witness.Witness {
	t.Helper()
	w, err := witness.New(witness.Config{Key: f.wkey, Logs: []string{f.vkey}, StatePath: filepath.Join(f.statedir, "witness.json")})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestCosignatureFormat(t *testing.T) {
	f := newFixture(t)
	cp := f.grow(t, 5)
	before := time.Now().Unix()
	line, err := f.witness(t).AddCheckpoint(t.Context(), 0, nil, cp)
	if err != nil {
		t.Fatal(err)
	}
	// "— <name> <base64(key ID || timestamp || signature)>\n"
	prefix := "— " + witnessName + " "
	if !strings.HasPrefix(string(line), prefix) || !strings.HasSuffix(string(line), "\n") {
		t.Fatalf("cosignature line %q", line)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(string(line), prefix), "\n"))
	if err != nil || len(sig) != 4+8+64 {
		t.Fatalf("cosignature is %d bytes (%v), want 76", len(sig), err)
	}
	// Public key from the vkey: name+hash+base64(0x04 || key).
	parts := strings.SplitN(f.wvkey, "+", 3)
	keyBytes, _ := base64.StdEncoding.DecodeString(parts[2])
	if keyBytes[0] != 0x04 || len(keyBytes) != 33 {
		t.Fatalf("witness vkey is not an Ed25519 cosignature/v1 key: %x", keyBytes[:1])
	}
	// Key ID per c2sp.org/signed-note: SHA-256(name || 0x0A || 0x04 || key)[:4].
	id := sha256.Sum256(append([]byte(witnessName+"\n"), keyBytes...))
	if !bytes.Equal(sig[:4], id[:4]) || parts[1] != fmt.Sprintf("%x", id[:4]) {
		t.Errorf("key ID %x, want %x", sig[:4], id[:4])
	}
	ts := int64(binary.BigEndian.Uint64(sig[4:12]))
	if ts < before || ts > time.Now().Unix() {
		t.Errorf("timestamp %d is not now", ts)
	}
	// The signed message per c2sp.org/tlog-cosignature.
	text := cp[:bytes.Index(cp, []byte("\n\n"))+1]
	msg := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, text)
	if !ed25519.Verify(ed25519.PublicKey(keyBytes[1:]), msg, sig[12:]) {
		t.Error("Ed25519 signature does not verify over the cosignature/v1 message")
	}
	// And the note library agrees once the line is appended.
	v, err := witness.NewCosignatureVerifier(f.wvkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(append(bytes.Clone(cp), line...), note.VerifierList(f.logKey, v))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("note.Open of the cosigned checkpoint: %v", err)
	}
}

func TestAddCheckpoint(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	w := f.witness(t)
	cp10 := f.grow(t, 10)
	if _, err := w.AddCheckpoint(ctx, 0, nil, cp10); err != nil {
		t.Fatal(err)
	}
	var conflict *witness.ConflictError
	if _, err := w.AddCheckpoint(ctx, 0, nil, cp10); !errors.As(err, &conflict) || conflict.Size != 10 || !errors.Is(err, broker.ErrConflict) {
		t.Errorf("stale old size: %v", err)
	}
	if _, err := w.AddCheckpoint(ctx, 10, nil, cp10); err != nil {
		t.Errorf("same checkpoint again: %v", err)
	}
	cp20 := f.grow(t, 10)
	proof, err := ledger.ConsistencyProof(ctx, f.s, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	bad := append(proof[:0:0], proof...)
	bad[0][0] ^= 1
	if _, err := w.AddCheckpoint(ctx, 10, bad, cp20); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("bad proof: %v", err)
	}
	if _, err := w.AddCheckpoint(ctx, 10, proof, cp20); err != nil {
		t.Fatal(err)
	}
	// Fork: the log signs another tree of size 20.
	forkStore := memory.New()
	ledgertest.BuildLog(t, forkStore, f.signer, ledgertest.Entries(t, 20))
	_, fork, _ := forkStore.ReadCheckpoint(ctx)
	if _, err := w.AddCheckpoint(ctx, 20, nil, fork); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("fork: %v", err)
	}
	// Forged log signature.
	forger, _, _ := ledgertest.NewKey(t)
	c, _, _ := ledger.OpenCheckpoint(cp20, f.logKey)
	forged, _ := ledger.SignCheckpoint(c, forger)
	if _, err := w.AddCheckpoint(ctx, 20, nil, forged); !errors.Is(err, broker.ErrForbidden) {
		t.Errorf("forged: %v", err)
	}
	// Unknown log.
	other, _ := ledger.SignCheckpoint(ledger.Checkpoint{Origin: "other.test/log", Size: 1, Hash: ledger.EmptyRoot}, forger)
	if _, err := w.AddCheckpoint(ctx, 0, nil, other); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("unknown log: %v", err)
	}
	// A restarted witness remembers.
	if last, ok := f.witness(t).Last(ledgertest.Origin); !ok || last.Size != 20 {
		t.Errorf("restarted witness remembers %+v, %v", last, ok)
	}
}

func TestProtocolAndSubmitter(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	wsrv := httptest.NewServer(witness.Handler(f.witness(t), nil))
	defer wsrv.Close()
	client := &witness.Client{URL: wsrv.URL + "/add-checkpoint", HTTP: wsrv.Client()}
	sub, err := witness.NewSubmitter(f.s, []witness.Target{{Adder: client, VerifierKey: f.wvkey}})
	if err != nil {
		t.Fatal(err)
	}
	lsrvH, err := ledger.Handler(f.s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: f.vkey})
	if err != nil {
		t.Fatal(err)
	}
	lsrv := httptest.NewServer(lsrvH)
	defer lsrv.Close()
	wv, _ := witness.NewCosignatureVerifier(f.wvkey)

	for _, n := range []int{3, 300, 1} {
		f.grow(t, n)
		if err := sub.Submit(ctx); err != nil {
			t.Fatalf("submit: %v", err)
		}
		resp, err := lsrv.Client().Get(lsrv.URL + "/ledger/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		served, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		nt, err := note.Open(served, note.VerifierList(f.logKey, wv))
		if err != nil || len(nt.Sigs) != 2 {
			t.Fatalf("served checkpoint lacks a valid cosignature: %v\n%s", err, served)
		}
	}
	// A submitter that forgot (restarted) learns the size from the 409.
	sub2, _ := witness.NewSubmitter(f.s, []witness.Target{{Adder: client, VerifierKey: f.wvkey}})
	f.grow(t, 5)
	if err := sub2.Submit(ctx); err != nil {
		t.Errorf("submit after restart: %v", err)
	}
	// Protocol errors.
	for _, tc := range []struct {
		body   string
		status int
	}{
		{"old x\n\n", 400},
		{"nonsense", 400},
		{"old 0\n\n" + "junk\n\n— x AAAA\n", 400},
	} {
		resp, err := wsrv.Client().Post(wsrv.URL, "text/plain", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status && !(tc.status == 400 && resp.StatusCode == 422) {
			t.Errorf("%q: status %d, want %d", tc.body, resp.StatusCode, tc.status)
		}
	}
	resp, err := wsrv.Client().Post(wsrv.URL, "text/plain", bytes.NewReader(witness.MarshalAddCheckpoint(1, nil, []byte("x"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad checkpoint: status %d", resp.StatusCode)
	}
}

func TestParseAddCheckpointRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.grow(t, 40)
	proof, err := ledger.ConsistencyProof(t.Context(), f.s, 13, 40)
	if err != nil {
		t.Fatal(err)
	}
	_, cp, _ := f.s.ReadCheckpoint(t.Context())
	old, p, c, err := witness.ParseAddCheckpoint(witness.MarshalAddCheckpoint(13, proof, cp))
	if err != nil || old != 13 || len(p) != len(proof) || !bytes.Equal(c, cp) {
		t.Errorf("round trip: %d %d %v", old, len(p), err)
	}
}

func TestFollower(t *testing.T) {
	f := newFixture(t)
	h, err := ledger.Handler(f.s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: f.vkey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	fo := &witness.Follower{Witness: f.witness(t), Source: verify.HTTPSource{BaseURL: srv.URL + "/ledger/", Client: srv.Client()}}
	for _, n := range []int{1, 700, 6000, 1} {
		f.grow(t, n)
		cp, line, err := fo.Step(t.Context())
		if err != nil {
			t.Fatalf("step after %d: %v", len(f.entries), err)
		}
		if err := f.s.AddCosignature(t.Context(), int64(len(f.entries)), witnessName, line); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(cp, []byte(ledgertest.Origin+"\n")) {
			t.Errorf("checkpoint %q", cp)
		}
	}
	// The operator rebuilds the log with other entries and the same size.
	size := int64(len(f.entries))
	f.s.TamperRewrite(nil)
	ledgertest.BuildLog(t, f.s, f.signer, ledgertest.Entries(t, int(size)))
	if _, _, err := fo.Step(t.Context()); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("witness cosigned a fork: %v", err)
	}
	// ... or grows it from a rewritten past.
	ledgertest.BuildLog(t, f.s, f.signer, ledgertest.Entries(t, 10))
	if _, _, err := fo.Step(t.Context()); err == nil {
		t.Error("witness cosigned an inconsistent tree")
	}
}

func FuzzParseAddCheckpoint(f *testing.F) {
	f.Add([]byte("old 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nlog\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— log AAAA\n"))
	f.Add([]byte("old 0\n\nx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		old, proof, cp, err := witness.ParseAddCheckpoint(b)
		if err != nil {
			return
		}
		if again := witness.MarshalAddCheckpoint(old, proof, cp); !bytes.Equal(again, b) {
			t.Fatalf("request does not round-trip:\n%q\n%q", b, again)
		}
	})
}

func TestSubmitterInProcess(t *testing.T) {
	f := newFixture(t)
	sub, err := witness.NewSubmitter(f.s, []witness.Target{{Adder: f.witness(t), VerifierKey: f.wvkey}})
	if err != nil {
		t.Fatal(err)
	}
	shutdown := sub.Start(t.Context(), 10*time.Millisecond, nil)
	defer shutdown(t.Context())
	f.grow(t, 30)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if lines, _ := f.s.ReadCosignatures(t.Context(), 30); len(lines) == 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no cosignature stored for size 30")
}

func TestFollowerStart(t *testing.T) {
	f := newFixture(t)
	h, err := ledger.Handler(f.s, ledger.HandlerConfig{VerifierKey: f.vkey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	f.grow(t, 10)
	fo := &witness.Follower{Witness: f.witness(t), Source: verify.HTTPSource{BaseURL: srv.URL, Client: srv.Client()}}
	published := make(chan []byte, 10)
	shutdown := fo.Start(t.Context(), 10*time.Millisecond, func(_ context.Context, _, line []byte) error {
		select {
		case published <- line:
		default:
		}
		return nil
	}, nil)
	defer shutdown(context.Background())
	select {
	case line := <-published:
		if !strings.HasPrefix(string(line), "— "+witnessName+" ") {
			t.Errorf("published %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follower published nothing")
	}
}
