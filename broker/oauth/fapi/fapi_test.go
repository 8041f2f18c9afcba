package fapi_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/fapi"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

func sampleSession() *fapi.Session {
	s := fapi.NewSession("pairwise-1")
	s.SetExpiresAt(fosite.AccessToken, time.Unix(1_700_000_000, 0).UTC())
	s.SetDPoPJKT("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
	s.SetAuthorizationDetails([]rar.Detail{{
		Type: rar.Type, Actions: []string{"read"}, Categories: []string{"EmailAddress"},
		Fields: map[string][]string{"EmailAddress": {"domain"}}, Purpose: "DirectMarketing",
		Duration: broker.MustParseDuration("P30D"), Frequency: broker.Frequency{Max: 1, Per: broker.MustParseDuration("P1D")},
	}})
	return s
}

// TestSessionClone checks that a clone (what fosite's refresh flow stores)
// keeps the binding and details and shares no memory with the original.
func TestSessionClone(t *testing.T) {
	s := sampleSession()
	c, ok := s.Clone().(*fapi.Session)
	if !ok {
		t.Fatalf("Clone returned %T", s.Clone())
	}
	if diff := cmp.Diff(s, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	c.Details[0].Categories[0] = "Income"
	c.Details[0].Fields["EmailAddress"][0] = "local"
	c.SetDPoPJKT("")
	if diff := cmp.Diff(sampleSession(), s); diff != "" {
		t.Errorf("changing the clone changed the original (-want +got):\n%s", diff)
	}
}

// TestSessionJSON checks the round trip a SQL store performs.
func TestSessionJSON(t *testing.T) {
	s := sampleSession()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got fapi.Session
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, &got); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func TestSessionExtraClaims(t *testing.T) {
	s := sampleSession()
	s.Extra = map[string]any{"acr": "urn:steward:passkey"}
	b, err := json.Marshal(s.GetExtraClaims())
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"acr":"urn:steward:passkey","authorization_details":[{"type":"steward_customer_data","actions":["read"],"categories":["EmailAddress"],"fields":{"EmailAddress":["domain"]},"purpose":"DirectMarketing","duration":"P30D","frequency":{"max":1,"per":"P1D"}}],"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},"token_type":"DPoP"}`
	if string(b) != want {
		t.Errorf("extra claims =\n%s\nwant\n%s", b, want)
	}
	s.GetExtraClaims()["cnf"] = "tampered"
	if _, ok := s.Extra["cnf"]; ok {
		t.Error("writing to GetExtraClaims changed the session")
	}
	if got := fapi.NewSession("").GetExtraClaims(); len(got) != 0 {
		t.Errorf("empty session has extra claims %v", got)
	}
}

func TestPushedOnly(t *testing.T) {
	ok := url.Values{"client_id": {"c"}, "request_uri": {"urn:ietf:params:oauth:request_uri:x"}}
	if err := fapi.PushedOnly(ok); err != nil {
		t.Errorf("PushedOnly(%v) = %v", ok, err)
	}
	for _, bad := range []url.Values{
		{"client_id": {"c"}, "request_uri": {"u"}, "dpop_jkt": {"x"}},
		{"client_id": {"c"}, "request_uri": {"u"}, "authorization_details": {"[]"}},
		{"client_id": {"c"}},
		{"client_id": {"c"}, "request_uri": {"u", "v"}},
	} {
		if err := fapi.PushedOnly(bad); !errors.Is(err, fosite.ErrInvalidRequest) {
			t.Errorf("PushedOnly(%v) = %v, want invalid_request", bad, err)
		}
	}
}

func TestFactoriesRefusesBadConfig(t *testing.T) {
	if _, _, err := (fapi.Extensions{}).Factories(); err == nil {
		t.Error("Factories accepted extensions without a DPoP validator")
	}
}
