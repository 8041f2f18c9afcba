package oauth_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/store/backend/backendtest"
	"github.com/stewardhq/steward/broker/store/storetest"
)

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	e := newEnv(t, backendtest.Open(t, ""))
	for _, path := range []string{oauth.PathMetadata, oauth.PathOpenIDConfig} {
		var md map[string]any
		getJSON(t, e.srv.URL+path, &md)
		want := map[string]any{
			"issuer":                                           e.srv.URL,
			"pushed_authorization_request_endpoint":            e.srv.URL + oauth.PathPAR,
			"require_pushed_authorization_requests":            true,
			"code_challenge_methods_supported":                 []any{"S256"},
			"authorization_response_iss_parameter_supported":   true,
			"response_types_supported":                         []any{"code"},
			"token_endpoint_auth_methods_supported":            []any{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": []any{"ES256", "PS256", "EdDSA"},
		}
		for k, v := range want {
			if diff := cmp.Diff(v, md[k]); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", path, k, diff)
			}
		}
		if md["registration_endpoint"] == nil {
			t.Errorf("%s lacks registration_endpoint", path)
		}
		// DPoP is off in newEnv, so it is not advertised.
		if md["dpop_signing_alg_values_supported"] != nil {
			t.Errorf("%s advertises DPoP, which is off", path)
		}
	}
	var set jose.JSONWebKeySet
	getJSON(t, e.srv.URL+oauth.PathJWKS, &set)
	if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID == "" || set.Keys[0].Algorithm != "ES256" {
		t.Errorf("jwks: %+v", set.Keys)
	}
}

func TestRegistration(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		op := httptest.NewServer(e.p.Operator())
		t.Cleanup(op.Close)
		call := func(method, u, bearer string, body any) (int, map[string]any) {
			t.Helper()
			b, _ := json.Marshal(body)
			req, _ := http.NewRequest(method, u, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out := map[string]any{}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out
		}
		st, out := call(http.MethodPost, op.URL+"/firms/"+string(e.firm.ID)+"/initial-access-tokens", "", nil)
		if st != http.StatusCreated {
			t.Fatal(st, out)
		}
		iat := out["initial_access_token"].(string)

		// A pending firm gets no token.
		pending := storetest.NewFirm("Pending Ltd", "retail")
		pending.Status = broker.FirmPending
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateFirm(t.Context(), pending) }); err != nil {
			t.Fatal(err)
		}
		if st, out := call(http.MethodPost, op.URL+"/firms/"+string(pending.ID)+"/initial-access-tokens", "", nil); st != http.StatusForbidden {
			t.Errorf("token for a pending firm: %d %v", st, out)
		}

		c, jwks := newKeyClient(t, jose.EdDSA)
		meta := map[string]any{"client_name": "Acme shop", "redirect_uris": []string{redirectURI, "http://127.0.0.1:8080/cb"},
			"jwks": json.RawMessage(jwks), "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "EdDSA"}
		for name, tc := range map[string]struct {
			bearer string
			mod    func(map[string]any)
			status int
			code   string
		}{
			"no token":         {"", nil, http.StatusUnauthorized, "invalid_client"},
			"unknown token":    {"stia_nope", nil, http.StatusUnauthorized, "invalid_client"},
			"http redirect":    {iat, func(m map[string]any) { m["redirect_uris"] = []string{"http://firm.example/cb"} }, http.StatusBadRequest, "invalid_redirect_uri"},
			"fragment":         {iat, func(m map[string]any) { m["redirect_uris"] = []string{"https://firm.example/cb#x"} }, http.StatusBadRequest, "invalid_redirect_uri"},
			"no redirect":      {iat, func(m map[string]any) { delete(m, "redirect_uris") }, http.StatusBadRequest, "invalid_redirect_uri"},
			"secret auth":      {iat, func(m map[string]any) { m["token_endpoint_auth_method"] = "client_secret_basic" }, http.StatusBadRequest, "invalid_client_metadata"},
			"RS256":            {iat, func(m map[string]any) { m["token_endpoint_auth_signing_alg"] = "RS256" }, http.StatusBadRequest, "invalid_client_metadata"},
			"no keys":          {iat, func(m map[string]any) { delete(m, "jwks") }, http.StatusBadRequest, "invalid_client_metadata"},
			"both keys":        {iat, func(m map[string]any) { m["jwks_uri"] = "https://firm.example/jwks" }, http.StatusBadRequest, "invalid_client_metadata"},
			"http jwks_uri":    {iat, func(m map[string]any) { delete(m, "jwks"); m["jwks_uri"] = "http://firm.example/jwks" }, http.StatusBadRequest, "invalid_client_metadata"},
			"private key":      {iat, func(m map[string]any) { m["jwks"] = privateJWKS(t, c) }, http.StatusBadRequest, "invalid_client_metadata"},
			"implicit":         {iat, func(m map[string]any) { m["response_types"] = []string{"token"} }, http.StatusBadRequest, "invalid_client_metadata"},
			"unknown metadata": {iat, func(m map[string]any) { m["client_secret"] = "x" }, http.StatusBadRequest, "invalid_client_metadata"},
		} {
			m := map[string]any{}
			for k, v := range meta {
				m[k] = v
			}
			if tc.mod != nil {
				tc.mod(m)
			}
			st, out := call(http.MethodPost, e.srv.URL+oauth.PathRegister, tc.bearer, m)
			if st != tc.status || out["error"] != tc.code {
				t.Errorf("%s: %d %v, want %d %s", name, st, out, tc.status, tc.code)
			}
		}
		var before []broker.Client
		_ = s.View(t.Context(), func(tx store.Tx) (err error) { before, err = tx.ListClients(t.Context(), e.firm.ID); return err })
		if len(before) != 2 {
			t.Fatalf("refused registrations created clients: %d", len(before))
		}

		st, out = call(http.MethodPost, e.srv.URL+oauth.PathRegister, iat, meta)
		if st != http.StatusCreated || out["firm_id"] != string(e.firm.ID) || !strings.HasPrefix(out["client_id"].(string), "cli_") {
			t.Fatalf("register: %d %v", st, out)
		}
		c.id = broker.ClientID(out["client_id"].(string))
		tokenOK := func() bool {
			st, _ := e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"client_credentials"}}))
			return st == http.StatusOK
		}
		if !tokenOK() {
			t.Fatal("registered client cannot get a token")
		}
		if st, out := call(http.MethodPost, op.URL+"/clients/"+string(c.id)+"/suspend", "", nil); st != http.StatusOK {
			t.Fatal(st, out)
		}
		if tokenOK() {
			t.Error("suspended client got a token")
		}
		if st, out := call(http.MethodPost, op.URL+"/clients/"+string(c.id)+"/activate", "", nil); st != http.StatusOK || !tokenOK() {
			t.Errorf("activate: %d %v", st, out)
		}
		if st, _ := call(http.MethodDelete, op.URL+"/clients/"+string(c.id), "", nil); st != http.StatusNoContent || tokenOK() {
			t.Errorf("delete: %d", st)
		}
		if st, _ := call(http.MethodDelete, op.URL+"/clients/"+string(c.id), "", nil); st != http.StatusNotFound {
			t.Errorf("second delete: %d", st)
		}
	})
}

