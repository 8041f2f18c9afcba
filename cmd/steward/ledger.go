package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/store/backend"
)

// DefaultLedgerOrigin names the log in its checkpoints when none is configured.
const DefaultLedgerOrigin = "steward.local/ledger"

// loadOrCreateLedgerKey reads the log's signed-note private key from path,
// creating it (mode 0600) for origin on first start. It returns the signer
// and the public verifier key.
func loadOrCreateLedgerKey(path, origin string) (note.Signer, string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		skey, vkey, err := ledger.GenerateKey(origin)
		if err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(path, []byte(skey+"\n"+vkey+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("write ledger key: %w", err)
		}
		b = []byte(skey + "\n" + vkey + "\n")
	} else if err != nil {
		return nil, "", fmt.Errorf("read ledger key: %w", err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != 2 {
		return nil, "", fmt.Errorf("ledger key file %s: want the private key and the verifier key on two lines", path)
	}
	signer, err := note.NewSigner(lines[0])
	if err != nil {
		return nil, "", fmt.Errorf("ledger key file %s: %w", path, err)
	}
	if _, err := note.NewVerifier(lines[1]); err != nil {
		return nil, "", fmt.Errorf("ledger key file %s: %w", path, err)
	}
	return signer, lines[1], nil
}

// startLedger starts the sequencer and integrator and returns the public
// read handler (mounted at /ledger/) and a shutdown func.
func startLedger(ctx context.Context, c config, s backend.Migrator, log *slog.Logger) (*ledgerParts, error) {
	keyFile := c.LedgerKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(c.DataDir, "ledger.key")
	}
	signer, vkey, err := loadOrCreateLedgerKey(keyFile, c.LedgerOrigin)
	if err != nil {
		return nil, err
	}
	storage := s.Ledger()
	lg, shutdown, err := ledger.Start(ctx, storage, ledger.Config{Signer: signer, Logger: log})
	if err != nil {
		return nil, err
	}
	h, err := ledger.Handler(storage, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: vkey, Logger: log})
	if err != nil {
		_ = shutdown(context.Background())
		return nil, err
	}
	parts := &ledgerParts{handler: h, shutdown: shutdown, vkey: vkey, kick: lg.Kick}
	if keys := splitList(c.WitnessKeys); len(keys) > 0 {
		parts.cosignatures, err = ledger.CosignatureHandler(storage, ledger.CosignatureConfig{VerifierKey: vkey, WitnessKeys: keys, Logger: log})
		if err != nil {
			_ = shutdown(context.Background())
			return nil, fmt.Errorf("witness keys: %w", err)
		}
	}
	return parts, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

type ledgerParts struct {
	handler http.Handler
	// cosignatures receives witness cosignatures; nil when no witness is configured.
	cosignatures http.Handler
	shutdown     func(context.Context) error
	vkey         string
	// kick wakes the sequencer after a commit that staged entries.
	kick func()
}
