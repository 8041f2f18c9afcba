package dpop_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

const tokenURL = "https://as.steward.example/oauth/token"

var now = time.Unix(1_700_000_000, 0)

func clock() time.Time { return now }

func nonceKey(b byte) []byte { return []byte(strings.Repeat(string(rune('a'+b)), 32)) }

type fixture struct {
	v      *dpop.Validator
	nonces *dpop.Nonces
}

func newValidator(t testing.TB, withNonces bool) fixture {
	t.Helper()
	c := dpop.Config{Replay: dpop.NewMemoryReplayCache(0, clock), Now: clock}
	var f fixture
	if withNonces {
		n, err := dpop.NewNonces(0, nonceKey(0))
		if err != nil {
			t.Fatal(err)
		}
		c.Nonces, f.nonces = n, n
	}
	v, err := dpop.NewValidator(c)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func TestValidateAccepts(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			f := newValidator(t, false)
			k := newKey(t, alg)
			p, err := f.v.Validate(t.Context(), dpop.Request{
				Proof: goJoseProof(t, k, "POST", tokenURL, now, nil), Method: "POST", URL: tokenURL,
			})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if p.JKT != k.jkt(t) {
				t.Errorf("JKT = %q, want %q", p.JKT, k.jkt(t))
			}
			if !p.IssuedAt.Equal(now) {
				t.Errorf("IssuedAt = %v, want %v", p.IssuedAt, now)
			}
		})
	}
}

