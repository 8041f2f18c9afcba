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

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// benchWorkers is how many clients hit the server at once.
const benchWorkers = 16

// BenchmarkEndpoints measures the token endpoint (client credentials, and
// code exchange with private_key_jwt) and introspection on PostgreSQL over
// real HTTP, reporting requests per second and the 99th percentile
// latency. Client assertions and codes are made before the clock starts.
//
//	DATABASE_URL=postgres://... go test -run '^$' -bench Endpoints -benchtime 2000x ./broker/oauth/
func BenchmarkEndpoints(b *testing.B) {
	e := newEnv(b, backendtest.Open(b, pgtest.URL(b)))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchWorkers * 2}}

	b.Run("token/client_credentials", func(b *testing.B) {
		forms := make([]url.Values, b.N)
		for i := range forms {
			forms[i] = e.authForm(b, e.client, url.Values{"grant_type": {"client_credentials"}, "scope": {oauth.ScopeFirm}})
		}
		hammer(b, hc, e.srv.URL+oauth.PathToken, forms)
	})
	b.Run("token/authorization_code", func(b *testing.B) {
		// Codes live a minute: make and spend them in batches.
		var r result
		for off := 0; off < b.N; off += 200 {
			b.StopTimer()
			forms := make([]url.Values, min(200, b.N-off))
			for i := range forms {
				code, pk := e.code(b)
				forms[i] = e.authForm(b, e.client, url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {redirectURI}, "code_verifier": {pk.verifier}})
			}
			b.StartTimer()
			r.add(run(b, hc, e.srv.URL+oauth.PathToken, forms))
		}
		r.report(b)
	})
	b.Run("introspect", func(b *testing.B) {
		_, tok := e.post(b, oauth.PathToken, e.authForm(b, e.client, url.Values{"grant_type": {"client_credentials"}}))
		at := tok["access_token"].(string)
		forms := make([]url.Values, b.N)
		for i := range forms {
			forms[i] = e.authForm(b, e.client, url.Values{"token": {at}})
		}
		hammer(b, hc, e.srv.URL+oauth.PathIntrospect, forms)
	})
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

// hammer posts every form once from benchWorkers goroutines and reports
// req/s and p99-ms.
func hammer(b *testing.B, hc *http.Client, u string, forms []url.Values) {
	b.Helper()
	b.ResetTimer()
	r := run(b, hc, u, forms)
	b.StopTimer()
	r.report(b)
}

// run posts every form once from benchWorkers goroutines. Any answer but
// 200 fails the benchmark.
func run(b *testing.B, hc *http.Client, u string, forms []url.Values) result {
	b.Helper()
	lat := make([]time.Duration, len(forms))
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(forms) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(u, "application/x-www-form-urlencoded", strings.NewReader(forms[i].Encode()))
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
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	return result{lat: lat, elapsed: elapsed}
}
