package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/consent"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/oauth/rar"
	"github.com/stewardhq/steward/broker/store"
)

// decoupledConsent connects decoupled (CIBA) requests to broker/consent,
// inside the provider's transactions: the firm's request is decided under
// the customer's terms and the regulatory rules; when the policy asks, the
// customer's answer in the account pages approves (possibly narrowed) or
// refuses it.
func decoupledConsent(svc *consent.Service) oauth.Decoupled {
	return oauth.Decoupled{
		Request: func(ctx context.Context, tx store.Tx, customer broker.CustomerID, c broker.Client, requested json.RawMessage) (oauth.DecoupledOutcome, error) {
			asked, err := oneDetail(requested)
			if err != nil {
				return oauth.DecoupledOutcome{}, err
			}
			out, err := svc.RequestIn(ctx, tx, customer, c.FirmID, c.ID, broker.DataRequest{Scope: rar.ToScope(asked)})
			if err != nil {
				return oauth.DecoupledOutcome{}, err
			}
			res := oauth.DecoupledOutcome{ConsentID: out.Consent.ID, State: out.Consent.State}
			for _, r := range out.Decision.Reasons {
				res.Reasons = append(res.Reasons, r.Text)
			}
			if res.State == broker.ConsentGranted {
				res.Details, err = grantedDetails(out.Consent, asked)
			}
			return res, err
		},
		Answer: func(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID, granted json.RawMessage) (oauth.DecoupledOutcome, error) {
			if granted == nil {
				c, err := svc.RefuseIn(ctx, tx, customer, id, "refused in the account pages")
				return oauth.DecoupledOutcome{ConsentID: c.ID, State: c.State}, err
			}
			d, err := oneDetail(granted)
			if err != nil {
				return oauth.DecoupledOutcome{}, err
			}
			sc := rar.ToScope(d)
			c, err := svc.ApproveIn(ctx, tx, customer, id, &sc)
			if err != nil {
				return oauth.DecoupledOutcome{}, err
			}
			res := oauth.DecoupledOutcome{ConsentID: c.ID, State: c.State}
			if c.State == broker.ConsentGranted {
				res.Details, err = grantedDetails(c, d)
			}
			return res, err
		},
		Lapse: func(ctx context.Context, tx store.Tx, customer broker.CustomerID, id broker.ConsentID) error {
			_, err := svc.LapseIn(ctx, tx, customer, id)
			return err
		},
	}
}

// oneDetail parses authorization details that hold exactly one
// steward_customer_data object.
func oneDetail(raw json.RawMessage) (rar.Detail, error) {
	ds, err := rar.Parse(string(raw), rar.Options{})
	if err != nil {
		return rar.Detail{}, fmt.Errorf("%w: %w", broker.ErrInvalid, err)
	}
	if len(ds) != 1 {
		return rar.Detail{}, fmt.Errorf("%w: want exactly one authorization detail", broker.ErrInvalid)
	}
	return ds[0], nil
}

// grantedDetails are the details a granted consent allows: its granted
// scope, with the actions and locations of the detail it answers.
func grantedDetails(c broker.Consent, asked rar.Detail) (json.RawMessage, error) {
	enc, err := rar.Encode([]rar.Detail{rar.FromScope(c.Granted, asked)})
	return json.RawMessage(enc), err
}
