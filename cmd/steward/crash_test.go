package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

var crashSeed = flag.Uint64("crash_seed", 0, "seed for TestCrashSafety's kill points (0: from the clock)")

// TestCrashSafety kills `steward serve` with SIGKILL at random moments while
// firms are being registered, restarts it, and checks the ledger invariants:
// every firm acknowledged with 201 has its firm.registered entry, every
// entry has its firm row and vice versa, each exactly once, indices are
// dense, and the tree verifies once the integrator has caught up.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly")
	}
	bin := buildBinary(t)
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -crash_seed=%d)", seed, seed)
	t.Run("sqlite", func(t *testing.T) {
		crashRounds(t, bin, rand.New(rand.NewPCG(seed, 1)), t.TempDir(), "")
	})
	t.Run("postgres", func(t *testing.T) {
		crashRounds(t, bin, rand.New(rand.NewPCG(seed, 2)), t.TempDir(), pgtest.URL(t))
	})
}

const (
	crashRoundsN  = 6
	crashWriters  = 4
	crashMinAlive = 50 * time.Millisecond
	crashMaxAlive = 1500 * time.Millisecond
)

// crashServer is one run of the binary.
type crashServer struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
	exited chan struct{}
}

func startCrashServer(t *testing.T, bin, dataDir, dbURL string) *crashServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"serve", "--addr", addr, "--data-dir", dataDir, "--operator-token", testOperatorToken, "--log-level", "warn"}
	if dbURL != "" {
		args = append(args, "--database-url", dbURL)
	}
	s := &crashServer{cmd: exec.Command(bin, args...), base: "http://" + addr, stderr: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.kill() })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.exited:
			t.Fatalf("serve exited at start; stderr:\n%s", s.stderr)
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
	}
	t.Fatalf("serve not ready; stderr:\n%s", s.stderr)
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *crashServer) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// postFirms registers firms from several goroutines until stop closes and
// returns the ids acknowledged with 201. Requests cut off by the kill are
// neither acknowledged nor errors.
func postFirms(t *testing.T, base string, stop <-chan struct{}) []broker.FirmID {
	var (
		mu   sync.Mutex
		ids  []broker.FirmID
		wg   sync.WaitGroup
		errs []string
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range crashWriters {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"legal_name":"Crash %d-%d Ltd","sector":"retail","jurisdiction":"GB"}`, w, i)
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/firms", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testOperatorToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // killed mid-request: outcome unknown, which is allowed
				}
				var f broker.Firm
				derr := json.NewDecoder(resp.Body).Decode(&f)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusCreated && derr == nil:
					ids = append(ids, f.ID)
				case resp.StatusCode == http.StatusCreated:
					// The 201 status line arrived but the body was cut off by
					// the kill: acknowledged, id unknown.
				default:
					errs = append(errs, fmt.Sprintf("POST firm: %d", resp.StatusCode))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	return ids
}

func crashRounds(t *testing.T, bin string, rng *rand.Rand, dataDir, dbURL string) {
	start := time.Now()
	acked := map[broker.FirmID]bool{}
	for round := range crashRoundsN {
		s := startCrashServer(t, bin, dataDir, dbURL)
		stop := make(chan struct{})
		got := make(chan []broker.FirmID)
		go func() { got <- postFirms(t, s.base, stop) }()
		alive := crashMinAlive + time.Duration(rng.Int64N(int64(crashMaxAlive-crashMinAlive)))
		time.Sleep(alive)
		s.kill()
		close(stop)
		ids := <-got
		for _, id := range ids {
			acked[id] = true
		}
		t.Logf("round %d: killed after %v, %d firms acknowledged", round, alive.Round(time.Millisecond), len(ids))
	}

	// Restart, let the sequencer and integrator catch up, verify over HTTP.
	s := startCrashServer(t, bin, dataDir, dbURL)
	size := waitForStableCheckpoint(t, s.base)
	vkey := strings.TrimSpace(string(get(t, s.base+"/ledger/vkey")))
	rep, err := verify.Verify(t.Context(), verify.HTTPSource{BaseURL: s.base + "/ledger/"}, verify.Config{VerifierKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Checkpoint.Size != size {
		t.Errorf("verify after crashes:\n%s", rep)
	}
	// The built binary agrees, with the exit codes scripts rely on.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"audit", "verify", "--log", s.base + "/ledger/", "--vkey", vkey, "--state", "none"}, exitPass},
		{[]string{"audit", "verify", "--log", s.base + "/ledger/"}, exitUsage},
		{[]string{"audit", "verify", "--log", s.base + "/nothing-here/", "--vkey", vkey, "--state", "none"}, exitCannotRead},
	} {
		var out bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || (code == exitPass && !strings.HasPrefix(out.String(), fmt.Sprintf("PASS %s size %d ", DefaultLedgerOrigin, size))) {
			t.Errorf("steward %s: exit %d, want %d:\n%s", strings.Join(tc.args, " "), code, tc.code, out.String())
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.exited

	checkLedgerMatchesFirms(t, dataDir, dbURL, size, acked)
	t.Logf("%d rounds, %d firms acknowledged, %d entries, %v", crashRoundsN, len(acked), size, time.Since(start).Round(time.Millisecond))
}

// waitForStableCheckpoint waits until the checkpoint has stopped growing
// for longer than the sequencer's tick and returns its size.
func waitForStableCheckpoint(t *testing.T, base string) int64 {
	t.Helper()
	var size int64 = -1
	stableSince := time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		msg := get(t, base+"/ledger/checkpoint")
		var n int64
		if msg != nil {
			lines := strings.SplitN(string(msg), "\n", 3)
			fmt.Sscan(lines[1], &n)
		}
		if n != size {
			size, stableSince = n, time.Now()
		}
		if time.Since(stableSince) > 2500*time.Millisecond {
			return size
		}
	}
	t.Fatal("checkpoint never settled")
	return 0
}

// checkLedgerMatchesFirms opens the store after the server stopped and
// checks the invariants against the tables themselves.
func checkLedgerMatchesFirms(t *testing.T, dataDir, dbURL string, size int64, acked map[broker.FirmID]bool) {
	t.Helper()
	ctx := t.Context()
	st, _, err := backend.Open(ctx, dbURL, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := st.Ledger()
	if n, err := l.Size(ctx); err != nil || n != size {
		t.Fatalf("sequenced %d (%v), checkpoint %d: integrator did not catch up", n, err, size)
	}
	// Nothing may be left staged: sequencing now would move nothing.
	if n, err := l.Sequence(ctx, 1000); err != nil || n != size {
		t.Errorf("entries still staged after catch-up: sequence gives %d (%v), want %d", n, err, size)
	}
	leaves, err := l.ReadLeaves(ctx, 0, int(size))
	if err != nil {
		t.Fatalf("leaves [0, %d) are not dense: %v", size, err)
	}
	if _, err := l.ReadLeaves(ctx, size, 1); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("a leaf exists beyond size %d: %v", size, err)
	}
	inLog := map[broker.FirmID]int{}
	for i, b := range leaves {
		e, err := broker.ParseEntry(b)
		if err != nil {
			t.Errorf("entry %d: %v", i, err)
			continue
		}
		if e.Type == broker.EntryFirmRegistered {
			inLog[e.Firm]++
		}
	}
	rows := map[broker.FirmID]bool{}
	p := store.Page{Limit: store.MaxLimit}
	for {
		var page []broker.Firm
		if err := st.View(ctx, func(tx store.Tx) (err error) { page, err = tx.ListFirms(ctx, p); return err }); err != nil {
			t.Fatal(err)
		}
		for _, f := range page {
			rows[f.ID] = true
		}
		if len(page) < p.N() {
			break
		}
		p.After = string(page[len(page)-1].ID)
	}
	for id, n := range inLog {
		if n != 1 {
			t.Errorf("firm %s has %d entries", id, n)
		}
		if !rows[id] {
			t.Errorf("entry for firm %s without its firm row", id)
		}
	}
	for id := range rows {
		if inLog[id] == 0 {
			t.Errorf("firm %s has no ledger entry", id)
		}
	}
	for id := range acked {
		if inLog[id] == 0 {
			t.Errorf("firm %s was acknowledged with 201 but has no ledger entry", id)
		}
	}
	if len(acked) == 0 {
		t.Error("no firm was acknowledged in any round; the test proved nothing")
	}
	t.Logf("%d firm rows, %d entries (%d firm registrations)", len(rows), len(leaves), len(inLog))
}
