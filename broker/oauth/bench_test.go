package oauth_test

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// benchWorkers is how many clients hit the server at once.
const benchWorkers = 16

// benchBatch is how many requests are prepared at a time with the clock
// stopped: DPoP proofs are accepted for a minute after their iat, and
// codes live a minute.
const benchBatch = 200

// BenchmarkEndpoints measures, on PostgreSQL over real HTTP with DPoP on
// (nonces, and the replay cache in the database), the token endpoint for
// client credentials (a firm's DPoP-bound token and a regulator's Bearer
// token), the authorization-code exchange with private_key_jwt and a DPoP
// proof, and introspection. It reports requests per second and the 99th
// percentile latency. Client assertions, proofs and codes are made with
// the clock stopped.
//
//	DATABASE_URL=postgres://... go test -run '^$' -bench Endpoints -benchtime 2000x ./broker/oauth/
func BenchmarkEndpoints(b *testing.B) {
	s := backendtest.Open(b, pgtest.URL(b))
	e := newEnvConfig(b, s, func(c *oauth.Config) { c.DPoP = newValidator(b, s) })
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchWorkers * 2}}
	k := newDPoPKey(b, jose.ES256)
	tokenURL := e.srv.URL + oauth.PathToken
	rc := e.regulatorClient(b)

	b.Run("token/client_credentials_dpop", func(b *testing.B) {
		batched(b, hc, tokenURL, func(n int) []benchReq {
			e.learnNonce(b, hc, k)
			return makeBatch(n, func() benchReq {
				return benchReq{form: e.authForm(b, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}}),
					proof: k.proof(http.MethodPost, tokenURL)}
			})
		})
	})
	b.Run("token/client_credentials_bearer", func(b *testing.B) {
		batched(b, hc, tokenURL, func(n int) []benchReq {
			return makeBatch(n, func() benchReq {
				return benchReq{form: e.authForm(b, rc, url.Values{"grant_type": {"client_credentials"}})}
			})
		})
	})
	b.Run("token/authorization_code_dpop", func(b *testing.B) {
		batched(b, hc, tokenURL, func(n int) []benchReq {
			e.learnNonce(b, hc, k)
			return makeBatch(n, func() benchReq {
				code, pk := e.code(b)
				return benchReq{form: e.authForm(b, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}}), proof: k.proof(http.MethodPost, tokenURL)}
			})
		})
	})
	b.Run("introspect", func(b *testing.B) {
		e.learnNonce(b, hc, k)
		st, tok := e.postDPoP(b, k, oauth.PathToken, func() url.Values {
			return e.authForm(b, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}})
		})
		if st != http.StatusOK {
			b.Fatalf("token: %d %v", st, tok)
		}
		at := tok["access_token"].(string)
		batched(b, hc, e.srv.URL+oauth.PathIntrospect, func(n int) []benchReq {
			return makeBatch(n, func() benchReq { return benchReq{form: e.authForm(b, e.client, url.Values{"token": {at}})} })
		})
	})
}

// makeBatch returns n requests made by mk.
func makeBatch(n int, mk func() benchReq) []benchReq {
	out := make([]benchReq, 0, n)
	for range n {
		out = append(out, mk())
	}
	return out
}

// learnNonce fetches the server's current DPoP nonce into k: every answer
// of the token endpoint carries one.
func (e *env) learnNonce(b *testing.B, hc *http.Client, k *dpopKey) {
	b.Helper()
	resp, err := hc.PostForm(e.srv.URL+oauth.PathToken, url.Values{})
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if k.nonce = resp.Header.Get(dpop.NonceHeader); k.nonce == "" {
		b.Fatal("no DPoP-Nonce from the token endpoint")
	}
}

type benchReq struct {
	form  url.Values
	proof string // DPoP header, if any
}

// batched sends b.N requests made by prepare, at most benchBatch at a
// time, with the clock stopped while preparing, and reports req/s and
// p99-ms.
func batched(b *testing.B, hc *http.Client, u string, prepare func(n int) []benchReq) {
	b.Helper()
	var r result
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		reqs := prepare(min(benchBatch, b.N-done))
		b.StartTimer()
		r.add(run(b, hc, u, reqs))
		done += len(reqs)
	}
	b.StopTimer()
	r.report(b)
}

type result struct {
	lat     []time.Duration
	elapsed time.Duration
}

func (r *result) add(o result) {
	r.lat = append(r.lat, o.lat...)
	r.elapsed += o.elapsed
}

// report reports req/s and p99-ms.
func (r result) report(b *testing.B) {
	slices.Sort(r.lat)
	b.ReportMetric(float64(len(r.lat))/r.elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(r.lat[len(r.lat)*99/100].Microseconds())/1000, "p99-ms")
}

// run posts every request once from benchWorkers goroutines. Any answer
// but 200 fails the benchmark.
func run(b *testing.B, hc *http.Client, u string, reqs []benchReq) result {
	b.Helper()
	lat := make([]time.Duration, len(reqs))
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range benchWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(reqs[i].form.Encode()))
				if err != nil {
					failed.Store(err.Error())
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if reqs[i].proof != "" {
					req.Header.Set(dpop.Header, reqs[i].proof)
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					failed.Store(resp.Status + " " + string(body))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	return result{lat: lat, elapsed: elapsed}
}
