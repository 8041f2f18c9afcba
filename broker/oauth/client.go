package oauth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/stewardhq/steward/broker"
)

// Scopes a client may hold.
const (
	// ScopeFirm lets a firm's client call firm-level APIs with client credentials.
	ScopeFirm = "firm"
	// ScopeAuditRead lets a regulator's client read the audit API.
	ScopeAuditRead = "audit:read"
)

// Signing algorithms accepted for client assertions (FAPI 2.0 § 5.4).
var assertionAlgs = []string{string(jose.ES256), string(jose.PS256), string(jose.EdDSA)}

// client adapts a broker.Client to fosite: a confidential client that
// authenticates with private_key_jwt only, uses response_type=code only,
// and holds the grants and scopes of its kind (firm or regulator).
type client struct {
	c         broker.Client
	firmName  string
	regulator broker.RegulatorID
	jwks      *jose.JSONWebKeySet
}

var (
	_ fosite.Client              = (*client)(nil)
	_ fosite.OpenIDConnectClient = (*client)(nil)
	_ fosite.ResponseModeClient  = (*client)(nil)
)

func newClient(c broker.Client, firmName string, reg broker.RegulatorID) (*client, error) {
	out := &client{c: c, firmName: firmName, regulator: reg}
	if len(c.JWKS) > 0 {
		set, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, fmt.Errorf("client %s: stored jwks: %w", c.ID, err)
		}
		out.jwks = set
	}
	return out, nil
}

// parsedJWKS caches parsed JWK Sets by the SHA-256 of their bytes: a
// client is loaded on every token request and introspection, and parsing
// its keys is a pure function of the stored document (the client's status
// is still read every time). Sets are never modified once parsed.
var parsedJWKS struct {
	sync.Mutex
	m map[[sha256.Size]byte]*jose.JSONWebKeySet
}

// maxParsedJWKS bounds parsedJWKS; past it the cache starts afresh.
const maxParsedJWKS = 4096

func parseJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	sum := sha256.Sum256(raw)
	parsedJWKS.Lock()
	set, ok := parsedJWKS.m[sum]
	parsedJWKS.Unlock()
	if ok {
		return set, nil
	}
	set = new(jose.JSONWebKeySet)
	if err := json.Unmarshal(raw, set); err != nil {
		return nil, err
	}
	parsedJWKS.Lock()
	if parsedJWKS.m == nil || len(parsedJWKS.m) >= maxParsedJWKS {
		parsedJWKS.m = map[[sha256.Size]byte]*jose.JSONWebKeySet{}
	}
	parsedJWKS.m[sum] = set
	parsedJWKS.Unlock()
	return set, nil
}

func (c *client) GetID() string             { return string(c.c.ID) }
func (c *client) GetHashedSecret() []byte   { return nil }
func (c *client) GetRedirectURIs() []string { return c.c.RedirectURIs }
func (c *client) IsPublic() bool            { return false }
func (c *client) GetAudience() fosite.Arguments {
	return nil
}

func (c *client) GetGrantTypes() fosite.Arguments {
	if c.regulator != "" {
		return fosite.Arguments{"client_credentials"}
	}
	return fosite.Arguments{"authorization_code", "refresh_token", "client_credentials"}
}

func (c *client) GetResponseTypes() fosite.Arguments {
	if c.regulator != "" {
		return fosite.Arguments{}
	}
	return fosite.Arguments{"code"}
}

func (c *client) GetScopes() fosite.Arguments {
	if c.regulator != "" {
		return fosite.Arguments{ScopeAuditRead}
	}
	return fosite.Arguments{ScopeFirm}
}

func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

func (c *client) GetRequestURIs() []string                 { return nil }
func (c *client) GetJSONWebKeys() *jose.JSONWebKeySet      { return c.jwks }
func (c *client) GetJSONWebKeysURI() string                { return c.c.JWKSURI }
func (c *client) GetRequestObjectSigningAlgorithm() string { return "" }
func (c *client) GetTokenEndpointAuthMethod() string       { return "private_key_jwt" }
func (c *client) GetTokenEndpointAuthSigningAlgorithm() string {
	return c.c.TokenEndpointAuthSigningAlg
}
