package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/oauth"
	"github.com/stewardhq/steward/broker/password"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/vault"
)

// demoCredentials are generated on the first demo run and kept in the data
// directory, so a restarted demo prints the same tokens.
type demoCredentials struct {
	OperatorToken  string `json:"operator_token"`
	RegulatorToken string `json:"regulator_token"`
	// InitialAccessToken lets the demo retail firm register OAuth clients
	// (RFC 7591); only its hash is in the database.
	InitialAccessToken string            `json:"initial_access_token"`
	Passwords          map[string]string `json:"customer_passwords"`
}

const credentialsFile = "demo-credentials.json"

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs, cf := flagSet("demo", "Start Steward on the embedded SQLite store in --data-dir, seeded with demo customers,\nfirms and a regulator, and print the URLs to open and the demo logins.", &c, stderr,
		"addr", "data-dir", "log-level", "log-format", "shutdown-timeout", "ledger-origin", "policy-dir", "master-key-file")
	c.LogFormat = "text"
	if err := parseConfig(fs, cf, args); err != nil {
		return helpOK(err)
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	creds, err := loadOrCreateCredentials(c.DataDir)
	if err != nil {
		return err
	}
	c.OperatorToken, c.RegulatorToken = creds.OperatorToken, creds.RegulatorToken
	c.MaxBody = 1 << 20
	c.OAuthJWKSAllowLoopback = true // demo firms may serve their keys on this machine
	vcfg, err := loadVaultKey(c)
	if err != nil {
		return err
	}
	if err := seedDemo(ctx, c.DataDir, creds, vcfg); err != nil {
		return fmt.Errorf("seed demo data: %w", err)
	}
	if err := seedDemoHistory(ctx, c.DataDir, creds); err != nil {
		return fmt.Errorf("seed demo history: %w", err)
	}
	return serve(ctx, c, log, func(base string) { printDemo(stdout, base, c.DataDir, creds) })
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func loadOrCreateCredentials(dir string) (demoCredentials, error) {
	path := filepath.Join(dir, credentialsFile)
	var creds demoCredentials
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &creds); err != nil {
			return creds, fmt.Errorf("%s: %w", path, err)
		}
		return creds, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return creds, err
	}
	creds = demoCredentials{OperatorToken: randomToken(), RegulatorToken: randomToken(), Passwords: map[string]string{}}
	creds.InitialAccessToken, _ = oauth.NewInitialAccessToken()
	for _, c := range demoCustomers {
		creds.Passwords[c.handle] = c.handle + "-" + randomToken()[:8]
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return creds, err
	}
	b, _ = json.MarshalIndent(creds, "", "  ")
	return creds, os.WriteFile(path, b, 0o600)
}

type demoCustomer struct {
	handle, name, email, jurisdiction string
	minor                             bool
	vault                             map[string]string
}

var demoCustomers = []demoCustomer{
	{handle: "alice", name: "Alice Moreau", email: "alice@example.org", jurisdiction: "GB", vault: map[string]string{
		"Contact":                   `{"email":"alice@example.org","phone":"+44 20 7946 0018","address":"12 Elm Row, London N1 2AB"}`,
		"Demographic":               `{"birth_year":1988,"household_size":3}`,
		"PurchasesAndSpendingHabit": `{"purchases":[{"merchant":"Acme Retail","category":"groceries","amount":2140.55,"currency":"GBP","date":"2026-10-31"},{"merchant":"Acme Retail","category":"garden","amount":310.00,"currency":"GBP","date":"2026-06-30"}]}`,
		"Preference":                `{"contact_by":"email","interests":["cycling","cooking","gardening"]}`,
		"Financial":                 `{"income_band":"40-60k GBP","credit_score_band":"good"}`,
		"Location":                  `{"home_region":"London","recent":[{"city":"Brighton","month":"2026-10"}]}`,
	}},
	{handle: "bruno", name: "Bruno Keller", email: "bruno@example.de", jurisdiction: "DE", vault: map[string]string{
		"Contact":    `{"email":"bruno@example.de","phone":"+49 30 901820"}`,
		"Preference": `{"contact_by":"post","interests":["hiking","jazz"]}`,
		"Health":     `{"allergies":["penicillin"]}`,
	}},
	{handle: "chloe", name: "Chloé Dubois", email: "chloe@example.fr", jurisdiction: "FR", minor: true, vault: map[string]string{
		"Contact":    `{"email":"chloe@example.fr"}`,
		"Preference": `{"interests":["football","music"]}`,
	}},
}

var demoFirms = []struct {
	name, sector, jurisdiction string
	status                     broker.FirmStatus
}{
	{"Acme Retail Ltd", "retail", "GB", broker.FirmApproved},
	{"Northwind Bank plc", "financial", "GB", broker.FirmApproved},
	{"Globex Versicherung AG", "insurance", "DE", broker.FirmApproved},
	{"Umbrella Health Research BV", "research", "NL", broker.FirmApproved},
	{"Initech Télécom SA", "telecom", "FR", broker.FirmPending},
}

