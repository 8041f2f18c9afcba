package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const telecomBan = `package regulatory.v1

deny contains {"text": "Telecom firms may not obtain data in this test jurisdiction."} if input.firm.sector == "telecom"
`

// TestPolicyReload: serve starts with an operator overlay directory, a
// broken change is refused and the running version stays, a good change
// is put in force, and each version in force is on the ledger once.
func TestPolicyReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server")
	}
	dir := t.TempDir()
	policyDir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(src string) {
		if err := os.WriteFile(filepath.Join(policyDir, "telecom.rego"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(telecomBan)
	op, regulator := strings.Repeat("o", 40), strings.Repeat("r", 40)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	baseURL := make(chan string, 1)
	done := make(chan error, 1)
	c := config{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), OperatorToken: op, RegulatorToken: regulator,
		ShutdownTimeout: 5 * time.Second, MaxBody: 1 << 20, LedgerOrigin: DefaultLedgerOrigin, PolicyDir: policyDir}
	go func() { done <- serve(ctx, c, slog.New(slog.DiscardHandler), func(u string) { baseURL <- u }) }()
	var base string
	select {
	case base = <-baseURL:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	call := func(method, path, token string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return resp.StatusCode, v
	}
	_, v := call("GET", "/v1/admin/policy", op)
	first, _ := v["policy_hash"].(string)
	if !strings.HasPrefix(first, "sha256:") {
		t.Fatalf("policy hash %v", v)
	}
	write("package regulatory.v1\n\ndeny contains {\"text\": \"x\"} if {")
	if status, v := call("POST", "/v1/admin/policy/reload", op); status != 400 {
		t.Errorf("reload of a broken module = %d %v, want 400", status, v)
	}
	if _, v := call("GET", "/v1/admin/policy", op); v["policy_hash"] != first {
		t.Errorf("after a refused reload the hash is %v, want %s", v["policy_hash"], first)
	}
	if status, _ := call("POST", "/v1/admin/policy/reload", regulator); status != 403 {
		t.Errorf("reload by the regulator = %d, want 403", status)
	}
	write(strings.Replace(telecomBan, "telecom\"", "media\"", 1))
	status, v := call("POST", "/v1/admin/policy/reload", op)
	second, _ := v["policy_hash"].(string)
	if status != 200 || second == first || second == "" {
		t.Fatalf("good reload = %d %v", status, v)
	}
	// Both versions are on the ledger, once each.
	var hashes []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(hashes) < 2; time.Sleep(100 * time.Millisecond) {
		_, v := call("GET", "/v1/audit/entries?type=policy.bundle", regulator)
		hashes = hashes[:0]
		items, _ := v["items"].([]any)
		for _, it := range items {
			var e struct {
				BundleHash string `json:"bundle_hash"`
			}
			raw, _ := json.Marshal(it.(map[string]any)["entry"])
			_ = json.NewDecoder(bytes.NewReader(raw)).Decode(&e)
			hashes = append(hashes, e.BundleHash)
		}
	}
	if strings.Join(hashes, " ") != first+" "+second {
		t.Errorf("policy.bundle entries %v, want [%s %s]", hashes, first, second)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