func privateJWKS(t *testing.T, c testClient) json.RawMessage {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: c.key, KeyID: "priv", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRegisteredSigningAlg: a client's registered
// token_endpoint_auth_signing_alg (RFC 7591) is stored, advertised in the
// registration response and enforced: an assertion signed with another
// accepted algorithm, by another of the client's own keys, is refused
// with invalid_client.
func TestRegisteredSigningAlg(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, s backend.Migrator) {
		e := newEnv(t, s)
		op := httptest.NewServer(e.p.Operator())
		t.Cleanup(op.Close)
		es, ed := keyPair(t, jose.ES256), keyPair(t, jose.EdDSA)
		set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{es.pub, ed.pub}})
		register := func(path string, m map[string]any) map[string]any {
			t.Helper()
			b, _ := json.Marshal(m)
			resp, err := http.Post(op.URL+path, "application/json", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out := map[string]any{}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("register: %d %v", resp.StatusCode, out)
			}
			return out
		}
		out := register("/firms/"+string(e.firm.ID)+"/clients", map[string]any{"client_name": "Acme ES256 only",
			"redirect_uris": []string{redirectURI}, "jwks": json.RawMessage(set), "token_endpoint_auth_signing_alg": "ES256"})
		if out["token_endpoint_auth_signing_alg"] != "ES256" {
			t.Errorf("registration response: %v, want token_endpoint_auth_signing_alg ES256", out)
		}
		id := broker.ClientID(out["client_id"].(string))
		var stored broker.Client
		if err := s.View(t.Context(), func(tx store.Tx) (err error) { stored, err = tx.GetClient(t.Context(), id); return err }); err != nil {
			t.Fatal(err)
		}
		if stored.TokenEndpointAuthSigningAlg != "ES256" {
			t.Errorf("stored alg = %q, want ES256", stored.TokenEndpointAuthSigningAlg)
		}
		token := func(k signingKey) (int, map[string]any) {
			c := testClient{id: id, key: k.priv, alg: k.alg, kid: k.pub.KeyID}
			return e.post(t, oauth.PathToken, e.authForm(t, c, url.Values{"grant_type": {"client_credentials"}}))
		}
		if st, out := token(es); st != http.StatusOK {
			t.Errorf("ES256 assertion: %d %v", st, out)
		}
		st, out := token(ed)
		wantError(t, "EdDSA assertion from an ES256-only client", st, out, http.StatusUnauthorized, "invalid_client")

		// A regulator's client keeps its algorithm too.
		reg := broker.Regulator{ID: broker.NewRegulatorID(), Name: "ICO", Jurisdiction: "GB", CreatedAt: storetest.Now}
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.CreateRegulator(t.Context(), reg) }); err != nil {
			t.Fatal(err)
		}
		out = register("/regulators/"+string(reg.ID)+"/clients", map[string]any{"client_name": "ICO EdDSA only",
			"jwks": json.RawMessage(set), "token_endpoint_auth_signing_alg": "EdDSA"})
		id = broker.ClientID(out["client_id"].(string))
		if st, out := token(ed); st != http.StatusOK {
			t.Errorf("regulator EdDSA assertion: %d %v", st, out)
		}
		st, out = token(es)
		wantError(t, "ES256 assertion from an EdDSA-only regulator client", st, out, http.StatusUnauthorized, "invalid_client")
	})
}

type signingKey struct {
	alg  jose.SignatureAlgorithm
	priv any
	pub  jose.JSONWebKey
}

// keyPair is a signing key whose public JWK names no alg, so only the
// client's registered algorithm can restrict it.
func keyPair(t *testing.T, alg jose.SignatureAlgorithm) signingKey {
	c, jwks := newKeyClient(t, alg)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	pub := set.Keys[0]
	pub.Algorithm = ""
	return signingKey{alg: alg, priv: c.key, pub: pub}
}
