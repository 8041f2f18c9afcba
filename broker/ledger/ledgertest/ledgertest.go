// Package ledgertest is the conformance suite every ledger.Storage must
// pass: the in-memory one here, and the PostgreSQL and SQLite stores.
//
//	func TestLedger(t *testing.T) {
//		ledgertest.Run(t, func(t *testing.T) ledger.Storage { return newTestStore(t) })
//	}
//
// newStorage must return a fresh, empty storage for each call. If the
// storage also implements Tamperer, Run checks that the verifier catches
// each kind of tampering on it too.
package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Origin is the origin (and key name) of the logs the suite builds.
const Origin = "steward.test/ledger"

// Tamperer is implemented by test storages that can be damaged the way an
// operator with write access to the database could damage them.
type Tamperer interface {
	// TamperSetLeaf replaces the bytes of the entry at index i.
	TamperSetLeaf(i int64, data []byte)
	// TamperDeleteLeaf removes the entry at index i. A store may leave a
	// gap (a SQL DELETE) or move later entries down (renumbering).
	TamperDeleteLeaf(i int64)
	// TamperSwapLeaves exchanges the entries at indices i and j.
	TamperSwapLeaves(i, j int64)
	// TamperTruncate drops every entry from index n on.
	TamperTruncate(n int64)
	// TamperCheckpoint replaces the latest checkpoint note.
	TamperCheckpoint(note []byte)
	// TamperRewrite replaces all entries, drops every stored hash and
	// checkpoint: an operator rebuilding the log from scratch.
	TamperRewrite(leaves [][]byte)
}

// Run runs the conformance suite.
func Run(t *testing.T, newStorage func(t *testing.T) ledger.Storage) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStorage(t)) })
	t.Run("StageSequence", func(t *testing.T) { testStageSequence(t, newStorage(t)) })
	t.Run("ConcurrentSequence", func(t *testing.T) { testConcurrentSequence(t, newStorage(t)) })
	t.Run("WriteHashes", func(t *testing.T) { testWriteHashes(t, newStorage(t)) })
	t.Run("WriteCheckpoint", func(t *testing.T) { testWriteCheckpoint(t, newStorage(t)) })
	t.Run("Cosignatures", func(t *testing.T) { testCosignatures(t, newStorage(t)) })
	t.Run("LogConcurrentStagers", func(t *testing.T) { testLogConcurrentStagers(t, newStorage(t)) })
	t.Run("CrashRecovery", func(t *testing.T) { testCrashRecovery(t, newStorage) })
	t.Run("ShutdownMidway", func(t *testing.T) { testShutdownMidway(t, newStorage(t)) })
	t.Run("Proofs", func(t *testing.T) { testProofs(t, newStorage(t)) })
	t.Run("Tamper", func(t *testing.T) { testTamper(t, newStorage) })
}

// NewKey returns a fresh signer and verifier for Origin.
func NewKey(t testing.TB) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := ledger.GenerateKey(Origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, vkey
}

// Entries returns n distinct, valid entries' canonical bytes.
func Entries(t testing.TB, n int) [][]byte {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	types := []broker.EntryType{broker.EntryFirmRegistered, broker.EntryFirmSuspended}
	out := make([][]byte, n)
	for i := range out {
		e := broker.Entry{Type: types[i%2], Time: base.Add(time.Duration(i) * time.Millisecond), Firm: broker.NewFirmID()}
		b, err := e.CanonicalBytes()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func testEmpty(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	if _, _, err := s.ReadCheckpoint(ctx); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("ReadCheckpoint on empty storage: %v, want ErrNotFound", err)
	}
	if n, err := s.Size(ctx); err != nil || n != 0 {
		t.Errorf("Size = %d, %v; want 0", n, err)
	}
	if n, err := s.Sequence(ctx, 10); err != nil || n != 0 {
		t.Errorf("Sequence with nothing staged = %d, %v; want 0", n, err)
	}
	if _, err := s.ReadLeaves(ctx, 0, 1); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("ReadLeaves(0, 1): %v, want ErrNotFound", err)
	}
	if _, err := s.ReadHashes(ctx, []int64{0}); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("ReadHashes([0]): %v, want ErrNotFound", err)
	}
	if _, err := s.FindLeaf(ctx, tlog.RecordHash([]byte("x"))); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("FindLeaf: %v, want ErrNotFound", err)
	}
	if c, err := s.ReadCosignatures(ctx, 0); err != nil || len(c) != 0 {
		t.Errorf("ReadCosignatures = %q, %v; want none", c, err)
	}
}