// TestValidateRefuses has one case per defence of RFC 9449 §4.3; each
// would pass if that defence were removed.
func TestValidateRefuses(t *testing.T) {
	es := newKey(t, jose.ES256)
	other := newKey(t, jose.ES256)
	ed := newKey(t, jose.EdDSA)
	const token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"

	ecPriv, err := json.Marshal(jose.JSONWebKey{Key: es.priv})
	if err != nil {
		t.Fatal(err)
	}
	hmacKey := []byte("0123456789abcdef0123456789abcdef")

	type tc struct {
		name  string
		proof func(t *testing.T) string
		req   func(r *dpop.Request)
		hint  string // substring of the error hint
		code  string
	}
	base := func(t *testing.T) proof { return newProof(t, es, "POST", tokenURL, now) }
	cases := []tc{
		{name: "wrong htm", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htm"] = "GET"
			return p.signedBy(t, es)
		}, hint: "htm"},
		{name: "htm case differs", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htm"] = "post"
			return p.signedBy(t, es)
		}, hint: "htm"},
		{name: "wrong htu host", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htu"] = "https://evil.example/oauth/token"
			return p.signedBy(t, es)
		}, hint: "htu"},
		{name: "wrong htu path", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htu"] = "https://as.steward.example/oauth/par"
			return p.signedBy(t, es)
		}, hint: "htu"},
		{name: "wrong htu scheme", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htu"] = "http://as.steward.example/oauth/token"
			return p.signedBy(t, es)
		}, hint: "htu"},
		{name: "relative htu", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["htu"] = "/oauth/token"
			return p.signedBy(t, es)
		}, hint: "htu"},
		{name: "stale iat", proof: func(t *testing.T) string {
			return newProof(t, es, "POST", tokenURL, now.Add(-66*time.Second)).signedBy(t, es)
		}, hint: "too old"},
		{name: "future iat", proof: func(t *testing.T) string {
			return newProof(t, es, "POST", tokenURL, now.Add(66*time.Second)).signedBy(t, es)
		}, hint: "future"},
		{name: "iat far in the future", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["iat"] = 1 << 39
			return p.signedBy(t, es)
		}, hint: "future"},
		{name: "iat fractional and stale", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["iat"] = float64(now.Unix()) - 65.5
			return p.signedBy(t, es)
		}, hint: "too old"},
		{name: "iat negative", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["iat"] = -1
			return p.signedBy(t, es)
		}, hint: "NumericDate"},
		{name: "iat not a number", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["iat"] = "1700000000"
			return p.signedBy(t, es)
		}, hint: "NumericDate"},
		{name: "typ jwt", proof: func(t *testing.T) string {
			p := base(t)
			p.header["typ"] = "JWT"
			return p.signedBy(t, es)
		}, hint: "typ"},
		{name: "typ missing", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.header, "typ")
			return p.signedBy(t, es)
		}, hint: "typ"},
		{name: "alg none", proof: func(t *testing.T) string {
			p := base(t)
			p.header["alg"] = "none"
			return jws(t, p.header, p.claims, func([]byte) []byte { return []byte{0} })
		}, hint: "alg"},
		{name: "alg HS256 with oct jwk", proof: func(t *testing.T) string {
			p := base(t)
			p.header["alg"] = "HS256"
			p.header["jwk"] = map[string]string{"kty": "oct", "k": b64.EncodeToString(hmacKey)}
			return jws(t, p.header, p.claims, func(b []byte) []byte {
				m := hmac.New(sha256.New, hmacKey)
				m.Write(b)
				return m.Sum(nil)
			})
		}, hint: "alg"},
		{name: "alg not configured", proof: func(t *testing.T) string {
			p := base(t)
			p.header["alg"] = "ES512"
			return p.signedBy(t, es)
		}, hint: "alg"},
		{name: "alg does not fit key", proof: func(t *testing.T) string {
			p := newProof(t, ed, "POST", tokenURL, now)
			p.header["alg"] = "ES256"
			return p.signedBy(t, ed)
		}, hint: "fit"},
		{name: "private key in header", proof: func(t *testing.T) string {
			p := base(t)
			p.header["jwk"] = json.RawMessage(ecPriv)
			return p.signedBy(t, es)
		}, hint: "private"},
		{name: "no jwk", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.header, "jwk")
			return p.signedBy(t, es)
		}, hint: "jwk"},
		{name: "crit header", proof: func(t *testing.T) string {
			p := base(t)
			p.header["crit"] = []string{"b64"}
			return p.signedBy(t, es)
		}, hint: "critical"},
		{name: "signed by another key", proof: func(t *testing.T) string {
			return base(t).signedBy(t, other)
		}, hint: "signature"},
		{name: "claims altered after signing", proof: func(t *testing.T) string {
			s := base(t).signedBy(t, es)
			parts := strings.Split(s, ".")
			p := base(t)
			p.claims["htu"] = tokenURL + "x"
			cb, _ := json.Marshal(p.claims)
			return parts[0] + "." + b64.EncodeToString(cb) + "." + parts[2]
		}, hint: "signature"},
		{name: "no jti", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.claims, "jti")
			return p.signedBy(t, es)
		}, hint: "jti"},
		{name: "no htm", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.claims, "htm")
			return p.signedBy(t, es)
		}, hint: "htm"},
		{name: "no htu", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.claims, "htu")
			return p.signedBy(t, es)
		}, hint: "htu"},
		{name: "no iat", proof: func(t *testing.T) string {
			p := base(t)
			delete(p.claims, "iat")
			return p.signedBy(t, es)
		}, hint: "iat"},
		{name: "wrong ath", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["ath"] = ath("another token")
			return p.signedBy(t, es)
		}, req: func(r *dpop.Request) { r.AccessToken = token }, hint: "ath"},
		{name: "missing ath", proof: func(t *testing.T) string {
			return base(t).signedBy(t, es)
		}, req: func(r *dpop.Request) { r.AccessToken = token }, hint: "ath"},
		{name: "JSON serialization", proof: func(t *testing.T) string {
			parts := strings.Split(base(t).signedBy(t, es), ".")
			return `{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`
		}, hint: "compact"},
		{name: "oversize", proof: func(t *testing.T) string {
			p := base(t)
			p.claims["pad"] = strings.Repeat("x", dpop.DefaultMaxProofSize)
			return p.signedBy(t, es)
		}, hint: "large"},
		{name: "empty", proof: func(t *testing.T) string { return "" }, hint: "No DPoP proof"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newValidator(t, false)
			r := dpop.Request{Proof: c.proof(t), Method: "POST", URL: tokenURL}
			if c.req != nil {
				c.req(&r)
			}
			_, err := f.v.Validate(t.Context(), r)
			checkErr(t, err, dpop.ErrInvalidDPoPProof, c.hint)
		})
	}
}

func checkErr(t *testing.T, err error, want error, hint string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var e interface{ Reason() string }
	if !errors.As(err, &e) || !strings.Contains(e.Reason(), hint) {
		t.Errorf("hint %q does not mention %q", e.Reason(), hint)
	}
}

func TestValidateRefusesReplay(t *testing.T) {
	f := newValidator(t, false)
	k := newKey(t, jose.ES256)
	r := dpop.Request{Proof: goJoseProof(t, k, "POST", tokenURL, now, nil), Method: "POST", URL: tokenURL}
	if _, err := f.v.Validate(t.Context(), r); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err := f.v.Validate(t.Context(), r)
	checkErr(t, err, dpop.ErrInvalidDPoPProof, "used before")
}

