package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/httpapi"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

const token = "test-operator-token-0123456789abcdef"

type server struct {
	*httptest.Server
	store store.Store
	logs  *bytes.Buffer
}

func newServer(t *testing.T, s backend.Migrator, regulator ...string) *server {
	t.Helper()
	logs := &bytes.Buffer{}
	cfg := httpapi.Config{Store: s, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: prometheus.NewRegistry(), OperatorToken: token, MaxBody: 4096}
	if len(regulator) > 0 {
		cfg.RegulatorToken = regulator[0]
	}
	r, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &server{Server: srv, store: s, logs: logs}
}

func (s *server) do(t *testing.T, method, path, contentType string, body []byte, auth string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (s *server) admin(t *testing.T, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return s.do(t, method, path, "application/json", b, "Bearer "+token)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestHealth(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		srv := newServer(t, s)
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, body := srv.do(t, "GET", path, "", nil, "")
			if resp.StatusCode != 200 {
				t.Errorf("%s = %d %s", path, resp.StatusCode, body)
			}
		}
		resp, body := srv.do(t, "GET", "/readyz", "", nil, "")
		if got := decode[map[string]string](t, body)["store"]; got != s.Backend() {
			t.Errorf("readyz store = %q, want %q", got, s.Backend())
		}
		if id := resp.Header.Get("X-Request-Id"); id != "" {
			t.Logf("request id header %s", id)
		}
		// Once the database is gone, readiness fails.
		s.Close()
		resp, body = srv.do(t, "GET", "/readyz", "", nil, "")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("readyz after close = %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		_, metrics := srv.do(t, "GET", "/metrics", "", nil, "")
		if !bytes.Contains(metrics, []byte(`steward_http_requests_total{method="GET",route="/readyz",status="503"}`)) {
			t.Errorf("metrics do not count the 503 on /readyz:\n%s", metrics)
		}
	})
}

func TestFirmLifecycle(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		srv := newServer(t, s)
		resp, body := srv.admin(t, "POST", "/v1/admin/firms", httpapi.NewFirmRequest{LegalName: "Acme Retail Ltd", Sector: "retail", Jurisdiction: "GB"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create firm = %d %s", resp.StatusCode, body)
		}
		f := decode[broker.Firm](t, body)
		if f.Status != broker.FirmPending || resp.Header.Get("Location") != "/v1/admin/firms/"+string(f.ID) {
			t.Errorf("created firm %+v at %s", f, resp.Header.Get("Location"))
		}
		steps := []struct {
			path   string
			status int
			want   broker.FirmStatus
		}{
			{"/approve", 200, broker.FirmApproved},
			{"/approve", 409, broker.FirmApproved},
			{"/suspend", 200, broker.FirmSuspended},
			{"/suspend", 409, broker.FirmSuspended},
			{"/approve", 200, broker.FirmApproved},
		}
		for _, st := range steps {
			resp, body := srv.admin(t, "POST", "/v1/admin/firms/"+string(f.ID)+st.path, nil)
			if resp.StatusCode != st.status {
				t.Errorf("%s = %d %s, want %d", st.path, resp.StatusCode, body, st.status)
			}
			_, body = srv.admin(t, "GET", "/v1/admin/firms/"+string(f.ID), nil)
			if got := decode[broker.Firm](t, body).Status; got != st.want {
				t.Errorf("after %s status = %s, want %s", st.path, got, st.want)
			}
		}
		resp, _ = srv.admin(t, "POST", "/v1/admin/firms/"+string(broker.NewFirmID())+"/approve", nil)
		if resp.StatusCode != 404 {
			t.Errorf("approve unknown firm = %d, want 404", resp.StatusCode)
		}
		resp, _ = srv.admin(t, "GET", "/v1/admin/firms/not-an-id", nil)
		if resp.StatusCode != 404 {
			t.Errorf("get malformed id = %d, want 404", resp.StatusCode)
		}
		_, body = srv.admin(t, "GET", "/v1/admin/firms", nil)
		if l := decode[struct{ Items []broker.Firm }](t, body); len(l.Items) != 1 {
			t.Errorf("list firms = %s", body)
		}
		// Registration and each suspension are on the ledger; refused moves are not.
		size, err := s.Ledger().Sequence(t.Context(), 100)
		if err != nil {
			t.Fatal(err)
		}
		leaves, err := s.Ledger().ReadLeaves(t.Context(), 0, int(size))
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, b := range leaves {
			e, err := broker.ParseEntry(b)
			if err != nil || e.Firm != f.ID {
				t.Fatalf("entry %s: %v", b, err)
			}
			types = append(types, string(e.Type))
		}
		if got := strings.Join(types, " "); got != "firm.registered firm.suspended" {
			t.Errorf("ledger has %q, want registration then one suspension", got)
		}
	})
}

