package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// TestValidateSignatureEveryAlgorithm checks the signature of a proof in
// every algorithm a Validator may accept: a proof signed by go-jose, as a
// client library signs it, is accepted; the same proof with one bit of its
// signature flipped, or its signature in another encoding the algorithm
// does not allow, is refused.
func TestValidateSignatureEveryAlgorithm(t *testing.T) {
	algs := []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
		jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512}
	v, err := dpop.NewValidator(dpop.Config{Replay: dpop.NewMemoryReplayCache(0, clock), Now: clock, Algorithms: algs})
	if err != nil {
		t.Fatal(err)
	}
	validate := func(proof string) error {
		_, err := v.Validate(t.Context(), dpop.Request{Proof: proof, Method: "POST", URL: tokenURL})
		return err
	}
	hashOf := map[jose.SignatureAlgorithm]crypto.Hash{
		jose.ES256: crypto.SHA256, jose.ES384: crypto.SHA384, jose.ES512: crypto.SHA512,
		jose.PS256: crypto.SHA256, jose.PS384: crypto.SHA384, jose.PS512: crypto.SHA512,
		jose.RS256: crypto.SHA256, jose.RS384: crypto.SHA384, jose.RS512: crypto.SHA512,
	}
	digest := func(alg jose.SignatureAlgorithm, input string) []byte {
		h := hashOf[alg].New()
		h.Write([]byte(input))
		return h.Sum(nil)
	}
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			good := goJoseProof(t, k, "POST", tokenURL, now, nil)
			if err := validate(good); err != nil {
				t.Fatalf("a go-jose proof is refused: %v", err)
			}
			i := strings.LastIndexByte(good, '.')
			input, sig := good[:i], mustB64(t, good[i+1:])
			resigned := func(sig []byte) string {
				// A fresh jti, so that a refusal is the signature's and
				// not the replay cache's.
				p := newProof(t, k, "POST", tokenURL, now)
				return jws(t, p.header, p.claims, func([]byte) []byte { return sig })
			}
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)/2] ^= 0x10
			refuse := map[string]string{"one bit flipped": input + "." + b64.EncodeToString(flipped)}
			switch pk := k.priv.(type) {
			case *ecdsa.PrivateKey:
				// RFC 7518 §3.4: R and S concatenated, not ASN.1 DER.
				p := newProof(t, k, "POST", tokenURL, now)
				refuse["DER signature"] = jws(t, p.header, p.claims, func(b []byte) []byte {
					der, err := ecdsa.SignASN1(rand.Reader, pk, digest(alg, string(b)))
					if err != nil {
						t.Fatal(err)
					}
					return der
				})
				refuse["a byte short"] = resigned(sig[:len(sig)-1])
			case *rsa.PrivateKey:
				p := newProof(t, k, "POST", tokenURL, now)
				if strings.HasPrefix(string(alg), "PS") {
					// RFC 7518 §3.5: the salt is as long as the hash.
					refuse["PSS salt not the hash's length"] = jws(t, p.header, p.claims, func(b []byte) []byte {
						s, err := rsa.SignPSS(rand.Reader, pk, hashOf[alg], digest(alg, string(b)), &rsa.PSSOptions{SaltLength: 20})
						if err != nil {
							t.Fatal(err)
						}
						return s
					})
					refuse["PKCS #1 v1.5 signature"] = jws(t, p.header, p.claims, func(b []byte) []byte {
						s, err := rsa.SignPKCS1v15(rand.Reader, pk, hashOf[alg], digest(alg, string(b)))
						if err != nil {
							t.Fatal(err)
						}
						return s
					})
				} else {
					refuse["PSS signature"] = jws(t, p.header, p.claims, func(b []byte) []byte {
						s, err := rsa.SignPSS(rand.Reader, pk, hashOf[alg], digest(alg, string(b)), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
						if err != nil {
							t.Fatal(err)
						}
						return s
					})
				}
			case ed25519.PrivateKey:
				refuse["truncated signature"] = resigned(sig[:len(sig)-1])
			}
			for name, proof := range refuse {
				t.Run(name, func(t *testing.T) {
					checkErr(t, validate(proof), dpop.ErrInvalidDPoPProof, "signature")
				})
			}
		})
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := b64.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
