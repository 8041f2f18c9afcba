package dpop_test

import (
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// BenchmarkValidate measures full proof validation (parse, signature,
// claims, thumbprint, replay cache) per algorithm, reported as proofs/s.
func BenchmarkValidate(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256} {
		b.Run(string(alg), func(b *testing.B) {
			k := newKey(b, alg)
			fx := newValidator(b, false)
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = newProof(b, k, "POST", tokenURL, now).signedBy(b, k)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := fx.v.Validate(b.Context(), dpop.Request{Proof: proofs[i], Method: "POST", URL: tokenURL}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
		})
	}
}

// BenchmarkValidateParallel is BenchmarkValidate on all CPUs, sharing one
// Validator and replay cache as a server does.
func BenchmarkValidateParallel(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			k := newKey(b, alg)
			fx := newValidator(b, false)
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = newProof(b, k, "POST", tokenURL, now).signedBy(b, k)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					if _, err := fx.v.Validate(b.Context(), dpop.Request{Proof: proofs[i], Method: "POST", URL: tokenURL}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
		})
	}
}
