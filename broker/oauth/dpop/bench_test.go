package dpop_test

import (
	"sync/atomic"
	"testing"
	"time"

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
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := fx.v.Validate(b.Context(), dpop.Request{Proof: proofs[i], Method: "POST", URL: tokenURL}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime()-cpu)
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
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					if _, err := fx.v.Validate(b.Context(), dpop.Request{Proof: proofs[i], Method: "POST", URL: tokenURL}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU(b, cpuTime()-cpu)
		})
	}
}

// reportCPU reports proofs/s of wall time and CPU microseconds per proof;
// the second is the one to compare across machines and load.
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
}
