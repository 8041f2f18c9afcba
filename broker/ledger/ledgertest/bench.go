package ledgertest

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker/ledger"
)

// BenchAppend measures appends with group commit: writers goroutines each
// stage one entry per transaction of their own (Storage.Stage, as a
// business transaction would), while the sequencer and integrator run
// (ledger.Start). b.N is the number of entries appended; it reports
// appends/s (commits of stagers per second) and, after the timer stops,
// checks that the integrator catches up with every entry.
func BenchAppend(b *testing.B, s ledger.Storage, writers int) {
	benchAppend(b, s, writers, false)
}

// BenchLogAppend measures appends through Log.Stage, which group-commits
// concurrent callers into one staging transaction, from the first append
// until the integrator has signed a checkpoint covering every one: the
// appends/s it reports is end to end (staged, sequenced, hashed, signed);
// staged/s is the rate at which appends were acknowledged.
func BenchLogAppend(b *testing.B, s ledger.Storage, writers int) {
	benchAppend(b, s, writers, true)
}

func benchAppend(b *testing.B, s ledger.Storage, writers int, viaLog bool) {
	ctx := b.Context()
	signer, _, _ := NewKey(b)
	entries := Entries(b, 4096)
	start, err := s.Size(ctx)
	if err != nil {
		b.Fatal(err)
	}
	lg, shutdown, err := ledger.Start(ctx, s, ledger.Config{Signer: signer, Interval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(context.Background())
	var next atomic.Int64
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := entries[next.Add(1)%int64(len(entries))]
			var err error
			if viaLog {
				_, err = lg.Stage(ctx, e)
			} else {
				err = s.Stage(ctx, e)
				lg.Kick()
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	staged := b.Elapsed()
	if !viaLog {
		b.StopTimer()
		b.ReportMetric(float64(b.N)/staged.Seconds(), "appends/s")
	}
	want := start + int64(b.N)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
		size, _, err := s.ReadCheckpoint(ctx)
		if err == nil && size >= want {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("integrator did not reach %d entries (at %d: %v)", want, size, err)
		}
	}
	if viaLog {
		b.StopTimer()
		b.ReportMetric(float64(b.N)/staged.Seconds(), "staged/s")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	}
}
