package policy_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/terms"
)

func ExampleEngine_Consent() {
	ctx := context.Background()
	e, err := policy.New(ctx, policy.Config{})
	if err != nil {
		panic(err) // a policy that does not compile stops the process
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	customer := broker.Customer{ID: "cus_aaaaaaaaaaaaaaaaaaaaaaaaaa", Jurisdiction: "GB"}
	v, err := terms.NewVersion(customer.ID, 1, []byte(`{"format": "steward.terms/v1", "rules": [
		{"effect": "deny", "match": {"categories": ["Location"]}},
		{"effect": "allow", "match": {"purposes": ["Marketing"], "sectors": ["retail"]}, "constraints": {"max_duration": "P90D"}}
	]}`), at)
	if err != nil {
		panic(err)
	}
	d, err := e.Consent(ctx, policy.ConsentRequest{
		Customer: customer,
		Firm:     broker.Firm{ID: "firm_aaaaaaaaaaaaaaaaaaaaaaaaaa", Sector: "retail", Jurisdiction: "GB", Status: broker.FirmApproved},
		Terms:    v,
		Request: broker.DataRequest{Scope: broker.Scope{
			Categories: []string{"EmailAddress", "Location"}, Purpose: "DirectMarketing", Duration: broker.MustParseDuration("P1Y")}},
		Now: at,
	})
	if err != nil {
		panic(err) // treat as deny
	}
	fmt.Println(d.Effect, d.Scope.Categories, d.Scope.Duration)
	for _, r := range d.Reasons {
		fmt.Println("-", r.Text)
	}
	// Output:
	// allow [EmailAddress] P90D
	// - Your rule 1 refuses sharing your location history for any purpose with any firm.
	// - Your rule 2 allows sharing any of your data for marketing with retail firms for up to 90 days.
	// - The firm asked for 1 year; your rule 2 limits it to 90 days.
}
