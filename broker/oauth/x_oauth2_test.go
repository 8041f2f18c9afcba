package oauth_test

import (
	"errors"
	"net/http"
	"testing"

	"golang.org/x/oauth2"

	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
)

// TestStandardClient redeems a code with golang.org/x/oauth2, as a firm's
// Go integration would: PKCE verifier option and the private_key_jwt
// assertion as extra token request parameters.
func TestStandardClient(t *testing.T) {
	e := newEnv(t, backendtest.Open(t, ""))
	code, pk := e.code(t)
	conf := oauth2.Config{
		ClientID:    string(e.client.id),
		RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + oauth.PathAuthorize, TokenURL: e.srv.URL + oauth.PathToken,
			AuthStyle: oauth2.AuthStyleInParams},
	}
	tok, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(pk.verifier),
		oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
		oauth2.SetAuthURLParam("client_assertion", e.assertion(t, e.client, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Valid() || tok.RefreshToken == "" || tok.Type() != "Bearer" {
		t.Fatalf("token: %+v", tok)
	}
	info, err := e.p.IntrospectAccessToken(t.Context(), tok.AccessToken)
	if err != nil || info.ClientID != string(e.client.id) || info.Session.ConsentID == "" {
		t.Fatalf("introspect: %+v %v", info, err)
	}
	// Without the assertion the standard client is refused.
	_, err = conf.Exchange(t.Context(), code, oauth2.VerifierOption(pk.verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
		t.Errorf("exchange without client authentication: %v", err)
	}
}
