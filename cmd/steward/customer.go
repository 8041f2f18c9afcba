package main

import (
	"log/slog"
	"net/http"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/customerapi"
	"github.com/stewardhq/steward/broker/export"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/policy"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/vault"
)

// customerAPI builds the customer API mounted at oauth.CustomerAPIPath.
// Its session is the authorization server's customer login; *op is read
// per request because the server starts only once the listener gives the
// issuer (until then, and when OAuth is off, nobody is signed in).
func customerAPI(s backend.Migrator, eng *policy.Engine, vlt *vault.Service, op **oauth.Provider, log *slog.Logger) (http.Handler, error) {
	exp, err := export.New(export.Config{Store: s, Vault: vlt.RecordsTx, Ledger: s.Ledger()})
	if err != nil {
		return nil, err
	}
	return customerapi.New(customerapi.Config{
		Store: s,
		Authenticate: func(r *http.Request) (broker.CustomerID, bool) {
			if *op == nil {
				return "", false
			}
			return (*op).Customer(r)
		},
		CheckCSRF: func(r *http.Request) bool { return *op != nil && (*op).CheckCustomerCSRF(r) },
		CSRFToken: func(r *http.Request) string {
			if *op == nil {
				return ""
			}
			return (*op).CustomerCSRFToken(r)
		},
		Consents: consentService(s, eng),
		Vault:    vlt,
		Export:   exp,
		Ledger:   s.Ledger(),
		Logger:   log,
	})
}
