package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/sqlite"
)

const testOperatorToken = "0123456789abcdef0123456789abcdef-test"

// testServer is `steward serve` running in this process.
type testServer struct {
	base    string
	dataDir string
	stop    func()
}

// startServe runs serve on the SQLite store in dataDir until the test ends
// or stop is called.
func startServe(t *testing.T, dataDir string) *testServer {
	t.Helper()
	return startServeWith(t, config{DataDir: dataDir})
}

// startServeWith runs serve with c, filling the test defaults (a loopback
// port, the test operator token, a short drain), until the test ends or
// stop is called; a server that does not stop cleanly fails the test.
func startServeWith(t *testing.T, c config) *testServer {
	t.Helper()
	return startServeLogged(t, c, slog.New(slog.DiscardHandler))
}

// startServeLogged is startServeWith logging to log.
func startServeLogged(t *testing.T, c config, log *slog.Logger) *testServer {
	t.Helper()
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.OperatorToken == "" {
		c.OperatorToken = testOperatorToken
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.MaxBody == 0 {
		c.MaxBody = 1 << 20
	}
	if c.LedgerOrigin == "" {
		c.LedgerOrigin = DefaultLedgerOrigin
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, log, func(u string) { ready <- u }) }()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// A client that dialed a connection for a request another
		// connection then served keeps it idle, unused; the server counts
		// a connection that never sent a request as new, not idle, for 5
		// seconds, and its shutdown waits for it: close the clients' idle
		// connections first, as a client going away would.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return &testServer{base: base, dataDir: c.DataDir, stop: stop}
}

// addFirms registers n firms through the operator API and returns their ids.
func (s *testServer) addFirms(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		body := fmt.Sprintf(`{"legal_name":"Firm %d Ltd","sector":"retail","jurisdiction":"GB"}`, i)
		req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/admin/firms", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testOperatorToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var f broker.Firm
		err = json.NewDecoder(resp.Body).Decode(&f)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || err != nil {
			t.Fatalf("POST firm: %d %v", resp.StatusCode, err)
		}
		ids = append(ids, string(f.ID))
	}
	return ids
}

// waitForCheckpoint waits until the served checkpoint has at least n
// entries and has stopped growing for longer than the sequencer's tick,
// and returns it. serve may log entries of its own at start-up (such as
// the policy bundle in force), so callers compare sizes, not counts.
func (s *testServer) waitForCheckpoint(t *testing.T, n int64) ledger.Checkpoint {
	t.Helper()
	var last ledger.Checkpoint
	since := time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		msg := get(t, s.base+"/ledger/checkpoint")
		if msg == nil {
			continue
		}
		c, err := ledger.ParseCheckpoint(noteBody(msg))
		if err != nil {
			t.Fatal(err)
		}
		if c != last {
			last, since = c, time.Now()
		}
		if c.Size >= n && time.Since(since) > 1200*time.Millisecond {
			return c
		}
	}
	t.Fatalf("checkpoint size %d, want a settled size of at least %d", last.Size, n)
	return last
}

func (s *testServer) keyArg() string { return "@" + filepath.Join(s.dataDir, "ledger.key") }

// audit runs `steward <args>` and returns stdout, stderr and the exit code.
func audit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	code := 0
	if err != nil {
		code = exitCode(err)
	}
	return out.String(), errOut.String(), code
}

func wantCode(t *testing.T, what string, stdout, stderr string, code, want int) {
	t.Helper()
	if code != want {
		t.Errorf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, code, want, stdout, stderr)
	}
}

