package ledger_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"golang.org/x/mod/sumdb/tlog"
)

// BenchmarkIntegrate measures integration throughput over the in-memory
// storage: each op sequences and integrates a batch of real entries,
// including signing a checkpoint.
func BenchmarkIntegrate(b *testing.B) {
	for _, batch := range []int{256, 4096} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := memory.New()
			signer, _, _ := ledgertest.NewKey(b)
			es := ledgertest.Entries(b, batch)
			ctx := context.Background()
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := s.Stage(ctx, es...); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Sequence(ctx, batch); err != nil {
					b.Fatal(err)
				}
				if _, _, err := ledger.Integrate(ctx, s, signer, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			// Entries per CPU-second does not depend on what else the machine runs.
			b.ReportMetric(float64(b.N*batch)/(cpuTime()-cpu0).Seconds(), "entries/cpu-s")
		})
	}
}

// hashStore is a Reader holding only stored hashes, enough for proofs.
type hashStore struct{ hashes []tlog.Hash }

func (h *hashStore) ReadHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(h.hashes)) {
			return nil, broker.ErrNotFound
		}
		out[i] = h.hashes[x]
	}
	return out, nil
}
func (h *hashStore) ReadCheckpoint(context.Context) (int64, []byte, error) {
	return 0, nil, broker.ErrNotFound
}
func (h *hashStore) ReadLeaves(context.Context, int64, int) ([][]byte, error) {
	return nil, broker.ErrNotFound
}
func (h *hashStore) ReadCosignatures(context.Context, int64) ([][]byte, error) { return nil, nil }
func (h *hashStore) FindLeaf(context.Context, tlog.Hash) (int64, error) {
	return 0, broker.ErrNotFound
}

// buildHashes computes the stored hashes of a tree of n leaves with the
// same tlog calls the integrator makes.
func buildHashes(b *testing.B, n int64) *hashStore {
	h := &hashStore{hashes: make([]tlog.Hash, 0, 2*n)}
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return h.ReadHashes(context.Background(), idx) })
	var leaf [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(leaf[:], uint64(i))
		hs, err := tlog.StoredHashes(i, leaf[:], r)
		if err != nil {
			b.Fatal(err)
		}
		h.hashes = append(h.hashes, hs...)
	}
	return h
}

// BenchmarkInclusionProof measures proof generation at a large tree,
// 10,000,000 leaves by default (set STEWARD_BENCH_TREE to change it).
// Building the tree is not timed.
func BenchmarkInclusionProof(b *testing.B) {
	n := int64(10_000_000)
	if s := os.Getenv("STEWARD_BENCH_TREE"); s != "" {
		n, _ = strconv.ParseInt(s, 10, 64)
	}
	h := buildHashes(b, n)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	b.Run(fmt.Sprintf("inclusion/size=%d", n), func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := ledger.InclusionProof(ctx, h, rng.Int64N(n), n); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run(fmt.Sprintf("consistency/size=%d", n), func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := ledger.ConsistencyProof(ctx, h, 1+rng.Int64N(n-1), n); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