func TestValidateAcceptsEdgeOfWindow(t *testing.T) {
	k := newKey(t, jose.EdDSA)
	for _, d := range []time.Duration{-65 * time.Second, 65 * time.Second, 0} {
		f := newValidator(t, false)
		r := dpop.Request{Proof: goJoseProof(t, k, "POST", tokenURL, now.Add(d), nil), Method: "POST", URL: tokenURL}
		if _, err := f.v.Validate(t.Context(), r); err != nil {
			t.Errorf("iat now%+v: %v", d, err)
		}
	}
}

func TestValidateNormalizesHTU(t *testing.T) {
	k := newKey(t, jose.ES256)
	for _, htu := range []string{
		"https://as.steward.example/oauth/token",
		"HTTPS://AS.Steward.Example:443/oauth/token",
		"https://as.steward.example/oauth/./token",
		"https://as.steward.example/oauth/x/../token",
		"https://as.steward.example/%6Fauth/token",
		"https://as.steward.example/oauth/token?foo=bar",
		"https://as.steward.example/oauth/token#frag",
	} {
		f := newValidator(t, false)
		r := dpop.Request{Proof: goJoseProof(t, k, "POST", htu, now, nil), Method: "POST", URL: tokenURL + "?grant=1"}
		if _, err := f.v.Validate(t.Context(), r); err != nil {
			t.Errorf("htu %q: %v", htu, err)
		}
	}
}

func TestNormalizeURI(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://a.example", "https://a.example/"},
		{"https://A.example:443/", "https://a.example/"},
		{"http://a.example:80/x", "http://a.example/x"},
		{"https://a.example:8443/x", "https://a.example:8443/x"},
		{"https://a.example/a%2fb", "https://a.example/a%2Fb"},
		{"https://a.example/%7euser", "https://a.example/~user"},
		{"https://a.example/a/b/../../c", "https://a.example/c"},
		{"https://[::1]:443/x", "https://[::1]/x"},
		{"https://[::1]:8443/x", "https://[::1]:8443/x"},
		{"https://a.example/x?q#f", "https://a.example/x"},
	} {
		got, err := dpop.NormalizeURI(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeURI(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "/x", "ftp://a.example/", "https://user@a.example/", "mailto:a@b", "https:///x"} {
		if got, err := dpop.NormalizeURI(bad); err == nil {
			t.Errorf("NormalizeURI(%q) = %q, want error", bad, got)
		}
	}
}

func TestValidateNonce(t *testing.T) {
	k := newKey(t, jose.ES256)
	f := newValidator(t, true)
	otherNonces, err := dpop.NewNonces(0, nonceKey(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		nonce any
	}{
		{"missing", nil},
		{"stale", f.nonces.Issue(now.Add(-10 * time.Minute))},
		{"from the future", f.nonces.Issue(now.Add(2 * time.Minute))},
		{"other server's key", otherNonces.Issue(now)},
		{"garbage", "not-a-nonce"},
		{"not a string", 42},
	} {
		t.Run(c.name, func(t *testing.T) {
			extra := map[string]any{}
			if c.nonce != nil {
				extra["nonce"] = c.nonce
			}
			r := dpop.Request{Proof: goJoseProof(t, k, "POST", tokenURL, now, extra), Method: "POST", URL: tokenURL}
			_, err := f.v.Validate(t.Context(), r)
			if c.name == "not a string" {
				checkErr(t, err, dpop.ErrInvalidDPoPProof, "claims")
				return
			}
			checkErr(t, err, dpop.ErrUseDPoPNonce, "DPoP-Nonce")
			n, ok := dpop.NonceFromError(err)
			if !ok || !f.nonces.Valid(n, now) {
				t.Errorf("NonceFromError = %q, %v; want a valid nonce", n, ok)
			}
		})
	}
	t.Run("current", func(t *testing.T) {
		r := dpop.Request{Proof: goJoseProof(t, k, "POST", tokenURL, now, map[string]any{"nonce": f.v.Nonce()}), Method: "POST", URL: tokenURL}
		if _, err := f.v.Validate(t.Context(), r); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	})
}

func TestNonceRotation(t *testing.T) {
	old, err := dpop.NewNonces(0, nonceKey(0))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := dpop.NewNonces(0, nonceKey(1), nonceKey(0))
	if err != nil {
		t.Fatal(err)
	}
	after, err := dpop.NewNonces(0, nonceKey(1))
	if err != nil {
		t.Fatal(err)
	}
	n := old.Issue(now)
	if !rotated.Valid(n, now) {
		t.Error("rotated source refuses a nonce from the old key")
	}
	if after.Valid(n, now) {
		t.Error("source without the old key accepts its nonce")
	}
	if old.Valid(rotated.Issue(now), now) {
		t.Error("old source accepts a nonce signed with the new key")
	}
	if _, err := dpop.NewNonces(0, []byte("short")); err == nil {
		t.Error("NewNonces accepted a short key")
	}
}

func TestNewValidatorRefusesSymmetricAlgorithms(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, "none", ""} {
		_, err := dpop.NewValidator(dpop.Config{Replay: dpop.NewMemoryReplayCache(0, nil), Algorithms: []jose.SignatureAlgorithm{alg}})
		if err == nil {
			t.Errorf("NewValidator accepted %q", alg)
		}
	}
	if _, err := dpop.NewValidator(dpop.Config{}); err == nil {
		t.Error("NewValidator accepted a config without a replay cache")
	}
}

func TestProofFromHeader(t *testing.T) {
	h := http.Header{}
	if p, err := dpop.ProofFromHeader(h); p != "" || err != nil {
		t.Errorf("no header: %q, %v", p, err)
	}
	h.Add("DPoP", "a.b.c")
	if p, err := dpop.ProofFromHeader(h); p != "a.b.c" || err != nil {
		t.Errorf("one header: %q, %v", p, err)
	}
	h.Add("DPoP", "d.e.f")
	if _, err := dpop.ProofFromHeader(h); !errors.Is(err, dpop.ErrInvalidDPoPProof) {
		t.Errorf("two headers: %v", err)
	}
	if _, err := dpop.ProofFromHeader(http.Header{"Dpop": {"a.b.c, d.e.f"}}); !errors.Is(err, dpop.ErrInvalidDPoPProof) {
		t.Errorf("comma list: %v", err)
	}
}

// TestThumbprintRFC7638 checks the example of RFC 7638 §3.1.
func TestThumbprintRFC7638(t *testing.T) {
	const jwk = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var k jose.JSONWebKey
	if err := json.Unmarshal([]byte(jwk), &k); err != nil {
		t.Fatal(err)
	}
	got, err := dpop.Thumbprint(&k)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("Thumbprint = %q, want %q", got, want)
	}
	if !dpop.ValidJKT(got) || dpop.ValidJKT(got+"A") || dpop.ValidJKT("!"+got[1:]) {
		t.Error("ValidJKT misjudges thumbprints")
	}
}