func testStageSequence(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	es := Entries(t, 5)
	staged := make([][]byte, len(es))
	for i, e := range es {
		staged[i] = slices.Clone(e)
	}
	if err := s.Stage(ctx, staged[:3]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Stage(ctx, staged[3:]...); err != nil {
		t.Fatal(err)
	}
	staged[0][0] = 'X' // the storage must have kept its own copy
	if _, err := s.FindLeaf(ctx, tlog.RecordHash(es[0])); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("FindLeaf of a staged entry: %v, want ErrNotFound", err)
	}
	if n, err := s.Sequence(ctx, 2); err != nil || n != 2 {
		t.Fatalf("Sequence(2) = %d, %v; want 2", n, err)
	}
	if n, err := s.Sequence(ctx, 100); err != nil || n != 5 {
		t.Fatalf("Sequence(100) = %d, %v; want 5", n, err)
	}
	if n, err := s.Sequence(ctx, 100); err != nil || n != 5 {
		t.Fatalf("Sequence with nothing staged = %d, %v; want 5", n, err)
	}
	if n, err := s.Size(ctx); err != nil || n != 5 {
		t.Fatalf("Size = %d, %v; want 5", n, err)
	}
	got, err := s.ReadLeaves(ctx, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(es, got); diff != "" {
		t.Errorf("ReadLeaves (-staged +read):\n%s", diff)
	}
	got, err = s.ReadLeaves(ctx, 3, 2)
	if err != nil || !cmp.Equal(got, es[3:]) {
		t.Errorf("ReadLeaves(3, 2) = %q, %v", got, err)
	}
	if _, err := s.ReadLeaves(ctx, 3, 3); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("ReadLeaves past the end: %v, want ErrNotFound", err)
	}
	for i, e := range es {
		if idx, err := s.FindLeaf(ctx, tlog.RecordHash(e)); err != nil || idx != int64(i) {
			t.Errorf("FindLeaf(entry %d) = %d, %v", i, idx, err)
		}
	}
	// The same bytes staged again are a second entry; FindLeaf finds the first.
	if err := s.Stage(ctx, es[2]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sequence(ctx, 10); err != nil || n != 6 {
		t.Fatalf("Sequence of a repeated entry = %d, %v; want 6", n, err)
	}
	if idx, err := s.FindLeaf(ctx, tlog.RecordHash(es[2])); err != nil || idx != 2 {
		t.Errorf("FindLeaf of a repeated entry = %d, %v; want 2", idx, err)
	}
	if got, err := s.ReadLeaves(ctx, 5, 1); err != nil || !cmp.Equal(got[0], es[2]) {
		t.Errorf("ReadLeaves(5, 1) = %q, %v", got, err)
	}
}

func testConcurrentSequence(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	const stagers, each = 8, 40
	es := Entries(t, stagers*each)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var seqErr error
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Sequence(ctx, 7); err != nil {
					mu.Lock()
					seqErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	var sw sync.WaitGroup
	for g := range stagers {
		sw.Go(func() {
			for i := range each {
				if err := s.Stage(ctx, es[g*each+i]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	sw.Wait()
	close(stop)
	wg.Wait()
	if seqErr != nil {
		t.Fatal(seqErr)
	}
	n, err := s.Sequence(ctx, len(es))
	if err != nil || n != int64(len(es)) {
		t.Fatalf("final Sequence = %d, %v; want %d", n, err, len(es))
	}
	checkExactlyOnce(t, s, es)
}

// checkExactlyOnce checks that the sequenced entries are exactly want, in
// any order, each once, at dense indices.
func checkExactlyOnce(t *testing.T, s ledger.Reader, want [][]byte) {
	t.Helper()
	got, err := s.ReadLeaves(t.Context(), 0, len(want))
	if err != nil {
		t.Fatalf("ReadLeaves(0, %d): %v", len(want), err)
	}
	if _, err := s.ReadLeaves(t.Context(), int64(len(want)), 1); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("an entry beyond %d is sequenced (err %v)", len(want), err)
	}
	seen := map[string]int{}
	for _, g := range got {
		seen[string(g)]++
	}
	for i, w := range want {
		if seen[string(w)] != 1 {
			t.Errorf("entry %d sequenced %d times", i, seen[string(w)])
		}
	}
}

func testWriteHashes(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	hs := make([]tlog.Hash, 10)
	for i := range hs {
		hs[i] = tlog.RecordHash(fmt.Appendf(nil, "%d", i))
	}
	if err := s.WriteHashes(ctx, 0, hs[:6]); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteHashes(ctx, 3, hs[3:]); err != nil {
		t.Fatalf("rewriting hashes 3-5 with the same values: %v", err)
	}
	if err := s.WriteHashes(ctx, 0, hs); err != nil {
		t.Fatalf("rewriting every hash with the same values: %v", err)
	}
	got, err := s.ReadHashes(ctx, []int64{9, 0, 4})
	if err != nil {
		t.Fatal(err)
	}
	if want := []tlog.Hash{hs[9], hs[0], hs[4]}; !cmp.Equal(got, want) {
		t.Errorf("ReadHashes = %v, want %v", got, want)
	}
	bad := slices.Clone(hs[8:])
	bad = append(bad, tlog.RecordHash([]byte("new")))
	bad[0][0] ^= 1
	if err := s.WriteHashes(ctx, 8, bad); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("overwriting hash 8 with another value: %v, want ErrConflict", err)
	}
	if _, err := s.ReadHashes(ctx, []int64{10}); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("a failed WriteHashes stored hash 10 (err %v)", err)
	}
	if got, err := s.ReadHashes(ctx, []int64{8}); err != nil || got[0] != hs[8] {
		t.Errorf("hash 8 = %v, %v after a refused overwrite", got, err)
	}
	if _, err := s.ReadHashes(ctx, []int64{3, 11}); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("ReadHashes with one missing: %v, want ErrNotFound", err)
	}
}

func testWriteCheckpoint(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	steps := []struct {
		old, size int64
		ok        bool
	}{
		{0, 0, true},
		{0, 0, false}, // size 0 already stored
		{0, 5, true},
		{0, 7, false}, // stale old
		{5, 5, false}, // same size twice
		{5, 9, true},
		{9, 9, false},
	}
	for _, st := range steps {
		msg := fmt.Appendf(nil, "note %d\n", st.size)
		err := s.WriteCheckpoint(ctx, st.old, st.size, msg)
		switch {
		case st.ok && err != nil:
			t.Fatalf("WriteCheckpoint(%d, %d): %v", st.old, st.size, err)
		case !st.ok && !errors.Is(err, broker.ErrConflict):
			t.Fatalf("WriteCheckpoint(%d, %d): %v, want ErrConflict", st.old, st.size, err)
		}
	}
	size, msg, err := s.ReadCheckpoint(ctx)
	if err != nil || size != 9 || string(msg) != "note 9\n" {
		t.Errorf("ReadCheckpoint = %d, %q, %v; want 9", size, msg, err)
	}
	// Racing writers: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			if err := s.WriteCheckpoint(ctx, 9, 20+int64(i), []byte("race\n")); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d racing checkpoint writers won, want 1", wins)
	}
}

func testCosignatures(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	for _, c := range []struct {
		size    int64
		witness string
		line    string
	}{
		{4, "w2.example", "— w2.example AAAA\n"},
		{4, "w1.example", "— w1.example BBBB\n"},
		{5, "w1.example", "— w1.example CCCC\n"},
		{4, "w2.example", "— w2.example DDDD\n"},
	} {
		if err := s.AddCosignature(ctx, c.size, c.witness, []byte(c.line)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadCosignatures(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte("— w1.example BBBB\n"), []byte("— w2.example DDDD\n")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadCosignatures(4) (-want +got):\n%s", diff)
	}
}

// waitForSize waits until the latest checkpoint has size n.
func waitForSize(t *testing.T, s ledger.Reader, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if size, _, err := s.ReadCheckpoint(t.Context()); err == nil && size == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	size, _, err := s.ReadCheckpoint(t.Context())
	t.Fatalf("checkpoint size is %d (%v) after 30s, want %d", size, err, n)
}

func testLogConcurrentStagers(t *testing.T, s ledger.Storage) {
	signer, verifier, _ := NewKey(t)
	l, shutdown, err := ledger.Start(t.Context(), s, ledger.Config{Signer: signer, BatchMaxSize: 16, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	const stagers, each = 16, 25
	es := Entries(t, 2*stagers*each)
	var roots []ledger.Checkpoint
	// Two waves of concurrent stagers; the checkpoint must advance after
	// each, and the second must extend the first.
	for wave := range 2 {
		var wg sync.WaitGroup
		for g := range stagers {
			wg.Go(func() {
				for i := range each {
					if _, err := l.Stage(t.Context(), es[(wave*stagers+g)*each+i]); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		want := int64((wave + 1) * stagers * each)
		waitForSize(t, s, want)
		_, msg, err := s.ReadCheckpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := ledger.OpenCheckpoint(msg, verifier)
		if err != nil {
			t.Fatalf("stored checkpoint does not verify: %v", err)
		}
		roots = append(roots, c)
	}
	p, err := ledger.ConsistencyProof(t.Context(), s, roots[0].Size, roots[1].Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.CheckConsistency(p, roots[0].Size, roots[0].Hash, roots[1].Size, roots[1].Hash); err != nil {
		t.Errorf("second checkpoint does not extend the first: %v", err)
	}
	checkExactlyOnce(t, s, es)
	checkTree(t, s, verifier, int64(len(es)))
}

// checkTree recomputes the root of the first n leaves independently of the
// stored hashes and compares it with the latest checkpoint.
func checkTree(t *testing.T, s ledger.Reader, v note.Verifier, n int64) {
	t.Helper()
	leaves, err := s.ReadLeaves(t.Context(), 0, int(n))
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := s.ReadCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ledger.OpenCheckpoint(msg, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := refRoot(leaves); c.Size != n || c.Hash != got {
		t.Errorf("checkpoint %d/%s, recomputed %d/%s", c.Size, c.Hash, n, got)
	}
}

// faulty wraps a Storage and fails the chosen write once, after doing
// part of it, as a crash would.
type faulty struct {
	ledger.Storage
	failHashes, failCheckpoint bool
}

var errCrash = errors.New("simulated crash")

func (f *faulty) WriteHashes(ctx context.Context, start int64, hs []tlog.Hash) error {
	if f.failHashes {
		f.failHashes = false
		if err := f.Storage.WriteHashes(ctx, start, hs[:len(hs)/2]); err != nil {
			return err
		}
		return errCrash
	}
	return f.Storage.WriteHashes(ctx, start, hs)
}

func (f *faulty) WriteCheckpoint(ctx context.Context, old, size int64, note []byte) error {
	if f.failCheckpoint {
		f.failCheckpoint = false
		return errCrash
	}
	return f.Storage.WriteCheckpoint(ctx, old, size, note)
}

func testCrashRecovery(t *testing.T, newStorage func(*testing.T) ledger.Storage) {
	for _, tc := range []struct {
		name           string
		hashes, commit bool
	}{
		{"after sequencing", false, false},
		{"half way through writing hashes", true, false},
		{"before the checkpoint", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := newStorage(t)
			signer, verifier, _ := NewKey(t)
			es := Entries(t, 700)
			if err := s.Stage(ctx, es[:300]...); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sequence(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ledger.Integrate(ctx, s, signer, 1000); err != nil {
				t.Fatal(err)
			}
			if err := s.Stage(ctx, es[300:]...); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sequence(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			// The process dies here, or during the next integration.
			if tc.hashes || tc.commit {
				f := &faulty{Storage: s, failHashes: tc.hashes, failCheckpoint: tc.commit}
				if _, _, err := ledger.Integrate(ctx, f, signer, 1000); !errors.Is(err, errCrash) {
					t.Fatalf("Integrate through the fault: %v", err)
				}
				if size, _, _ := s.ReadCheckpoint(ctx); size != 300 {
					t.Fatalf("checkpoint advanced to %d despite the crash", size)
				}
			}
			// A new process starts the loops over the same storage.
			_, shutdown, err := ledger.Start(ctx, s, ledger.Config{Signer: signer, Interval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer shutdown(context.Background())
			waitForSize(t, s, 700)
			checkExactlyOnce(t, s, es)
			checkTree(t, s, verifier, 700)
		})
	}
}

// testShutdownMidway stops the loops while they are busy (cancelling
// whatever storage call is in flight) and starts them again.
func testShutdownMidway(t *testing.T, s ledger.Storage) {
	signer, verifier, _ := NewKey(t)
	es := Entries(t, 3000)
	for round := range 3 {
		l, shutdown, err := ledger.Start(t.Context(), s, ledger.Config{Signer: signer, BatchMaxSize: 64, IntegrateMaxSize: 256, Interval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		part := es[round*1000 : (round+1)*1000]
		for i := 0; i < len(part); i += 100 {
			if _, err := l.Stage(t.Context(), part[i:i+100]...); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Duration(round) * time.Millisecond)
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	_, shutdown, err := ledger.Start(t.Context(), s, ledger.Config{Signer: signer, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	waitForSize(t, s, int64(len(es)))
	checkExactlyOnce(t, s, es)
	checkTree(t, s, verifier, int64(len(es)))
}
