package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/backend"
	"github.com/stewardhq/steward/broker/vault"
)

// TestDemoSeedsSealedVault checks that the demo creates the master key
// file (0600), seals every demo vault record, and that the vault opens
// with the key file and with nothing else.
func TestDemoSeedsSealedVault(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes demo passwords")
	}
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data")
	creds, err := loadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	vcfg, err := loadVaultKey(config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v, %v; want mode 0600", st, err)
	}
	for range 2 { // the second run finds everything seeded
		if err := seedDemo(ctx, dir, creds, vcfg); err != nil {
			t.Fatal(err)
		}
	}
	s, _, err := backend.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := vault.New(s, vcfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range demoCustomers {
		var sealed int
		var id string
		err := s.View(ctx, func(tx store.Tx) error {
			c, err := tx.GetCustomerByHandle(ctx, dc.handle)
			if err != nil {
				return err
			}
			id = string(c.ID)
			recs, err := tx.ListRecords(ctx, c.ID)
			for _, r := range recs {
				if bytes.Contains(r.Sealed, []byte(dc.email)) {
					t.Errorf("%s's %s record is stored in plaintext", dc.handle, r.Category)
				}
			}
			sealed = len(recs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := v.Records(ctx, broker.CustomerID(id))
		if err != nil || len(recs) != len(dc.vault) || sealed != len(dc.vault) {
			t.Errorf("%s: %d sealed, %d opened (%v); want %d", dc.handle, sealed, len(recs), err, len(dc.vault))
		}
	}
}
