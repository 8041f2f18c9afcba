// Package oauthconsent connects the authorization server (broker/oauth),
// which asks about consent through funcs it declares, to the consent use
// cases (broker/consent). It is the one place both are imported together,
// so that neither depends on the other: cmd/steward wires it, and the
// oauth package's own tests use it to run against the real consent flow.
package oauthconsent

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

// scopeOf converts authorization details (exactly one steward_customer_data
// object, checked by rar.Parse) to the consent scope they ask for.
func scopeOf(raw json.RawMessage) (broker.Scope, error) {
	ds, err := rar.Parse(string(raw), rar.Options{})
	if err != nil {
		return broker.Scope{}, fmt.Errorf("%w: %w", broker.ErrInvalid, err)
	}
	if len(ds) != 1 {
		return broker.Scope{}, fmt.Errorf("%w: want exactly one authorization detail", broker.ErrInvalid)
	}
	return rar.ToScope(ds[0]), nil
}

// Func connects the authorization endpoint to broker/consent: the
// firm's request is decided at once under the customer's terms and the
// regulatory rules; when the policy asks, the customer's answer on the
// consent screen approves (possibly narrowed) or refuses it.
func Func(svc *consent.Service) oauth.ConsentFunc {
	return func(ctx context.Context, req oauth.ConsentRequest) (oauth.ConsentOutcome, error) {
		asked, err := scopeOf(req.Requested)
		if err != nil {
			return oauth.ConsentOutcome{}, err
		}
		out, err := svc.Request(ctx, req.Customer, req.Client.FirmID, req.Client.ID, broker.DataRequest{Scope: asked})
		if err != nil {
			return oauth.ConsentOutcome{}, err
		}
		c := out.Consent
		if c.State == broker.ConsentRequested {
			if !req.Approved {
				c, err = svc.Refuse(ctx, req.Customer, c.ID, "refused on the consent screen")
			} else {
				var granted broker.Scope
				if granted, err = scopeOf(req.Granted); err == nil {
					c, err = svc.Approve(ctx, req.Customer, c.ID, &granted)
				}
			}
			if err != nil {
				return oauth.ConsentOutcome{}, err
			}
		}
		if c.State != broker.ConsentGranted || !req.Approved {
			return oauth.ConsentOutcome{ConsentID: c.ID}, nil
		}
		return oauth.ConsentOutcome{ConsentID: c.ID, Granted: true, Details: req.Granted}, nil
	}
}

// Decoupled connects decoupled (CIBA) requests to broker/consent,
// inside the provider's transactions: the firm's request is decided under
// the customer's terms and the regulatory rules; when the policy asks, the
// customer's answer in the account pages approves (possibly narrowed) or
// refuses it.
func Decoupled(svc *consent.Service) oauth.Decoupled {
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
