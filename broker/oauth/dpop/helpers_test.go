package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

var b64 = base64.RawURLEncoding

// key is a client's DPoP key pair.
type key struct {
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func newKey(t testing.TB, alg jose.SignatureAlgorithm) key {
	t.Helper()
	curves := map[jose.SignatureAlgorithm]elliptic.Curve{jose.ES256: elliptic.P256(), jose.ES384: elliptic.P384(), jose.ES512: elliptic.P521()}
	switch alg {
	case jose.ES256, jose.ES384, jose.ES512:
		k, err := ecdsa.GenerateKey(curves[alg], rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key{alg, k}
	case jose.EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key{alg, k}
	case jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512:
		// One RSA key for every RSA algorithm: generating one is slow.
		rsaOnce.Do(func() {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKey = k
		})
		return key{alg, rsaKey}
	}
	t.Fatalf("no key for %s", alg)
	return key{}
}

// publicJWK is the JSON of k's public JWK.
func (k key) publicJWK(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: k.priv.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k key) jkt(t testing.TB) string {
	t.Helper()
	s, err := dpop.Thumbprint(&jose.JSONWebKey{Key: k.priv.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sign signs input with k as the JWS alg demands.
func (k key) sign(t testing.TB, input []byte) []byte {
	t.Helper()
	switch k.alg {
	case jose.EdDSA:
		return ed25519.Sign(k.priv.(ed25519.PrivateKey), input)
	case jose.ES256:
		h := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	case jose.PS256:
		h := sha256.Sum256(input)
		sig, err := rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("cannot sign with %s", k.alg)
	return nil
}

// jws assembles a compact JWS from header and claims, signed by sign.
func jws(t testing.TB, header, claims any, sign func([]byte) []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	return input + "." + b64.EncodeToString(sign([]byte(input)))
}

// proof is a proof under construction; tests tweak fields to break it.
type proof struct {
	header map[string]any
	claims map[string]any
}

func newProof(t testing.TB, k key, method, uri string, iat time.Time) proof {
	t.Helper()
	var jti [12]byte
	if _, err := rand.Read(jti[:]); err != nil {
		t.Fatal(err)
	}
	return proof{
		header: map[string]any{"typ": "dpop+jwt", "alg": string(k.alg), "jwk": k.publicJWK(t)},
		claims: map[string]any{"jti": b64.EncodeToString(jti[:]), "htm": method, "htu": uri, "iat": iat.Unix()},
	}
}

func (p proof) signedBy(t testing.TB, k key) string {
	t.Helper()
	return jws(t, p.header, p.claims, func(b []byte) []byte { return k.sign(t, b) })
}

func ath(token string) string {
	h := sha256.Sum256([]byte(token))
	return b64.EncodeToString(h[:])
}

// goJoseProof builds a proof the way a real client library does, with
// go-jose embedding the public key.
func goJoseProof(t testing.TB, k key, method, uri string, iat time.Time, extra map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	var jti [12]byte
	if _, err := rand.Read(jti[:]); err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"jti": b64.EncodeToString(jti[:]), "htm": method, "htu": uri, "iat": iat.Unix()}
	for k, v := range extra {
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
