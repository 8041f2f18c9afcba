// Command ledger is a load harness for the ledger's storage. It is a
// measuring tool, not part of the product.
//
//	go run ./bench/ledger append [-db URL] [-writers 64] [-duration 10s] [-batch 1]
//	    C writers each commit their own transaction staging -batch entries
//	    (Storage.Stage) while the sequencer and integrator run; prints
//	    appends/s, p50/p99/max commit latency and how long the integrator
//	    took to catch up. Without -db it uses a SQLite file in a temp dir.
//	go run ./bench/ledger proofs [-db URL] [-n 10000000] [-samples 2000]
//	    writes the stored hashes of an n-entry tree (tlog.StoredHashes over
//	    synthetic leaves, no entry rows) into the store, then times
//	    inclusion proofs (ledger.InclusionProof) for random entries.
//	go run ./bench/ledger verify -out DIR [-cpuprofile FILE]
//	    runs the verifier library over an exported DIR (with its own vkey
//	    file, which is fine for timing) and prints the time, for profiling.
//	go run ./bench/ledger genlog -n 1000000 -out DIR
//	    builds an n-entry log of real canonical entries in memory and
//	    exports it to DIR, printing the verifier key; then time
//	    `steward audit verify --dir DIR --vkey KEY --state none`.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/store/postgres"
	"github.com/stewardhq/steward/broker/store/relational"
	"github.com/stewardhq/steward/broker/store/sqlite"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ledger append|proofs|genlog [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	db := fs.String("db", "", "PostgreSQL URL; empty means a SQLite file in a temp directory (or -sqlite)")
	sqlitePath := fs.String("sqlite", "", "SQLite file to use instead of a temp one")
	writers := fs.Int("writers", 64, "concurrent writers (append)")
	duration := fs.Duration("duration", 10*time.Second, "how long to write (append)")
	batch := fs.Int("batch", 1, "entries per transaction (append)")
	anyQuery := fs.Bool("anyquery", false, "PostgreSQL only: read a proof's hashes with one WHERE idx = ANY($1) query instead of relational.Ledger.ReadHashes, to measure that design (proofs)")
	seqSQL := fs.Int("seqsql", 0, "PostgreSQL only, with -drain: sequence with one server-side INSERT … SELECT … sha256() statement per batch of this many entries instead of Storage.Sequence, to measure that design")
	drainOnly := fs.Bool("drain", false, "start the sequencer and integrator only after writing, to time them alone (append)")
	oneshot := fs.Bool("oneshot", false, "PostgreSQL only: stage each batch with one INSERT … SELECT unnest($1::bytea[]) statement in its own implicit transaction (one round trip) instead of Storage.Stage's BEGIN, one INSERT per entry, COMMIT (append)")
	n := fs.Int64("n", 10_000_000, "tree size (proofs, genlog)")
	samples := fs.Int("samples", 2000, "proofs to time (proofs)")
	out := fs.String("out", "", "directory to export to (genlog)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	_ = fs.Parse(os.Args[2:])
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var err error
	switch os.Args[1] {
	case "append":
		err = appendBench(ctx, *db, *sqlitePath, *writers, *batch, *duration, *oneshot, *drainOnly, *seqSQL)
	case "proofs":
		err = proofBench(ctx, *db, *sqlitePath, *n, *samples, *anyQuery)
	case "genlog":
		err = genlog(ctx, *n, *out)
	case "verify":
		err = verifyDir(ctx, *out)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		pprof.StopCPUProfile()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ledger bench:", err)
	os.Exit(1)
}

// openStore opens and migrates the store; conns bounds the PostgreSQL pool.
func openStore(ctx context.Context, db, path string, conns int) (*relational.Ledger, string, func(), error) {
	if db != "" {
		s, err := postgres.Open(ctx, postgres.Config{URL: db, MaxConns: int32(conns)})
		if err != nil {
			return nil, "", nil, err
		}
		if _, err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, "", nil, err
		}
		return s.Ledger(), "postgres", s.Close, nil
	}
	cleanup := func() {}
	if path == "" {
		dir, err := os.MkdirTemp("", "ledger-bench-")
		if err != nil {
			return nil, "", nil, err
		}
		path = filepath.Join(dir, "steward.db")
		cleanup = func() { os.RemoveAll(dir) }
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, "", nil, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, "", nil, err
	}
	return s.Ledger(), "sqlite " + path, func() { s.Close(); cleanup() }, nil
}

// entries returns n distinct canonical entries.
func entries(n int) ([][]byte, error) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		b, err := broker.Entry{Type: broker.EntryFirmRegistered, Time: base.Add(time.Duration(i) * time.Millisecond), Firm: broker.NewFirmID()}.CanonicalBytes()
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func newSigner() (note.Signer, string, error) {
	skey, vkey, err := ledger.GenerateKey("bench.steward.test/ledger")
	if err != nil {
		return nil, "", err
	}
	s, err := note.NewSigner(skey)
	return s, vkey, err
}

// stopLog stops the sequencer and integrator, once started.
var stopLog = func() {}

func appendBench(ctx context.Context, db, path string, writers, batch int, d time.Duration, oneshot, drainOnly bool, seqSQL int) error {
	l, name, closeFn, err := openStore(ctx, db, path, writers+4)
	if err != nil {
		return err
	}
	defer closeFn()
	stage := l.Stage
	if oneshot {
		if db == "" {
			return fmt.Errorf("-oneshot needs -db")
		}
		pc, err := pgxpool.ParseConfig(db)
		if err != nil {
			return err
		}
		pc.MaxConns = int32(writers + 4)
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return err
		}
		defer pool.Close()
		name += " (one-statement staging)"
		stage = func(ctx context.Context, es ...[]byte) error {
			_, err := pool.Exec(ctx, `INSERT INTO ledger_staged (entry) SELECT unnest($1::bytea[])`, es)
			return err
		}
	}
	signer, _, err := newSigner()
	if err != nil {
		return err
	}
	pool, err := entries(4096)
	if err != nil {
		return err
	}
	startSize, err := l.Size(ctx)
	if err != nil {
		return err
	}
	var lg *ledger.Log
	startLog := func() error {
		var shutdown func(context.Context) error
		var err error
		lg, shutdown, err = ledger.Start(ctx, l, ledger.Config{Signer: signer, Interval: 10 * time.Millisecond})
		if err != nil {
			return err
		}
		stopLog = func() { _ = shutdown(context.Background()) }
		return nil
	}
	if !drainOnly {
		if err := startLog(); err != nil {
			return err
		}
	}
	defer func() { stopLog() }()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		next      atomic.Int64
		failures  atomic.Int64
		wg        sync.WaitGroup
	)
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	began := time.Now()
	for range writers {
		wg.Go(func() {
			var mine []time.Duration
			es := make([][]byte, batch)
			for wctx.Err() == nil {
				for i := range es {
					es[i] = pool[next.Add(1)%int64(len(pool))]
				}
				t0 := time.Now()
				if err := stage(context.WithoutCancel(wctx), es...); err != nil {
					failures.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
				if lg != nil {
					lg.Kick()
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	appended := int64(len(latencies) * batch)
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	fmt.Printf("store %s, %d writers, %d entries per transaction, %v\n", name, writers, batch, elapsed.Round(time.Millisecond))
	fmt.Printf("appends: %d (%d failed transactions)\n", appended, failures.Load())
	fmt.Printf("appends/s: %.0f   transactions/s: %.0f\n", float64(appended)/elapsed.Seconds(), float64(len(latencies))/elapsed.Seconds())
	fmt.Printf("commit latency: p50 %v  p99 %v  max %v\n", pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))

	want := startSize + appended
	t0 := time.Now()
	if drainOnly {
		// Time the two serialised steps one after the other, as the
		// log's loops run them (batches of ledger.DefaultBatchMaxSize and
		// checkpoints of up to ledger.DefaultIntegrateMaxSize entries).
		sequence := func(ctx context.Context) (int64, error) { return l.Sequence(ctx, ledger.DefaultBatchMaxSize) }
		if seqSQL > 0 {
			if db == "" {
				return fmt.Errorf("-seqsql needs -db")
			}
			pool, err := pgxpool.New(ctx, db)
			if err != nil {
				return err
			}
			defer pool.Close()
			sequence = func(ctx context.Context) (int64, error) { return sequenceServerSide(ctx, pool, seqSQL) }
		}
		for size := startSize; size < want; {
			if size, err = sequence(ctx); err != nil {
				return err
			}
		}
		seq := time.Since(t0)
		t1 := time.Now()
		for {
			c, wrote, err := ledger.Integrate(ctx, l, signer, ledger.DefaultIntegrateMaxSize)
			if err != nil {
				return err
			}
			if !wrote || c.Size >= want {
				break
			}
		}
		integ := time.Since(t1)
		fmt.Printf("sequencing alone: %.0f entries/s (%v); integration alone: %.0f entries/s (%v)\n",
			float64(appended)/seq.Seconds(), seq.Round(time.Millisecond), float64(appended)/integ.Seconds(), integ.Round(time.Millisecond))
	}
	for {
		size, _, err := l.ReadCheckpoint(ctx)
		if err == nil && size >= want {
			break
		}
		if ctx.Err() != nil || time.Since(t0) > 5*time.Minute {
			return fmt.Errorf("integrator did not catch up: at %d of %d", size, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	caught := time.Since(t0)
	fmt.Printf("integrator caught up %v after the last commit (checkpoint size %d)\n", caught.Round(time.Millisecond), want)
	if drainOnly {
		fmt.Printf("sequencer+integrator alone: %.0f entries/s\n", float64(appended)/caught.Seconds())
	}
	return nil
}

// proofBench writes the stored hashes of an n-leaf tree and times proofs.
func proofBench(ctx context.Context, db, path string, n int64, samples int, anyQuery bool) error {
	l, name, closeFn, err := openStore(ctx, db, path, 8)
	if err != nil {
		return err
	}
	defer closeFn()
	have, err := storedHashCount(ctx, l)
	if err != nil {
		return err
	}
	total := tlog.StoredHashCount(n)
	if have < total {
		fmt.Printf("generating %d stored hashes for %d leaves into %s (have %d)\n", total, n, name, have)
		if err := generateHashes(ctx, l, n, have); err != nil {
			return err
		}
	}
	root, err := tlog.TreeHash(n, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return l.ReadHashes(ctx, ix) }))
	if err != nil {
		return err
	}
	fmt.Printf("tree of %d entries, root %s\n", n, root)
	var readAny tlog.HashReader
	if anyQuery {
		if db == "" {
			return fmt.Errorf("-anyquery needs -db")
		}
		pool, err := pgxpool.New(ctx, db)
		if err != nil {
			return err
		}
		defer pool.Close()
		readAny = tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			rows, err := pool.Query(ctx, `SELECT idx, hash FROM ledger_hashes WHERE idx = ANY($1)`, ix)
			if err != nil {
				return nil, err
			}
			got := map[int64]tlog.Hash{}
			for rows.Next() {
				var i int64
				var b []byte
				if err := rows.Scan(&i, &b); err != nil {
					return nil, err
				}
				got[i] = tlog.Hash(b)
			}
			if err := rows.Err(); err != nil {
				return nil, err
			}
			out := make([]tlog.Hash, len(ix))
			for k, x := range ix {
				h, ok := got[x]
				if !ok {
					return nil, fmt.Errorf("stored hash %d missing", x)
				}
				out[k] = h
			}
			return out, nil
		})
		name += " (one = ANY query per proof)"
	}
	fmt.Printf("store %s\n", name)
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, samples)
	began := time.Now()
	for range samples {
		i := rng.Int64N(n)
		t0 := time.Now()
		var p tlog.RecordProof
		if readAny != nil {
			p, err = tlog.ProveRecord(n, i, readAny)
		} else {
			p, err = ledger.InclusionProof(ctx, l, i, n)
		}
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		leaf, err := l.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			return err
		}
		if err := tlog.CheckRecord(p, n, root, i, leaf[0]); err != nil {
			return fmt.Errorf("proof for %d does not check: %w", i, err)
		}
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	slices.Sort(lat)
	fmt.Printf("%d inclusion proofs in a tree of %d in %v: mean %v  p50 %v  p99 %v  max %v\n", samples, n, time.Since(began).Round(time.Millisecond),
		(sum / time.Duration(len(lat))).Round(time.Microsecond), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}

// storedHashCount finds how many stored hashes are already written, by
// binary search (hashes are written in index order).
func storedHashCount(ctx context.Context, l *relational.Ledger) (int64, error) {
	lo, hi := int64(0), int64(1)<<40
	for lo < hi {
		mid := (lo + hi) / 2
		if _, err := l.ReadHashes(ctx, []int64{mid}); err == nil {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// generateHashes computes the stored hashes of leaves [0, n) with
// tlog.StoredHashes and writes those from index have on, in chunks.
func generateHashes(ctx context.Context, l *relational.Ledger, n, have int64) error {
	all := make([]tlog.Hash, 0, tlog.StoredHashCount(n))
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for k, x := range ix {
			out[k] = all[x]
		}
		return out, nil
	})
	var leaf [16]byte
	t0 := time.Now()
	written := have
	const chunk = 1 << 16
	flush := func(force bool) error {
		for int64(len(all))-written >= chunk || (force && int64(len(all)) > written) {
			end := min(int64(len(all)), written+chunk)
			if err := l.WriteHashes(ctx, written, all[written:end]); err != nil {
				return err
			}
			written = end
		}
		return nil
	}
	for i := range n {
		leaf[0], leaf[1], leaf[2], leaf[3], leaf[4], leaf[5], leaf[6], leaf[7] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24), byte(i>>32), 'l', 'e', 'a'
		hs, err := tlog.StoredHashes(i, leaf[:], r)
		if err != nil {
			return err
		}
		all = append(all, hs...)
		if err := flush(false); err != nil {
			return err
		}
		if i%1_000_000 == 999_999 {
			fmt.Printf("  %d leaves, %v\n", i+1, time.Since(t0).Round(time.Second))
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	fmt.Printf("generated in %v\n", time.Since(t0).Round(time.Second))
	return nil
}

// genlog builds an n-entry log in memory and exports it.
func genlog(ctx context.Context, n int64, out string) error {
	if out == "" {
		return fmt.Errorf("genlog needs -out")
	}
	signer, vkey, err := newSigner()
	if err != nil {
		return err
	}
	s := memory.New()
	t0 := time.Now()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const chunk = 1 << 16
	for done := int64(0); done < n; {
		k := min(chunk, n-done)
		es := make([][]byte, k)
		for i := range es {
			b, err := broker.Entry{Type: broker.EntryFirmRegistered, Time: base.Add(time.Duration(done+int64(i)) * time.Millisecond), Firm: broker.NewFirmID()}.CanonicalBytes()
			if err != nil {
				return err
			}
			es[i] = b
		}
		if err := s.Stage(ctx, es...); err != nil {
			return err
		}
		for {
			size, err := s.Sequence(ctx, chunk)
			if err != nil {
				return err
			}
			if size >= done+k {
				break
			}
		}
		if _, _, err := ledger.Integrate(ctx, s, signer, chunk); err != nil {
			return err
		}
		done += k
	}
	fmt.Printf("built %d entries in %v\n", n, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if err := ledger.Export(ctx, s, out, vkey); err != nil {
		return err
	}
	fmt.Printf("exported to %s in %v\nvkey %s\n", out, time.Since(t0).Round(time.Millisecond), vkey)
	return nil
}

// sequenceServerSide is a sketch of a faster PostgreSQL sequencer: the
// entries never leave the server. One statement moves up to limit staged
// entries into the leaf table at the next indices, computing their RFC
// 6962 leaf hashes with sha256(), under the same coordination-row lock.
func sequenceServerSide(ctx context.Context, pool *pgxpool.Pool, limit int) (int64, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var size int64
	if err := tx.QueryRow(ctx, `SELECT size FROM ledger_coord WHERE id = 0 FOR UPDATE`).Scan(&size); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `WITH moved AS (
	DELETE FROM ledger_staged WHERE id IN (SELECT id FROM ledger_staged ORDER BY id LIMIT $2) RETURNING id, entry
)
INSERT INTO ledger_leaves (idx, entry, hash)
SELECT $1::bigint + row_number() OVER (ORDER BY id) - 1, entry, sha256('\x00'::bytea || entry) FROM moved`, size, limit)
	if err != nil {
		return 0, err
	}
	size += tag.RowsAffected()
	if _, err := tx.Exec(ctx, `UPDATE ledger_coord SET size = $1 WHERE id = 0`, size); err != nil {
		return 0, err
	}
	return size, tx.Commit(ctx)
}

// verifyDir times verify.Verify over an exported directory.
func verifyDir(ctx context.Context, dir string) error {
	vkey, err := os.ReadFile(filepath.Join(dir, "vkey"))
	if err != nil {
		return err
	}
	t0 := time.Now()
	rep, err := verify.Verify(ctx, verify.DirSource(dir), verify.Config{VerifierKey: strings.TrimSpace(string(vkey))})
	if err != nil {
		return err
	}
	fmt.Printf("%s(verified in %v)\n", rep, time.Since(t0).Round(time.Millisecond))
	return nil
}
