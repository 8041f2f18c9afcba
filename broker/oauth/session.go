package oauth

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth/dpop"
	"github.com/stewardhq/steward/broker/oauth/rar"
)

// Session is the fosite session of every Steward grant. Besides fosite's
// fields (Subject is the firm's pairwise pseudonym for the customer, or
// the client id for client credentials) it carries the consent the grant
// was made under and the authorization details the customer granted, as
// the raw RFC 9396 JSON. All of it survives Clone and the storage round
// trip; introspection shows consent_id, authorization_details and, for a
// DPoP-bound grant, cnf.jkt and token_type DPoP. It implements dpop.Binder
// and rar.Holder, so the fapi handlers can bind and read it.
type Session struct {
	fosite.DefaultSession
	// ConsentID is the consent the authorization-code grant rests on.
	ConsentID broker.ConsentID `json:"consent_id,omitempty"`
	// FirmID is the firm the client belongs to.
	FirmID broker.FirmID `json:"firm_id,omitempty"`
	// JKT is the RFC 7638 thumbprint of the key the grant's tokens are
	// bound to (RFC 9449); empty means unbound (Bearer).
	JKT string `json:"jkt,omitempty"`
	// Details are the granted authorization details (RFC 9396), verbatim.
	Details json.RawMessage `json:"authorization_details,omitempty"`
}

var (
	_ fosite.Session            = (*Session)(nil)
	_ fosite.ExtraClaimsSession = (*Session)(nil)
	_ dpop.Binder               = (*Session)(nil)
	_ rar.Holder                = (*Session)(nil)
)

// NewSession returns an empty session for subject (may be empty).
func NewSession(subject string) *Session {
	return &Session{DefaultSession: fosite.DefaultSession{Subject: subject}}
}

// DPoPJKT implements dpop.Binder.
func (s *Session) DPoPJKT() string { return s.JKT }

// SetDPoPJKT implements dpop.Binder.
func (s *Session) SetDPoPJKT(jkt string) { s.JKT = jkt }

// AuthorizationDetails implements rar.Holder: Details decoded, or nil when
// they are absent or do not decode (which rar's handlers then refuse).
func (s *Session) AuthorizationDetails() []rar.Detail {
	if len(s.Details) == 0 {
		return nil
	}
	var ds []rar.Detail
	if json.Unmarshal(s.Details, &ds) != nil {
		return nil
	}
	return ds
}

// SetAuthorizationDetails implements rar.Holder: Details becomes d's JSON
// (nil when d is empty or cannot be encoded).
func (s *Session) SetAuthorizationDetails(d []rar.Detail) {
	s.Details = nil
	if len(d) == 0 {
		return
	}
	if enc, err := rar.Encode(d); err == nil {
		s.Details = json.RawMessage(enc)
	}
}

// Clone implements fosite.Session with a deep copy.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := &Session{ConsentID: s.ConsentID, FirmID: s.FirmID, JKT: s.JKT, Details: slices.Clone(s.Details)}
	if d, ok := s.DefaultSession.Clone().(*fosite.DefaultSession); ok && d != nil {
		c.DefaultSession = *d
	}
	return c
}

// GetExtraClaims implements fosite.ExtraClaimsSession: a new map with the
// session's Extra plus consent_id, authorization_details and, for a
// bound session, cnf and token_type DPoP (RFC 9449 §6.2), which fosite's
// introspection response includes.
func (s *Session) GetExtraClaims() map[string]any {
	out := maps.Clone(s.Extra)
	if out == nil {
		out = map[string]any{}
	}
	if s.ConsentID != "" {
		out["consent_id"] = s.ConsentID
	}
	if s.JKT != "" {
		out["cnf"] = map[string]any{"jkt": s.JKT}
		out["token_type"] = "DPoP"
	}
	if len(s.Details) > 0 {
		out["authorization_details"] = s.Details
	}
	return out
}
