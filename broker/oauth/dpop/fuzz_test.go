package dpop_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzValidateProof")

// seedProofs are proofs valid at now for POST tokenURL, and broken variants.
func seedProofs(t testing.TB) map[string]string {
	es, ed := newKey(t, jose.ES256), newKey(t, jose.EdDSA)
	p := newProof(t, es, "POST", tokenURL, now)
	valid := p.signedBy(t, es)
	parts := strings.Split(valid, ".")
	noTyp := newProof(t, ed, "POST", tokenURL, now)
	delete(noTyp.header, "typ")
	return map[string]string{
		"valid_es256":  valid,
		"valid_eddsa":  newProof(t, ed, "POST", tokenURL, now).signedBy(t, ed),
		"no_typ":       noTyp.signedBy(t, ed),
		"swapped_sig":  parts[0] + "." + parts[1] + "." + strings.Split(newProof(t, es, "POST", tokenURL, now).signedBy(t, es), ".")[2],
		"two_parts":    parts[0] + "." + parts[1],
		"json":         `{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`,
		"header_only":  parts[0] + "..",
		"empty_jwk":    jws(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{}}, p.claims, func([]byte) []byte { return []byte{1} }),
		"null_claims":  parts[0] + ".bnVsbA." + parts[2],
		"array_header": "WzFd." + parts[1] + "." + parts[2],
		"deep_jwk_oth": jws(t, map[string]any{"typ": "dpop+jwt", "alg": "PS256", "jwk": map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB", "oth": []any{map[string]any{}}}}, p.claims, func([]byte) []byte { return []byte{1} }),
		"iat_exponent": jws(t, p.header, map[string]any{"jti": "x", "htm": "POST", "htu": tokenURL, "iat": 1.7e9}, func(b []byte) []byte { return es.sign(t, b) }),
	}
}

// TestWriteFuzzSeeds rewrites the committed seed corpus when run with
// -update-seeds; otherwise it does nothing.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzValidateProof")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seedProofs(t) {
		body := fmt.Sprintf("go test fuzz v1\nstring(%s)\n", strconv.Quote(s))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzValidateProof feeds arbitrary strings to Validate. It must never
// panic; whatever it accepts must carry a well-formed thumbprint, and must
// be refused the second time.
func FuzzValidateProof(f *testing.F) {
	for _, s := range seedProofs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		fx := newValidator(t, false)
		r := dpop.Request{Proof: proof, Method: "POST", URL: tokenURL}
		p, err := fx.v.Validate(t.Context(), r)
		if err != nil {
			if errStatus(err) == 0 {
				t.Fatalf("error is not an RFC 6749 error: %v", err)
			}
			return
		}
		if !dpop.ValidJKT(p.JKT) || p.ID == "" {
			t.Fatalf("accepted proof with JKT %q, jti %q", p.JKT, p.ID)
		}
		if _, err := fx.v.Validate(t.Context(), r); err == nil {
			t.Fatal("accepted the same proof twice")
		}
	})
}
