package oauth

import "github.com/stewardhq/steward/broker/oauth/dpop"

// DPoPValidator returns the validator the provider checks DPoP proofs
// with (nil when DPoP is off). Steward's resource servers use the same
// one, so replayed proofs and nonces are shared with the token endpoint.
func (p *Provider) DPoPValidator() *dpop.Validator { return p.cfg.DPoP }
