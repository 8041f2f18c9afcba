package oauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAddressAllowed(t *testing.T) {
	for _, tc := range []struct {
		addr           string
		want, loopback bool
	}{
		{"93.184.215.14", true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true},
		{"127.0.0.1", false, true},
		{"127.1.2.3", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"10.1.2.3", false, false},
		{"172.16.0.1", false, false},
		{"192.168.1.1", false, false},
		{"fd00::1", false, false},
		{"169.254.169.254", false, false}, // cloud metadata
		{"fe80::1", false, false},
		{"100.64.0.1", false, false}, // CGNAT
		{"100.127.255.254", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"0.1.2.3", false, false},
		{"255.255.255.255", false, false},
		{"64:ff9b::a00:1", false, false}, // NAT64 of 10.0.0.1
		{"2002:a00:1::1", false, false},  // 6to4 of 10.0.0.1
		{"::ffff:10.0.0.1", false, false},
		{"192.0.2.10", false, false},          // documentation
		{"2001:db8::1", false, false},         // documentation
		{"2001:0:4136:e378::1", false, false}, // Teredo
		{"fec0::1", false, false},             // site-local
		{"::ffff:0:a00:1", false, false},      // SIIT of 10.0.0.1
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := addressAllowed(a, false); got != tc.want {
			t.Errorf("addressAllowed(%s) = %v, want %v", tc.addr, got, tc.want)
		}
		if got := addressAllowed(a, true); got != (tc.want || tc.loopback) {
			t.Errorf("addressAllowed(%s, loopback) = %v, want %v", tc.addr, got, tc.want || tc.loopback)
		}
	}
}

// TestJWKSFetcherRefuses checks the refusals at dial time, so that a name
// resolving to a forbidden address (here localhost; a rebinding DNS
// answer alike) is refused as surely as the address itself, and the caps.
func TestJWKSFetcherRefuses(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			_, _ = w.Write([]byte(`{"keys":[]}`))
		case "/big":
			_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", MaxJWKSSize) + `]}`))
		case "/redirect":
			http.Redirect(w, r, "/jwks", http.StatusFound)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(JWKSFetchTimeout + time.Second):
			}
		}
	}))
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]

	strict := newJWKSFetcher(false, roots, time.Now)
	for _, u := range []string{srv.URL + "/jwks", "https://localhost" + port + "/jwks", "https://[::1]" + port + "/jwks",
		"https://10.255.255.1/jwks", "https://169.254.169.254/latest/meta-data", "https://100.64.0.1/jwks"} {
		start := time.Now()
		_, err := strict.Resolve(t.Context(), u, true)
		if !errors.Is(err, errForbiddenAddress) {
			t.Errorf("%s: %v, want %v", u, err, errForbiddenAddress)
		}
		if time.Since(start) > time.Second {
			t.Errorf("%s: refusal took %v; it must come before connecting", u, time.Since(start))
		}
	}

	loose := newJWKSFetcher(true, roots, time.Now)
	if set, err := loose.Resolve(t.Context(), srv.URL+"/jwks", false); err != nil || set == nil {
		t.Fatalf("loopback allowed: %v, %v", set, err)
	}
	for _, tc := range []struct{ url, why string }{
		{"http://127.0.0.1" + port + "/jwks", "https"},
		{srv.URL + "/big", "larger than"},
		{srv.URL + "/redirect", "redirects"},
		{"https://10.255.255.1/jwks", errForbiddenAddress.Error()},
	} {
		if _, err := loose.Resolve(t.Context(), tc.url, true); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: %v, want an error about %q", tc.url, err, tc.why)
		}
	}
	if testing.Short() {
		return
	}
	start := time.Now()
	if _, err := loose.Resolve(t.Context(), srv.URL+"/slow", true); err == nil || time.Since(start) > JWKSFetchTimeout+2*time.Second {
		t.Errorf("slow jwks_uri: %v after %v, want a timeout after %v", err, time.Since(start), JWKSFetchTimeout)
	}
}
