package verify_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/verify"
)

// BenchmarkVerify measures a full audit of a log of 1,000,000 entries by
// default (set STEWARD_BENCH_ENTRIES to change it): from an exported
// directory, and over HTTP from ledger.Handler on loopback. Building the
// log is not timed.
func BenchmarkVerify(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("STEWARD_BENCH_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	s := memory.New()
	signer, _, vkey := ledgertest.NewKey(b)
	ledgertest.BuildLog(b, s, signer, ledgertest.Entries(b, n))
	dir := b.TempDir()
	if err := ledger.Export(b.Context(), s, dir, vkey); err != nil {
		b.Fatal(err)
	}
	h, err := ledger.Handler(s, ledger.HandlerConfig{VerifierKey: vkey})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, src := range []struct {
		name string
		src  verify.Source
	}{
		{"dir", verify.DirSource(dir)},
		{"http", verify.HTTPSource{BaseURL: srv.URL, Client: srv.Client()}},
	} {
		b.Run(fmt.Sprintf("%s/entries=%d", src.name, n), func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				rep, err := verify.Verify(b.Context(), src.src, verify.Config{VerifierKey: vkey})
				if err != nil {
					b.Fatal(err)
				}
				if !rep.OK() {
					b.Fatalf("%s", rep)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
			// CPU time does not depend on what else the machine runs.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
