package rar_test

import (
	"fmt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

func ExampleParse() {
	o := rar.Options{MaxDuration: func(purpose string) (broker.Duration, bool) {
		return broker.MustParseDuration("P1Y"), broker.PurposeCovers("Marketing", purpose)
	}}
	details, err := rar.Parse(`[{"type":"steward_customer_data","categories":["EmailAddress"],
		"purpose":"DirectMarketing","duration":"P90D","frequency":{"max":4,"per":"P1D"}}]`, o)
	fmt.Printf("%+v %v\n", rar.ToScope(details[0]), err)

	_, err = rar.Parse(`[{"type":"steward_customer_data","categories":["EmailAddress"],
		"purpose":"DirectMarketing","duration":"P2Y"}]`, o)
	fmt.Println(rar.ReasonOf(err))
	fmt.Println(err.(interface{ Reason() string }).Reason())
	// Output:
	// {Categories:[EmailAddress] Fields:map[] Purpose:DirectMarketing Duration:P90D Frequency:{Max:4 Per:P1D}} <nil>
	// duration_exceeds_bound
	// duration_exceeds_bound: authorization_details[0].duration: P2Y is longer than the P1Y allowed for purpose DirectMarketing
}
