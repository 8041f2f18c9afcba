package dpop_test

import (
	"encoding/json"
	"fmt"

	"github.com/go-jose/go-jose/v3"

	"github.com/stewardhq/steward/broker/oauth/dpop"
)

// The thumbprint of a client's public key is the value a token's cnf.jkt
// and the dpop_jkt parameter carry (RFC 7638 §3.1 example key).
func ExampleThumbprint() {
	var k jose.JSONWebKey
	_ = json.Unmarshal([]byte(`{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`), &k)
	jkt, err := dpop.Thumbprint(&k)
	fmt.Println(jkt, err)
	// Output: NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs <nil>
}

// A resource server answers a refused request with 401 and this challenge.
func ExampleWWWAuthenticate() {
	err := dpop.ErrInvalidToken.WithHint("Invalid DPoP key binding.")
	fmt.Println(dpop.WWWAuthenticate(err, []string{"ES256", "EdDSA"}))
	// Output: DPoP error="invalid_token", error_description="The access token is missing, invalid, or not bound to the presented DPoP key.", algs="ES256 EdDSA"
}