func TestCustomers(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		srv := newServer(t, s)
		for _, h := range []string{"alice", "bob", "carol"} {
			resp, body := srv.admin(t, "POST", "/v1/admin/customers", httpapi.NewCustomerRequest{Handle: h, DisplayName: strings.ToUpper(h), Jurisdiction: "DE"})
			if resp.StatusCode != 201 {
				t.Fatalf("create %s = %d %s", h, resp.StatusCode, body)
			}
			if bytes.Contains(body, []byte("password")) {
				t.Errorf("customer JSON exposes a password field: %s", body)
			}
		}
		resp, body := srv.admin(t, "POST", "/v1/admin/customers", httpapi.NewCustomerRequest{Handle: "alice", DisplayName: "Again", Jurisdiction: "DE"})
		if resp.StatusCode != 409 {
			t.Errorf("duplicate handle = %d %s, want 409", resp.StatusCode, body)
		}
		_, body = srv.admin(t, "GET", "/v1/admin/customers?limit=2", nil)
		first := decode[struct {
			Items []broker.Customer
			Next  string
		}](t, body)
		if len(first.Items) != 2 || first.Next == "" {
			t.Fatalf("first page = %s", body)
		}
		_, body = srv.admin(t, "GET", "/v1/admin/customers?limit=2&after="+first.Next, nil)
		second := decode[struct {
			Items []broker.Customer
			Next  string
		}](t, body)
		if len(second.Items) != 1 || second.Next != "" {
			t.Errorf("second page = %s", body)
		}
		resp, _ = srv.admin(t, "GET", "/v1/admin/customers/"+string(first.Items[0].ID), nil)
		if resp.StatusCode != 200 {
			t.Errorf("get customer = %d", resp.StatusCode)
		}
		for _, q := range []string{"limit=0", "limit=abc", "limit=100000"} {
			resp, _ := srv.admin(t, "GET", "/v1/admin/customers?"+q, nil)
			if resp.StatusCode != 400 {
				t.Errorf("?%s = %d, want 400", q, resp.StatusCode)
			}
		}
	})
}

// TestOperatorAuth: every admin route refuses missing and wrong tokens.
func TestOperatorAuth(t *testing.T) {
	srv := newServer(t, backendtest.Open(t, ""))
	routes := []struct{ method, path string }{
		{"GET", "/v1/admin/firms"}, {"POST", "/v1/admin/firms"}, {"GET", "/v1/admin/firms/" + string(broker.NewFirmID())},
		{"POST", "/v1/admin/firms/" + string(broker.NewFirmID()) + "/approve"}, {"POST", "/v1/admin/firms/" + string(broker.NewFirmID()) + "/suspend"},
		{"PUT", "/v1/admin/firms/" + string(broker.NewFirmID()) + "/webhook"}, {"GET", "/v1/admin/webhooks"},
		{"GET", "/v1/admin/customers"}, {"POST", "/v1/admin/customers"}, {"GET", "/v1/admin/customers/" + string(broker.NewCustomerID())},
	}
	body := []byte(`{"legal_name":"X Ltd","sector":"retail","jurisdiction":"GB"}`)
	for _, rt := range routes {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x", token} {
			resp, b := srv.do(t, rt.method, rt.path, "application/json", body, auth)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s with %q = %d %s", rt.method, rt.path, auth, resp.StatusCode, b)
			}
		}
	}
	var n int
	_ = srv.store.View(t.Context(), func(tx store.Tx) error {
		fs, err := tx.ListFirms(t.Context(), store.Page{})
		n = len(fs)
		return err
	})
	if n != 0 {
		t.Errorf("%d firms written by unauthenticated requests", n)
	}
}

