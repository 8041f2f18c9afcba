package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
)

// TestServeMountsOAuth: serve publishes the authorization server at its
// own URL, keeps client administration behind the operator token, and
// keeps the signing key across restarts.
func TestServeMountsOAuth(t *testing.T) {
	dir := t.TempDir()
	token := strings.Repeat("t", 40)
	start := func() (string, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		c := config{Addr: "127.0.0.1:0", DataDir: dir, OperatorToken: token, ShutdownTimeout: 5 * time.Second,
			MaxBody: 1 << 20, LedgerOrigin: DefaultLedgerOrigin}
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- serve(ctx, c, slog.New(slog.DiscardHandler), func(b string) { ready <- b }) }()
		select {
		case base := <-ready:
			return base, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		case err := <-done:
			t.Fatalf("serve: %v", err)
		}
		return "", nil
	}
	base, stop := start()
	var md map[string]any
	_ = json.Unmarshal(get(t, base+oauth.PathMetadata), &md)
	if md["issuer"] != base || md["token_endpoint"] != base+oauth.PathToken {
		t.Errorf("metadata: %v", md)
	}
	jwks := get(t, base+oauth.PathJWKS)
	if !strings.Contains(string(jwks), `"kty":"EC"`) {
		t.Errorf("jwks: %s", jwks)
	}
	resp, err := http.PostForm(base+oauth.PathPAR, url.Values{"response_type": {"code"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("PAR without client authentication: %d", resp.StatusCode)
	}
	mint := func(bearer string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/oauth/firms/"+string(broker.NewFirmID())+"/initial-access-tokens", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := mint(""); st != http.StatusUnauthorized {
		t.Errorf("operator route without the token: %d", st)
	}
	if st := mint(token); st != http.StatusNotFound {
		t.Errorf("operator route for an unknown firm: %d", st)
	}
	stop()
	base, stop = start()
	defer stop()
	if again := get(t, base+oauth.PathJWKS); string(again) != string(jwks) {
		t.Errorf("signing key changed across restarts:\n%s\n%s", jwks, again)
	}
}
