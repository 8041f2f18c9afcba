package oauth

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
)

// Session is the fosite session of every Steward grant. Besides fosite's
// fields (Subject is the firm's pairwise pseudonym for the customer, or
// the client id for client credentials) it carries the consent the grant
// was made under and the authorization details the customer granted, as
// the raw RFC 9396 JSON. All of it survives Clone and the storage round
// trip; introspection shows consent_id and authorization_details.
//
// The JSON names match the DPoP/RAR branch's Session (jkt,
// authorization_details) so stored rows stay readable when the two merge.
type Session struct {
	fosite.DefaultSession
	// ConsentID is the consent the authorization-code grant rests on.
	ConsentID broker.ConsentID `json:"consent_id,omitempty"`
	// FirmID is the firm the client belongs to.
	FirmID broker.FirmID `json:"firm_id,omitempty"`
	// JKT is reserved for the DPoP key binding (RFC 9449).
	JKT string `json:"jkt,omitempty"`
	// Details are the granted authorization details (RFC 9396), verbatim.
	Details json.RawMessage `json:"authorization_details,omitempty"`
}

var (
	_ fosite.Session            = (*Session)(nil)
	_ fosite.ExtraClaimsSession = (*Session)(nil)
)

// NewSession returns an empty session for subject (may be empty).
func NewSession(subject string) *Session {
	return &Session{DefaultSession: fosite.DefaultSession{Subject: subject}}
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
// session's Extra plus consent_id, cnf and authorization_details.
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
	}
	if len(s.Details) > 0 {
		out["authorization_details"] = s.Details
	}
	return out
}