// TestAuditVerifyServe: against a running `steward serve` an honest log
// passes, with receipts, and a second run extends the state; then the
// exported copy passes too.
func TestAuditVerifyServe(t *testing.T) {
	srv := startServe(t, t.TempDir())
	base := srv.waitForCheckpoint(t, 0).Size
	srv.addFirms(t, 40)
	c := srv.waitForCheckpoint(t, base+40)
	state := filepath.Join(t.TempDir(), "state.json")

	// A receipt for entry 7, fetched as a firm would.
	entry := fetchEntry(t, srv.base, 7)
	lh := sha256.Sum256(append([]byte{0}, entry...))
	rcFile := filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(rcFile, get(t, srv.base+"/ledger/receipt/"+hex.EncodeToString(lh[:])), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", state, "--receipt", rcFile)
	wantCode(t, "honest log", out, errOut, code, exitPass)
	if want := fmt.Sprintf("PASS %s size %d root %s\n", c.Origin, c.Size, c.Hash); out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}

	srv.addFirms(t, 10)
	c2 := srv.waitForCheckpoint(t, c.Size+10)
	out, errOut, code = audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", state, "--json")
	wantCode(t, "grown log", out, errOut, code, exitPass)
	var rep struct {
		OK       bool
		Size     int64
		Previous struct{ Size int64 }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.Size != c2.Size || rep.Previous.Size != c.Size {
		t.Errorf("JSON report %+v (%v):\n%s", rep, err, out)
	}

	// A receipt whose proof was altered is named.
	var rc broker.Receipt
	b, _ := os.ReadFile(rcFile)
	_ = json.Unmarshal(b, &rc)
	rc.Proof[0] = rc.Proof[1]
	b, _ = json.Marshal(rc)
	bad := filepath.Join(t.TempDir(), "bad-receipt.json")
	_ = os.WriteFile(bad, b, 0o644)
	out, errOut, code = audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", "none", "--receipt", bad)
	wantCode(t, "bad receipt", out, errOut, code, exitFail)
	if !strings.Contains(out, "bad-receipt at entry 7") {
		t.Errorf("bad receipt not named:\n%s", out)
	}

	// The wrong key is a verification failure, not a usage error.
	_, otherV, _ := ledger.GenerateKey(DefaultLedgerOrigin)
	out, errOut, code = audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", otherV, "--state", "none")
	wantCode(t, "wrong key", out, errOut, code, exitFail)
	if !strings.Contains(out, "bad-signature") {
		t.Errorf("wrong key not reported as bad-signature:\n%s", out)
	}

	srv.stop()
	dir := filepath.Join(t.TempDir(), "export")
	out, errOut, code = audit(t, "audit", "export", "--data-dir", srv.dataDir, "--dir", dir)
	wantCode(t, "export", out, errOut, code, exitPass)
	if !strings.HasPrefix(out, fmt.Sprintf("exported %s size %d ", DefaultLedgerOrigin, c2.Size)) {
		t.Errorf("export printed %q", out)
	}
	out, errOut, code = audit(t, "audit", "verify", "--dir", dir, "--vkey", srv.keyArg(), "--state", state)
	wantCode(t, "exported dir", out, errOut, code, exitPass)
}

func fetchEntry(t *testing.T, base string, i int) []byte {
	t.Helper()
	var er ledger.EntryResponse
	if err := json.Unmarshal(get(t, fmt.Sprintf("%s/ledger/entry/%d", base, i)), &er); err != nil {
		t.Fatal(err)
	}
	return er.Entry
}

// sqliteExec damages the SQLite file of a stopped server with raw SQL.
func sqliteExec(t *testing.T, dataDir string, stmts ...string) {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(dataDir, backend.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range stmts {
		if err := s.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestAuditVerifyTampered builds a log with serve, stops it, damages the
// SQLite file, exports and verifies: each kind of damage is named and
// the exit code is 1.
func TestAuditVerifyTampered(t *testing.T) {
	golden := t.TempDir()
	srv := startServe(t, golden)
	srv.addFirms(t, 300)
	size := srv.waitForCheckpoint(t, 300).Size
	srv.stop()
	keyArg := srv.keyArg()
	// Entries 5, 10, 100 and 260 are firm registrations; serve logs its own
	// entries, if any, when it starts, before the first firm.

	tests := []struct {
		name   string
		stmts  []string
		want   string
		status int
	}{
		{"honest", nil, "PASS ", exitPass},
		{"entry changed", []string{
			// Change one character of the firm id inside entry 5, keeping it valid JSON.
			`UPDATE ledger_leaves SET entry = CAST(replace(CAST(entry AS TEXT), '"firm":"firm_', '"firm":"firm_0') AS BLOB) WHERE idx = 5`,
		}, "entry-changed at entry 5", exitFail},
		{"entries swapped", []string{
			`UPDATE ledger_leaves SET idx = -1 WHERE idx = 10`,
			`UPDATE ledger_leaves SET idx = 10 WHERE idx = 260`,
			`UPDATE ledger_leaves SET idx = 260 WHERE idx = -1`,
		}, "entries-reordered at entry 10", exitFail},
		{"entry deleted", []string{
			`DELETE FROM ledger_leaves WHERE idx = 100`,
			`UPDATE ledger_leaves SET idx = -idx WHERE idx > 100`,
			`UPDATE ledger_leaves SET idx = -idx - 1 WHERE idx < 0`,
			fmt.Sprintf(`INSERT INTO ledger_leaves (idx, entry, hash) SELECT %d, entry, hash FROM ledger_leaves WHERE idx = 0`, size-1),
		}, "entry-missing at entry 100", exitFail},
		{"checkpoint forged", []string{
			fmt.Sprintf(`UPDATE ledger_checkpoints SET note = CAST(replace(CAST(note AS TEXT), char(10) || '%d' || char(10), char(10) || '%d' || char(10)) AS BLOB) WHERE size = %d`, size, size-1, size),
		}, "bad-signature", exitFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			copyDir(t, golden, dataDir)
			sqliteExec(t, dataDir, tc.stmts...)
			dir := filepath.Join(t.TempDir(), "export")
			out, errOut, code := audit(t, "audit", "export", "--data-dir", dataDir, "--dir", dir)
			wantCode(t, "export", out, errOut, code, exitPass)
			out, errOut, code = audit(t, "audit", "verify", "--dir", dir, "--vkey", keyArg, "--state", "none")
			wantCode(t, "verify", out, errOut, code, tc.status)
			if !strings.Contains(out, tc.want) {
				t.Errorf("want %q in:\n%s", tc.want, out)
			}
			if tc.status == exitFail {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if !strings.HasPrefix(lines[0], "FAIL ") || len(lines) < 2 {
					t.Errorf("want FAIL and one problem per line:\n%s", out)
				}
			}
		})
	}
}

// TestAuditVerifyStateDetectsRollbackAndFork: the state file remembers the
// last verified tree, so a log that later shows an older copy (rollback)
// or a rewritten history of the same size signed with the same key (fork)
// fails, although each on its own would verify.
func TestAuditVerifyStateDetectsRollbackAndFork(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServe(t, dataDir)
	srv.addFirms(t, 20)
	srv.waitForCheckpoint(t, 20)
	srv.stop()
	old := filepath.Join(t.TempDir(), "old")
	audit(t, "audit", "export", "--data-dir", dataDir, "--dir", old)

	srv = startServe(t, dataDir)
	srv.addFirms(t, 10)
	verified := srv.waitForCheckpoint(t, 30)
	state := filepath.Join(t.TempDir(), "state.json")
	out, errOut, code := audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", state)
	wantCode(t, "first run", out, errOut, code, exitPass)

	// Rollback: the old copy verifies alone but not after the newer tree.
	out, errOut, code = audit(t, "audit", "verify", "--dir", old, "--vkey", srv.keyArg(), "--state", "none")
	wantCode(t, "old copy alone", out, errOut, code, exitPass)
	out, errOut, code = audit(t, "audit", "verify", "--dir", old, "--vkey", srv.keyArg(), "--state", state)
	wantCode(t, "rollback", out, errOut, code, exitFail)
	if !strings.Contains(out, "truncated") {
		t.Errorf("rollback not reported as truncated:\n%s", out)
	}

	// Fork: the operator rewrites history (entry 3 replaced by entry 4's
	// bytes) and lets the log re-sign a tree of the same size.
	srv.stop()
	sqliteExec(t, dataDir,
		`DELETE FROM ledger_hashes`, `DELETE FROM ledger_checkpoints`, `DELETE FROM ledger_cosignatures`,
		`UPDATE ledger_leaves SET entry = (SELECT entry FROM ledger_leaves WHERE idx = 4), hash = (SELECT hash FROM ledger_leaves WHERE idx = 4) WHERE idx = 3`,
		`UPDATE ledger_coord SET size = 0 WHERE id = 1`)
	srv = startServe(t, dataDir)
	forked := srv.waitForCheckpoint(t, verified.Size)
	if forked.Size != verified.Size || forked.Hash == verified.Hash {
		t.Fatalf("rewritten log has size %d root %s; want size %d with another root", forked.Size, forked.Hash, verified.Size)
	}
	out, errOut, code = audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", "none")
	wantCode(t, "forked log alone", out, errOut, code, exitPass)
	out, errOut, code = audit(t, "audit", "verify", "--log", srv.base+"/ledger/", "--vkey", srv.keyArg(), "--state", state)
	wantCode(t, "fork", out, errOut, code, exitFail)
	if !strings.Contains(out, "fork: ") || !strings.Contains(out, forked.Hash.String()) {
		t.Errorf("fork not reported:\n%s", out)
	}
}

func TestAuditVerifyExitCodes(t *testing.T) {
	dir := t.TempDir()
	_, vkey, _ := ledger.GenerateKey(DefaultLedgerOrigin)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no subcommand", []string{"audit"}, exitUsage},
		{"unknown subcommand", []string{"audit", "frob"}, exitUsage},
		{"no source", []string{"audit", "verify", "--vkey", vkey}, exitUsage},
		{"two sources", []string{"audit", "verify", "--vkey", vkey, "--dir", dir, "--log", "http://x/"}, exitUsage},
		{"no key", []string{"audit", "verify", "--dir", dir}, exitUsage},
		{"bad key", []string{"audit", "verify", "--dir", dir, "--vkey", "nonsense"}, exitUsage},
		{"bad flag", []string{"audit", "verify", "--frob"}, exitUsage},
		{"help", []string{"audit", "verify", "-h"}, exitPass},
		{"missing key file", []string{"audit", "verify", "--dir", dir, "--vkey", "@" + filepath.Join(dir, "nope")}, exitCannotRead},
		{"missing dir", []string{"audit", "verify", "--dir", filepath.Join(dir, "nope"), "--vkey", vkey, "--state", "none"}, exitCannotRead},
		{"empty dir", []string{"audit", "verify", "--dir", dir, "--vkey", vkey, "--state", "none"}, exitCannotRead},
		{"unreachable log", []string{"audit", "verify", "--log", "http://127.0.0.1:1/ledger/", "--vkey", vkey, "--state", "none"}, exitCannotRead},
		{"export without dir", []string{"audit", "export", "--data-dir", dir}, exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := audit(t, tc.args...)
			wantCode(t, tc.name, out, errOut, code, tc.code)
		})
	}
}

func TestDefaultStatePath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	t.Setenv("HOME", "/home/r")
	_, vkey, _ := ledger.GenerateKey("steward.example/ledger")
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := defaultStatePath(v)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/cfg/steward/audit/steward.example_ledger-%08x.json", v.KeyHash())
	if p != want {
		t.Errorf("default state %s, want %s", p, want)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		if err := os.MkdirAll(filepath.Join(to, filepath.Dir(rel)), 0o700); err != nil {
			return err
		}
		out, err := os.Create(filepath.Join(to, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
