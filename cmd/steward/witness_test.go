package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/witness"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logMux serves a ledger the way serve would, plus the cosignature
// endpoint the witness posts to.
func logMux(t *testing.T, s ledger.Storage, vkey, witnessVKey string) http.Handler {
	t.Helper()
	read, err := ledger.Handler(s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: vkey})
	if err != nil {
		t.Fatal(err)
	}
	cosign, err := ledger.CosignatureHandler(s, ledger.CosignatureConfig{VerifierKey: vkey, WitnessKeys: []string{witnessVKey}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /ledger/cosignature", cosign)
	mux.Handle("/ledger/", read)
	return mux
}

// TestWitnessEndToEnd runs a log and `steward witness` in this process:
// the log serves checkpoints carrying the witness's cosignature as it
// grows, and when the log is swapped for a fork signed with the same key
// the witness refuses to cosign it.
func TestWitnessEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	signer, logKey, vkey := ledgertest.NewKey(t)
	wskey, wvkey, err := witness.GenerateKey("witness.regulator.test")
	if err != nil {
		t.Fatal(err)
	}
	wv, err := witness.NewCosignatureVerifier(wvkey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile, stateFile := filepath.Join(dir, "witness.key"), filepath.Join(dir, "state.json")
	if err := os.WriteFile(keyFile, []byte(wskey+"\n"+wvkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := memory.New()
	lg, shutdown, err := ledger.Start(ctx, s, ledger.Config{Signer: signer, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	var current atomic.Pointer[http.Handler]
	h := logMux(t, s, vkey, wvkey)
	current.Store(&h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) }))
	defer srv.Close()

	entries := ledgertest.Entries(t, 40)
	if _, err := lg.Stage(ctx, entries[:10]...); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"witness", "--log", srv.URL + "/ledger/", "--log-vkey", vkey, "--key-file", keyFile,
			"--state", stateFile, "--addr", "127.0.0.1:0", "--interval", "50ms", "--log-format", "text", "--log-level", "debug"}, &stdout, &stderr)
	}()

	// cosigned waits until the served checkpoint has size n and a valid
	// cosignature by the witness.
	cosigned := func(n int64) {
		t.Helper()
		verifiers := note.VerifierList(logKey, wv)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			msg := get(t, srv.URL+"/ledger/checkpoint")
			nt, err := note.Open(msg, verifiers)
			if err != nil {
				continue
			}
			c, _ := ledger.ParseCheckpoint([]byte(nt.Text))
			if c.Size != n {
				continue
			}
			for _, sig := range nt.Sigs {
				if sig.Name == wv.Name() {
					return
				}
			}
		}
		t.Fatalf("no cosigned checkpoint of size %d; witness stderr:\n%s", n, stderr.String())
	}
	cosigned(10)
	if _, err := lg.Stage(ctx, entries[10:25]...); err != nil {
		t.Fatal(err)
	}
	cosigned(25)
	if !strings.Contains(stdout.String(), wvkey) {
		t.Errorf("witness did not print its public key:\n%s", stdout.String())
	}

	// A cosigned checkpoint still passes audit verify.
	out, errOut, code := audit(t, "audit", "verify", "--log", srv.URL+"/ledger/", "--vkey", vkey, "--state", "none")
	wantCode(t, "cosigned log", out, errOut, code, exitPass)

	// A fork: the same key signs a 40-entry log whose entry 3 differs.
	forked := append([][]byte{}, entries...)
	forked[3] = entries[30]
	fs := memory.New()
	ledgertest.BuildLog(t, fs, signer, forked)
	fh := logMux(t, fs, vkey, wvkey)
	current.Store(&fh)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !strings.Contains(stderr.String(), "level=ERROR"); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a few more polls
	if !strings.Contains(stderr.String(), "level=ERROR msg=\"witness refused the log's checkpoint\"") {
		t.Errorf("witness did not report the fork as an error:\n%s", stderr.String())
	}
	if cs, err := fs.ReadCosignatures(ctx, 40); err != nil || len(cs) != 0 {
		t.Errorf("fork got cosignatures %q (%v)", cs, err)
	}
	var state map[string]struct{ Size int64 }
	b, _ := os.ReadFile(stateFile)
	if err := json.Unmarshal(b, &state); err != nil || state[ledgertest.Origin].Size != 25 {
		t.Errorf("witness state %s (%v), want size 25 kept", b, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("witness: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("witness did not stop")
	}
}

func TestWitnessKeyCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "witness.key")
	skey, vkey, err := loadOrCreateWitnessKey(path, "witness.example")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	if !strings.HasPrefix(vkey, "witness.example+") {
		t.Errorf("vkey %q", vkey)
	}
	skey2, vkey2, err := loadOrCreateWitnessKey(path, "other.name")
	if err != nil || skey2 != skey || vkey2 != vkey {
		t.Errorf("second load changed the key: %v", err)
	}
}

// TestServeWithWitness runs the real serve with a configured witness key
// and the real `steward witness` against it: firms registered through the
// operator API grow the log, and serve's checkpoint comes back cosigned.
func TestServeWithWitness(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server and a witness")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wskey, wvkey, err := witness.GenerateKey("witness.regulator.test")
	if err != nil {
		t.Fatal(err)
	}
	wv, err := witness.NewCosignatureVerifier(wvkey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "witness.key")
	if err := os.WriteFile(keyFile, []byte(wskey+"\n"+wvkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	op := strings.Repeat("k", 40)
	c := config{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), OperatorToken: op, ShutdownTimeout: 5 * time.Second,
		MaxBody: 1 << 20, LedgerOrigin: DefaultLedgerOrigin, WitnessKeys: wvkey}
	baseURL := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.DiscardHandler), func(u string) { baseURL <- u }) }()
	var base string
	select {
	case base = <-baseURL:
	case err := <-served:
		t.Fatal(err)
	}
	for i := range 3 {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/admin/firms",
			strings.NewReader(fmt.Sprintf(`{"legal_name":"Firm %d Ltd","sector":"retail","jurisdiction":"GB"}`, i)))
		req.Header.Set("Authorization", "Bearer "+op)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("register firm: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	logVKey := strings.TrimSpace(string(get(t, base+"/ledger/vkey")))
	logKey, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	wdone := make(chan error, 1)
	go func() {
		wdone <- run(ctx, []string{"witness", "--log", base + "/ledger/", "--log-vkey", logVKey, "--key-file", keyFile,
			"--state", filepath.Join(dir, "state.json"), "--addr", "127.0.0.1:0", "--interval", "50ms"}, &stdout, &stderr)
	}()
	verifiers := note.VerifierList(logKey, wv)
	ok := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(50 * time.Millisecond) {
		nt, err := note.Open(get(t, base+"/ledger/checkpoint"), verifiers)
		if err != nil {
			continue
		}
		if cp, _ := ledger.ParseCheckpoint([]byte(nt.Text)); cp.Size < 3 {
			continue
		}
		for _, sig := range nt.Sigs {
			ok = ok || sig.Name == wv.Name()
		}
	}
	if !ok {
		t.Fatalf("serve never served a checkpoint cosigned by the witness; witness stderr:\n%s", stderr.String())
	}
	cancel()
	<-wdone
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}
