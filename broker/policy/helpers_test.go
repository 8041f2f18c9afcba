package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/terms"
)

var (
	now      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	customer = broker.Customer{ID: "cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", Jurisdiction: "GB"}
	firmA    = broker.Firm{ID: "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", Sector: "retail", Jurisdiction: "GB", Status: broker.FirmApproved}
)

func newEngine(t testing.TB) *policy.Engine {
	t.Helper()
	e, err := policy.New(t.Context(), policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// version parses a terms document made of the given rules.
func version(t testing.TB, n int, rules ...string) broker.TermsVersion {
	t.Helper()
	doc := `{"format":"steward.terms/v1","rules":[` + strings.Join(rules, ",") + `]}`
	v, err := terms.NewVersion(customer.ID, n, []byte(doc), now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scope(purpose, duration string, categories ...string) broker.Scope {
	return broker.Scope{Categories: categories, Purpose: purpose, Duration: broker.MustParseDuration(duration)}
}

func hasReason(d broker.Decision, text string) bool {
	for _, r := range d.Reasons {
		if strings.Contains(r.Text, text) {
			return true
		}
	}
	return false
}

// grant returns a consent for s granted at at.
func grant(t testing.TB, firm broker.Firm, s broker.Scope, at time.Time) broker.Consent {
	t.Helper()
	c, _, err := broker.NewConsentRequest(customer.ID, firm.ID, "", s, at, "test")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err = c.Grant(s, at, "test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