// TestBadInput: malformed bodies get the right problem and write nothing.
func TestBadInput(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		srv := newServer(t, s)
		good := `{"legal_name":"Acme Ltd","sector":"retail","jurisdiction":"GB"}`
		cases := []struct {
			name, contentType, body string
			status                  int
		}{
			{"malformed", "application/json", `{"legal_name":`, 400},
			{"not an object", "application/json", `[1,2,3]`, 400},
			{"unknown field", "application/json", `{"legal_name":"A","sector":"retail","jurisdiction":"GB","status":"approved"}`, 400},
			{"wrong type", "application/json", `{"legal_name":7,"sector":"retail","jurisdiction":"GB"}`, 400},
			{"trailing data", "application/json", good + `{}`, 400},
			{"empty", "application/json", ``, 400},
			{"invalid utf-8", "application/json", "{\"legal_name\":\"Acme \xff\xfe\",\"sector\":\"retail\",\"jurisdiction\":\"GB\"}", 400},
			{"oversized", "application/json", `{"legal_name":"` + strings.Repeat("a", 5000) + `","sector":"retail","jurisdiction":"GB"}`, 413},
			{"form post", "application/x-www-form-urlencoded", `legal_name=Acme`, 415},
			{"no content type", "", good, 415},
			{"text/plain", "text/plain", good, 415},
			{"invalid sector", "application/json", `{"legal_name":"Acme Ltd","sector":"piracy","jurisdiction":"GB"}`, 400},
			{"invalid jurisdiction", "application/json", `{"legal_name":"Acme Ltd","sector":"retail","jurisdiction":"Britain"}`, 400},
			{"control characters", "application/json", `{"legal_name":"Acme\u0000Ltd","sector":"retail","jurisdiction":"GB"}`, 400},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := srv.do(t, "POST", "/v1/admin/firms", tc.contentType, []byte(tc.body), "Bearer "+token)
				if resp.StatusCode != tc.status {
					t.Fatalf("status = %d %s, want %d", resp.StatusCode, body, tc.status)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q", ct)
				}
				p := decode[httpapi.Problem](t, body)
				if p.Status != tc.status || p.Type == "" || p.Title == "" || p.Instance != "/v1/admin/firms" {
					t.Errorf("problem = %+v", p)
				}
			})
		}
		// A chunked body with no Content-Length is cut off by the reader limit.
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v1/admin/customers", io.MultiReader(strings.NewReader(`{"handle":"`), strings.NewReader(strings.Repeat("a", 10000)+`"}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.ContentLength = -1
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("chunked oversized body = %d, want 413", resp.StatusCode)
		}
		err = s.View(t.Context(), func(tx store.Tx) error {
			fs, err := tx.ListFirms(t.Context(), store.Page{})
			cs, err2 := tx.ListCustomers(t.Context(), store.Page{})
			if len(fs)+len(cs) != 0 {
				t.Errorf("bad input wrote %d firms and %d customers", len(fs), len(cs))
			}
			if err != nil {
				return err
			}
			return err2
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestProblemsForUnknownRoutes(t *testing.T) {
	srv := newServer(t, backendtest.Open(t, ""))
	resp, body := srv.do(t, "GET", "/nope", "", nil, "")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown route = %d %s", resp.StatusCode, body)
	}
	resp, _ = srv.do(t, "DELETE", "/healthz", "", nil, "")
	if resp.StatusCode != 405 {
		t.Errorf("DELETE /healthz = %d, want 405", resp.StatusCode)
	}
	if !strings.Contains(srv.logs.String(), `"request_id"`) {
		t.Error("access log lines carry no request_id")
	}
}

func TestWebhookAdmin(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		srv := newServer(t, s)
		_, body := srv.admin(t, "POST", "/v1/admin/firms", httpapi.NewFirmRequest{LegalName: "Acme Retail Ltd", Sector: "retail", Jurisdiction: "GB"})
		f := decode[broker.Firm](t, body)
		resp, body := srv.admin(t, "PUT", "/v1/admin/firms/"+string(f.ID)+"/webhook", httpapi.WebhookRequest{URL: "https://acme.example/steward"})
		if resp.StatusCode != 200 || decode[broker.Firm](t, body).WebhookURL != "https://acme.example/steward" {
			t.Fatalf("set webhook = %d %s", resp.StatusCode, body)
		}
		for _, bad := range []string{"http://acme.example/x", "javascript:alert(1)", "https://u:p@acme.example/"} {
			if resp, _ := srv.admin(t, "PUT", "/v1/admin/firms/"+string(f.ID)+"/webhook", httpapi.WebhookRequest{URL: bad}); resp.StatusCode != 400 {
				t.Errorf("webhook %q = %d, want 400", bad, resp.StatusCode)
			}
		}
		dead := broker.WebhookDelivery{ID: broker.NewWebhookID(), FirmID: f.ID, URL: "https://acme.example/steward", EventType: "consent.revoked",
			Payload: []byte(`{}`), State: broker.WebhookDead, Attempts: 10, LastError: "answered 500", NextAttemptAt: storetest.Now, CreatedAt: storetest.Now}
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.EnqueueWebhook(t.Context(), dead) }); err != nil {
			t.Fatal(err)
		}
		_, body = srv.admin(t, "GET", "/v1/admin/webhooks?state=dead", nil)
		if l := decode[struct{ Items []broker.WebhookDelivery }](t, body); len(l.Items) != 1 || l.Items[0].ID != dead.ID {
			t.Errorf("dead letters = %s", body)
		}
		if resp, _ := srv.admin(t, "GET", "/v1/admin/webhooks?state=lost", nil); resp.StatusCode != 400 {
			t.Errorf("bad state = %d", resp.StatusCode)
		}
	})
}