// rfc9449JWK is the public key of the example proof in RFC 9449 §4.2.
const rfc9449JWK = `{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}`

// TestRFC9449Example follows the structure of the example proof of RFC 9449
// §4.2 (header and claims, with the example's key thumbprint from §6.1) and
// the ath example of §7.1.
func TestRFC9449Example(t *testing.T) {
	var k jose.JSONWebKey
	if err := json.Unmarshal([]byte(rfc9449JWK), &k); err != nil {
		t.Fatal(err)
	}
	got, err := dpop.Thumbprint(&k)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"; got != want {
		t.Errorf("thumbprint of the RFC 9449 example key = %q, want %q", got, want)
	}
	if got, want := ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"; got != want {
		t.Errorf("ath of the RFC 9449 example token = %q, want %q", got, want)
	}

	// The example proof's shape, signed with our own key (the RFC does not
	// publish the private key) and checked at the example's iat.
	iat := time.Unix(1562262616, 0)
	es := newKey(t, jose.ES256)
	header := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": es.publicJWK(t)}
	claims := map[string]any{"jti": "-BwC3ESc6acc2lTc", "htm": "POST", "htu": "https://server.example.com/token", "iat": 1562262616}
	proof := jws(t, header, claims, func(b []byte) []byte { return es.sign(t, b) })
	v, err := dpop.NewValidator(dpop.Config{Replay: dpop.NewMemoryReplayCache(0, func() time.Time { return iat }), Now: func() time.Time { return iat }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Validate(t.Context(), dpop.Request{Proof: proof, Method: "POST", URL: "https://server.example.com/token"})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if diff := cmp.Diff(dpop.Proof{JKT: es.jkt(t), ID: "-BwC3ESc6acc2lTc", IssuedAt: iat}, p,
		cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Key" }, cmp.Ignore())); diff != "" {
		t.Errorf("Proof (-want +got):\n%s", diff)
	}
}

func TestMemoryReplayCache(t *testing.T) {
	at := now
	c := dpop.NewMemoryReplayCache(2, func() time.Time { return at })
	ctx := t.Context()
	seen := func(k string, exp time.Time) bool {
		t.Helper()
		s, err := c.Seen(ctx, k, exp)
		if err != nil {
			t.Fatalf("Seen(%q): %v", k, err)
		}
		return s
	}
	if seen("a", now.Add(time.Minute)) {
		t.Error("a seen on first use")
	}
	if !seen("a", now.Add(time.Minute)) {
		t.Error("a not seen on second use")
	}
	seen("b", now.Add(time.Minute))
	if _, err := c.Seen(ctx, "c", now.Add(time.Minute)); !errors.Is(err, dpop.ErrReplayCacheFull) {
		t.Errorf("full cache: err = %v, want ErrReplayCacheFull", err)
	}
	at = now.Add(2 * time.Minute)
	if seen("a", at.Add(time.Minute)) {
		t.Error("a still seen after it expired")
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d after sweep, want 1", c.Len())
	}
}

// TestMemoryReplayCacheConcurrent checks that of many concurrent first
// uses of one key exactly one is accepted.
func TestMemoryReplayCacheConcurrent(t *testing.T) {
	c := dpop.NewMemoryReplayCache(0, clock)
	const n = 64
	results := make(chan bool, n)
	for range n {
		go func() {
			s, err := c.Seen(t.Context(), "k", now.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			results <- s
		}()
	}
	fresh := 0
	for range n {
		if !<-results {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d goroutines saw the key as new, want 1", fresh)
	}
}

// recordingCache is a MemoryReplayCache that keeps the keys it is asked.
type recordingCache struct {
	*dpop.MemoryReplayCache
	keys []string
}

func (c *recordingCache) Seen(ctx context.Context, key string, exp time.Time) (bool, error) {
	c.keys = append(c.keys, key)
	return c.MemoryReplayCache.Seen(ctx, key, exp)
}

// TestReplayKeysSortByIssue checks that the stored form of proofs' replay
// keys sorts by the proofs' iat, whatever their keys and jtis, so a shared
// table's index takes new proofs at its end; and that it is bounded and
// tells proofs of different keys apart.
func TestReplayKeysSortByIssue(t *testing.T) {
	rc := &recordingCache{MemoryReplayCache: dpop.NewMemoryReplayCache(0, clock)}
	v, err := dpop.NewValidator(dpop.Config{Replay: rc, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := newKey(t, jose.EdDSA), newKey(t, jose.ES256)
	long := strings.Repeat("j", 256)
	iats := []time.Duration{-60 * time.Second, -59 * time.Second, 0, 0, time.Second, 60 * time.Second}
	jtis := []any{nil, long, "same", "same", nil, nil}
	for i, d := range iats {
		k, extra := k1, map[string]any{}
		if i%2 == 1 {
			k = k2
		}
		if jtis[i] != nil {
			extra["jti"] = jtis[i]
		}
		p := goJoseProof(t, k, "GET", tokenURL, now.Add(d), extra)
		if _, err := v.Validate(t.Context(), dpop.Request{Proof: p, Method: "GET", URL: tokenURL}); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	stored := make([]string, len(rc.keys))
	for i, k := range rc.keys {
		stored[i] = dpop.KeyDigest(k)
		if len(stored[i]) != 13+1+64 {
			t.Errorf("stored key %d is %d bytes: %q", i, len(stored[i]), stored[i])
		}
		if want := fmt.Sprintf("%013d.", now.Add(iats[i]).Unix()); !strings.HasPrefix(stored[i], want) {
			t.Errorf("stored key %q does not lead with its proof's iat %q", stored[i], want)
		}
	}
	if !slices.IsSorted(stored[:2]) || !slices.IsSorted(stored[4:]) || stored[1] >= min(stored[2], stored[3]) || max(stored[2], stored[3]) >= stored[4] {
		t.Errorf("stored keys do not sort by iat:\n%s", strings.Join(stored, "\n"))
	}
	if stored[2] == stored[3] {
		t.Error("two keys' proofs with one jti and iat share a replay key")
	}
}
