package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

// auditWorld builds a small history through the real consent service and
// OPA: two firms, grants, a denial, a revocation, disclosures, and one
// disclosure logged after a revocation (which the report must surface).
type auditWorld struct {
	retail, bank  broker.Firm
	revoked       broker.ConsentID
	lateIndex     int64
	disclosures   int
	start, finish time.Time
}

func stage(t *testing.T, s store.Store, e broker.Entry) {
	t.Helper()
	b, err := e.CanonicalBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.StageLedgerEntry(t.Context(), b) }); err != nil {
		t.Fatal(err)
	}
}

func buildAuditWorld(t *testing.T, s backend.Migrator) auditWorld {
	t.Helper()
	ctx := t.Context()
	eng, err := policy.New(ctx, policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := storetest.Now
	svc := consent.New(s, func(ctx context.Context, c broker.Customer, f broker.Firm, tv broker.TermsVersion, req broker.DataRequest, at time.Time) (broker.Decision, error) {
		return eng.Consent(ctx, policy.ConsentRequest{Customer: c, Firm: f, Terms: tv, Request: req, Now: at})
	}, func() time.Time { return now })
	w := auditWorld{retail: storetest.NewFirm("Acme Retail Ltd", "retail"), bank: storetest.NewFirm("Northwind Bank plc", "financial"), start: now}
	alice := storetest.NewCustomer("alice")
	if err := s.Update(ctx, func(tx store.Tx) error {
		for _, f := range []broker.Firm{w.retail, w.bank} {
			if err := tx.CreateFirm(ctx, f); err != nil {
				return err
			}
		}
		return tx.CreateCustomer(ctx, alice)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SaveTerms(ctx, alice.ID, []byte(`{"format":"steward.terms/v1","rules":[
		{"effect":"allow","match":{"sectors":["retail"],"purposes":["Marketing"]}},
		{"effect":"deny","match":{"sectors":["financial"],"purposes":["Marketing"]}}]}`)); err != nil {
		t.Fatal(err)
	}
	req := broker.DataRequest{Scope: broker.Scope{Categories: []string{"Contact", "Preference"}, Purpose: "DirectMarketing", Duration: broker.MustParseDuration("P30D")}}
	granted, err := svc.Request(ctx, alice.ID, w.retail.ID, "", req)
	if err != nil || granted.Consent.State != broker.ConsentGranted {
		t.Fatalf("grant: %v %s", err, granted.Consent.State)
	}
	second, err := svc.Request(ctx, alice.ID, w.retail.ID, "", req)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := svc.Request(ctx, alice.ID, w.bank.ID, "", req); err != nil || out.Consent.State != broker.ConsentDenied {
		t.Fatalf("deny: %v %s", err, out.Consent.State)
	}
	var psn broker.Pseudonym
	_ = s.Update(ctx, func(tx store.Tx) (err error) { psn, err = tx.Pseudonym(ctx, alice.ID, w.retail.ID); return err })
	disclose := func(c broker.ConsentID, at time.Time) {
		stage(t, s, broker.Entry{Type: broker.EntryDisclosure, Time: at, Firm: w.retail.ID, Customer: psn, Consent: c,
			Categories: []string{"Contact"}, Purpose: "DirectMarketing", DecisionHash: granted.DecisionHash, TermsHash: granted.Decision.TermsHash,
			Commitment: broker.Commit(broker.NewSalt(), []byte(`{"email":"alice@example.org"}`))})
		w.disclosures++
	}
	disclose(granted.Consent.ID, now.Add(time.Minute))
	disclose(second.Consent.ID, now.Add(2*time.Minute))
	now = now.Add(time.Hour)
	if _, err := svc.Revoke(ctx, alice.ID, granted.Consent.ID, "done"); err != nil {
		t.Fatal(err)
	}
	w.revoked = granted.Consent.ID
	// A disclosure after the revocation: invariant 1 forbids it; here it is
	// planted so the report has something to catch.
	disclose(granted.Consent.ID, now.Add(time.Minute))
	// An access refused after the revocation, as the Data API records it.
	refused := broker.Decision{Kind: broker.DecisionAccess, Effect: broker.EffectDeny, Reasons: []broker.Reason{{Source: broker.ReasonConsent, Text: "revoked"}},
		DecidedAt: now.Add(90 * time.Second)}
	if err := s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.InsertDecision(ctx, broker.NewDecisionRecord(alice.ID, w.retail.ID, granted.Consent.ID, broker.DataRequest{Scope: req.Scope}, refused))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	size, err := s.Ledger().Sequence(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	w.lateIndex = size - 1
	w.finish = now.Add(time.Hour)
	return w
}

const regulatorToken = "test-regulator-token-0123456789abcdef"

func TestAuditAPIAuthorization(t *testing.T) {
	srv := newServer(t, backendtest.Open(t, ""), regulatorToken)
	for _, path := range []string{"/v1/audit/entries", "/v1/audit/reports"} {
		for _, c := range []struct {
			auth   string
			status int
		}{{"", 401}, {"Bearer nope", 401}, {"Bearer " + token, 403}, {"Basic " + regulatorToken, 401}, {"Bearer " + regulatorToken, 200}} {
			resp, body := srv.do(t, "GET", path, "", nil, c.auth)
			if resp.StatusCode != c.status {
				t.Errorf("GET %s with %q = %d %s, want %d", path, c.auth, resp.StatusCode, body, c.status)
			}
		}
		// The regulator is read-only: no write method exists on the audit API.
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			resp, _ := srv.do(t, m, path, "application/json", []byte(`{}`), "Bearer "+regulatorToken)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s by the regulator = %d, want 405", m, path, resp.StatusCode)
			}
		}
	}
	// The regulator's token opens nothing on the operator API.
	resp, _ := srv.do(t, "POST", "/v1/admin/firms", "application/json", []byte(`{"legal_name":"X Ltd","sector":"retail","jurisdiction":"GB"}`), "Bearer "+regulatorToken)
	if resp.StatusCode != 403 {
		t.Errorf("regulator POST /v1/admin/firms = %d, want 403", resp.StatusCode)
	}
}

func TestAuditSearchAndReport(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		w := buildAuditWorld(t, s)
		srv := newServer(t, s, regulatorToken)
		get := func(path string) []byte {
			t.Helper()
			resp, body := srv.do(t, "GET", path, "", nil, "Bearer "+regulatorToken)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
			}
			return body
		}
		type page struct {
			Items []struct {
				Index    int64           `json:"index"`
				LeafHash string          `json:"leaf_hash"`
				Entry    json.RawMessage `json:"entry"`
			}
			Next string
		}
		all := decode[page](t, get("/v1/audit/entries"))
		if len(all.Items) == 0 {
			t.Fatal("no entries")
		}
		for _, it := range all.Items {
			if _, err := broker.ParseEntry(it.Entry); err != nil {
				t.Errorf("entry %d is not canonical as served: %v", it.Index, err)
			}
		}
		cases := []struct {
			query string
			want  int
		}{
			{"type=disclosure", w.disclosures},
			{"type=consent.granted,consent.denied", 3},
			{"firm=" + string(w.bank.ID), 2},
			{"consent=" + string(w.revoked), 5},
			{"purpose=DirectMarketing&type=consent.revoked", 1},
			{"category=Preference", 5},
			{"type=disclosure&from=" + w.start.Add(30*time.Minute).Format(time.RFC3339), 1},
			{"type=disclosure&to=" + w.start.Add(30*time.Minute).Format(time.RFC3339), 2},
		}
		for _, c := range cases {
			if got := decode[page](t, get("/v1/audit/entries?"+c.query)); len(got.Items) != c.want {
				t.Errorf("?%s: %d entries, want %d", c.query, len(got.Items), c.want)
			}
		}
		first := decode[page](t, get("/v1/audit/entries?limit=2"))
		rest := decode[page](t, get("/v1/audit/entries?after="+first.Next))
		if len(first.Items) != 2 || len(first.Items)+len(rest.Items) != len(all.Items) {
			t.Errorf("paging: %d + %d of %d", len(first.Items), len(rest.Items), len(all.Items))
		}
		for _, bad := range []string{"purpose=Profit", "category=Horoscope", "type=consent.stolen", "from=yesterday", "format=xml", "after=-3"} {
			resp, _ := srv.do(t, "GET", "/v1/audit/entries?"+bad, "", nil, "Bearer "+regulatorToken)
			if resp.StatusCode != 400 {
				t.Errorf("?%s = %d, want 400", bad, resp.StatusCode)
			}
		}
		rows, err := csv.NewReader(strings.NewReader(string(get("/v1/audit/entries?type=disclosure&format=csv")))).ReadAll()
		if err != nil || len(rows) != w.disclosures+1 || rows[0][0] != "index" || rows[1][2] != "disclosure" {
			t.Errorf("CSV export = %v, %v", rows, err)
		}

		span := "from=" + w.start.Add(-time.Hour).Format(time.RFC3339) + "&to=" + w.finish.Format(time.RFC3339)
		rep := decode[store.LedgerReport](t, get("/v1/audit/reports?"+span))
		counts := map[string]store.ConsentCounts{}
		for _, c := range rep.Consents {
			counts[string(c.FirmID)+"/"+c.Purpose] = c
		}
		if c := counts[string(w.retail.ID)+"/DirectMarketing"]; c.Granted != 2 || c.Revoked != 1 {
			t.Errorf("retail counts %+v, want 2 granted 1 revoked", c)
		}
		if c := counts[string(w.bank.ID)+"/DirectMarketing"]; c.Denied != 1 {
			t.Errorf("bank counts %+v, want 1 denied", c)
		}
		if len(rep.Disclosures) != 1 || rep.Disclosures[0].Disclosures != w.disclosures {
			t.Errorf("disclosures %+v, want %d for the retail firm", rep.Disclosures, w.disclosures)
		}
		if len(rep.AfterRevocation) != 1 || rep.AfterRevocation[0].Index != w.lateIndex || rep.AfterRevocation[0].ConsentID != w.revoked {
			t.Errorf("disclosures after revocation = %+v, want the planted one at %d", rep.AfterRevocation, w.lateIndex)
		}
		// Ledger entry times are kept to the millisecond, decision records to the microsecond.
		if len(rep.RefusalsAfterEnd) != 1 || rep.RefusalsAfterEnd[0].Seconds < 89.9 || rep.RefusalsAfterEnd[0].Seconds > 90.1 {
			t.Errorf("refusals after end = %+v, want one 90 s after", rep.RefusalsAfterEnd)
		}
		if csvRep := string(get("/v1/audit/reports?format=csv&" + span)); !strings.Contains(csvRep, "disclosures_after_revocation,") {
			t.Errorf("CSV report lacks the late disclosure:\n%s", csvRep)
		}
		resp, _ := srv.do(t, "GET", "/v1/audit/reports?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z", "", nil, "Bearer "+regulatorToken)
		if resp.StatusCode != 400 {
			t.Errorf("inverted period = %d, want 400", resp.StatusCode)
		}
	})
}