// seedDemo fills an empty store with demo data, sealing each customer's
// vault. If the demo customers already exist it only seeds the vaults that
// are empty (as they are after migration 0006 dropped plaintext records).
func seedDemo(ctx context.Context, dataDir string, creds demoCredentials, vcfg vault.Config) error {
	s, _, err := backend.Open(ctx, "", dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	vlt, err := vault.New(s, vcfg)
	if err != nil {
		return err
	}
	hashes := map[string]string{}
	for _, c := range demoCustomers {
		h, err := password.Hash(creds.Passwords[c.handle], password.Default)
		if err != nil {
			return err
		}
		hashes[c.handle] = h
	}
	now := time.Now().UTC()
	seedVault := func(tx store.Tx, id broker.CustomerID, dc demoCustomer) error {
		if recs, err := tx.ListRecords(ctx, id); err != nil || len(recs) > 0 {
			return err
		}
		for cat, v := range dc.vault {
			if err := vlt.PutTx(ctx, tx, broker.Record{CustomerID: id, Category: cat, Value: json.RawMessage(v), Source: "customer", UpdatedAt: now}); err != nil {
				return err
			}
		}
		return nil
	}
	return s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetCustomerByHandle(ctx, demoCustomers[0].handle); err == nil {
			for _, dc := range demoCustomers {
				c, err := tx.GetCustomerByHandle(ctx, dc.handle)
				if err != nil {
					return err
				}
				if err := seedVault(tx, c.ID, dc); err != nil {
					return err
				}
			}
			return nil
		} else if !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		for _, dc := range demoCustomers {
			c := broker.Customer{ID: broker.NewCustomerID(), Handle: dc.handle, DisplayName: dc.name, Email: dc.email,
				Jurisdiction: dc.jurisdiction, Minor: dc.minor, PasswordHash: hashes[dc.handle], CreatedAt: now}
			if err := tx.CreateCustomer(ctx, c); err != nil {
				return err
			}
			if err := seedVault(tx, c.ID, dc); err != nil {
				return err
			}
		}
		for _, df := range demoFirms {
			f := broker.Firm{ID: broker.NewFirmID(), LegalName: df.name, Sector: df.sector, Jurisdiction: df.jurisdiction,
				Status: df.status, CreatedAt: now, UpdatedAt: now}
			if err := tx.CreateFirm(ctx, f); err != nil {
				return err
			}
		}
		return tx.CreateRegulator(ctx, broker.Regulator{ID: broker.NewRegulatorID(), Name: "Information Commissioner's Office", Jurisdiction: "GB", CreatedAt: now})
	})
}

func printDemo(w io.Writer, base, dataDir string, creds demoCredentials) {
	fmt.Fprintf(w, "\nSteward demo is running at %s (SQLite: %s)\n\n", base, filepath.Join(dataDir, backend.SQLiteFile))
	fmt.Fprintln(w, "Open:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  readiness\t%s/readyz\n", base)
	fmt.Fprintf(tw, "  metrics\t%s/metrics\n", base)
	fmt.Fprintf(tw, "  ledger checkpoint\t%s/ledger/checkpoint   (verifier key: %s/ledger/vkey)\n", base, base)
	fmt.Fprintf(tw, "  operator API\t%s/v1/admin/firms   (Authorization: Bearer <operator token>)\n", base)
	fmt.Fprintf(tw, "  audit API\t%s/v1/audit/reports   (Authorization: Bearer <regulator token>)\n", base)
	fmt.Fprintf(tw, "  share codes\t%s%s   (a customer signs in and makes one; a firm sends it to %s%s)\n", base, oauth.PathShareCodes, base, oauth.PathBackchannel)
	fmt.Fprintf(tw, "  pending requests\t%s%s\n", base, oauth.PathAccountRequests)
	fmt.Fprintf(tw, "  customer API\t%s/v1/me   (sign in at %s%s, then GET %s%s; see docs/api.md)\n", base, base, oauth.PathAccountLogin, base, oauth.PathCustomerSession)
	fmt.Fprintf(tw, "  Data API\t%s/v1/consents/{id}/data   (DPoP-bound token from the OAuth flow; see docs/data-api.md)\n", base)
	tw.Flush()
	fmt.Fprintln(w, "\nDemo logins:")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  operator token\t%s\n", creds.OperatorToken)
	fmt.Fprintf(tw, "  regulator token\t%s\n", creds.RegulatorToken)
	if creds.InitialAccessToken != "" {
		fmt.Fprintf(tw, "  registration token\t%s   (Acme Retail Ltd: POST %s/oauth/register)\n", creds.InitialAccessToken, base)
	}
	for _, c := range demoCustomers {
		note := ""
		if c.minor {
			note = "  (flagged as a minor)"
		}
		fmt.Fprintf(tw, "  customer %s\tpassword %s%s\n", c.handle, creds.Passwords[c.handle], note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nTry:\n  curl -H 'Authorization: Bearer %s' %s/v1/admin/firms\n\nPress Ctrl-C to stop. Data stays in %s; delete it to start afresh.\n",
		creds.OperatorToken, base, dataDir)
}
