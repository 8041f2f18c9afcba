package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// buildBinary compiles cmd/steward once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "steward")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDemoBinary starts the built binary's demo, checks /readyz and the
// operator API with the printed token, then stops it with SIGTERM and
// expects a clean exit.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "demo", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "STEWARD_DATA_DIR="+dataDir)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	urlRE := regexp.MustCompile(`running at (http://\S+)`)
	tokenRE := regexp.MustCompile(`operator token\s+([0-9a-f]{64})`)
	regulatorRE := regexp.MustCompile(`regulator token\s+([0-9a-f]{64})`)
	registrationRE := regexp.MustCompile(`registration token\s+(stia_\S+)`)
	var base, token, regulatorToken, registrationToken string
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	for sc.Scan() && (base == "" || token == "" || regulatorToken == "" || registrationToken == "") {
		if m := registrationRE.FindStringSubmatch(sc.Text()); m != nil {
			registrationToken = m[1]
		}
		if m := regulatorRE.FindStringSubmatch(sc.Text()); m != nil {
			regulatorToken = m[1]
		}
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
		if m := tokenRE.FindStringSubmatch(sc.Text()); m != nil {
			token = m[1]
		}
	}
	deadline.Stop()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if base == "" || token == "" {
		t.Fatalf("demo printed no URL or token; stderr:\n%s", stderr.String())
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/v1/admin/firms", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var firms struct{ Items []json.RawMessage }
	_ = json.NewDecoder(resp.Body).Decode(&firms)
	resp.Body.Close()
	if len(firms.Items) != len(demoFirms) {
		t.Errorf("demo has %d firms, want %d", len(firms.Items), len(demoFirms))
	}
	// The ledger serves a signed checkpoint that verifies with its published key.
	var vkey, ckpt []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		vkey, ckpt = get(t, base+"/ledger/vkey"), get(t, base+"/ledger/checkpoint")
		if len(ckpt) > 0 {
			break
		}
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatalf("vkey %q: %v", vkey, err)
	}
	if _, err := note.Open(ckpt, note.VerifierList(v)); err != nil {
		t.Errorf("checkpoint %q does not verify: %v", ckpt, err)
	}
	// The demo's history is on the ledger and in the regulator's report:
	// five firm registrations, then Alice's requests decided by policy.
	var entries struct{ Items []json.RawMessage }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(entries.Items) < 9; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+"/v1/audit/entries", nil)
		req.Header.Set("Authorization", "Bearer "+regulatorToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&entries)
		resp.Body.Close()
	}
	if len(entries.Items) < 9 {
		t.Errorf("demo ledger has %d entries, want the 5 firm registrations and the consent history", len(entries.Items))
	}
	// The printed registration token lets the demo firm register a client
	// (RFC 7591), once the token is checked.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	clientJWKS, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
		"x": base64.RawURLEncoding.EncodeToString(pub)}}})
	meta := fmt.Sprintf(`{"client_name":"Acme checkout","redirect_uris":["http://127.0.0.1:9999/callback"],"jwks":%s,"token_endpoint_auth_method":"private_key_jwt"}`, clientJWKS)
	for _, tc := range []struct {
		bearer string
		want   int
	}{{"stia_wrong", 401}, {registrationToken, 201}} {
		req, _ := http.NewRequest("POST", base+"/oauth/register", strings.NewReader(meta))
		req.Header.Set("Authorization", "Bearer "+tc.bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("register with %q: %d %s, want %d", tc.bearer, resp.StatusCode, b, tc.want)
		}
	}
	var jwks struct {
		Keys []struct{ Kty, Crv, Kid, Alg string }
	}
	if err := json.Unmarshal(get(t, base+"/webhooks/jwks.json"), &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].Alg != "EdDSA" {
		t.Errorf("webhook JWKS = %+v, %v", jwks, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "steward.db")); err != nil {
		t.Errorf("no SQLite file in the data directory: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("no clean-stop log line; stderr:\n%s", stderr.String())
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil
	}
	return b
}

// TestGracefulDrain: a request in flight when shutdown starts completes.
func TestGracefulDrain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "finished")
	})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, ln, h, slog.New(slog.DiscardHandler), 5*time.Second) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	if body := <-got; body != "finished" {
		t.Errorf("in-flight request got %q, want it to finish", body)
	}
	if err := <-served; err != nil {
		t.Errorf("serveHTTP = %v, want clean shutdown", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "steward.json")
	if err := os.WriteFile(file, []byte(`{"addr":"127.0.0.1:1111","data-dir":"/from/file","log-level":"warn","shutdown-timeout":"3s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STEWARD_DATA_DIR", "/from/env")
	t.Setenv("STEWARD_CONFIG", file)
	var c config
	fs, cf := flagSet("serve", "", &c, io.Discard, serveFlags...)
	if err := parseConfig(fs, cf, []string{"--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	want := config{Addr: "127.0.0.1:1111", DataDir: "/from/env", LogLevel: "debug", LogFormat: "json", ShutdownTimeout: 3 * time.Second, MaxBody: 1 << 20,
		LedgerOrigin: DefaultLedgerOrigin}
	if c != want {
		t.Errorf("config = %+v\nwant     %+v", c, want)
	}

	if err := os.WriteFile(file, []byte(`{"adress":"typo"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, cf = flagSet("serve", "", &c, io.Discard, serveFlags...)
	if err := parseConfig(fs, cf, nil); err == nil || !strings.Contains(err.Error(), `unknown setting "adress"`) {
		t.Errorf("unknown file key: %v", err)
	}
	t.Setenv("STEWARD_CONFIG", "")
	t.Setenv("STEWARD_SHUTDOWN_TIMEOUT", "soon")
	fs, cf = flagSet("serve", "", &c, io.Discard, serveFlags...)
	if err := parseConfig(fs, cf, nil); err == nil || !strings.Contains(err.Error(), "STEWARD_SHUTDOWN_TIMEOUT") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), nil, &out, &errOut); !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "Commands:") {
		t.Errorf("no command: %v\n%s", err, errOut.String())
	}
	errOut.Reset()
	if err := run(t.Context(), []string{"frobnicate"}, &out, &errOut); exitCode(err) != 2 {
		t.Errorf("unknown command exit code %d", exitCode(err))
	}
	out.Reset()
	if err := run(t.Context(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "steward ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	errOut.Reset()
	if err := run(t.Context(), []string{"serve", "-h"}, &out, &errOut); err != nil || !strings.Contains(errOut.String(), "STEWARD_DATA_DIR") {
		t.Errorf("serve -h: %v\n%s", err, errOut.String())
	}
	t.Setenv("STEWARD_OPERATOR_TOKEN", "")
	err := run(t.Context(), []string{"serve", "--data-dir", t.TempDir()}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "operator token") {
		t.Errorf("serve without a token: %v", err)
	}
}

func TestMigrateCommand(t *testing.T) {
	for name, args := range map[string]func(t *testing.T) []string{
		"sqlite":   func(t *testing.T) []string { return []string{"--data-dir", t.TempDir()} },
		"postgres": func(t *testing.T) []string { return []string{"--database-url", pgtest.URL(t)} },
	} {
		t.Run(name, func(t *testing.T) {
			a := args(t)
			var out bytes.Buffer
			if err := run(t.Context(), append([]string{"migrate"}, a...), &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "applied migrations [1") {
				t.Errorf("first migrate printed %q", out.String())
			}
			out.Reset()
			if err := run(t.Context(), append([]string{"migrate"}, a...), &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "up to date") {
				t.Errorf("second migrate printed %q", out.String())
			}
		})
	}
}
