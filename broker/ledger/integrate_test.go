package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// countingStore counts ReadHashes calls.
type countingStore struct {
	*memory.Storage
	reads int
}

func (c *countingStore) ReadHashes(ctx context.Context, idx []int64) ([]tlog.Hash, error) {
	c.reads++
	return c.Storage.ReadHashes(ctx, idx)
}

func TestIntegrateReadsOldHashesOnce(t *testing.T) {
	s := &countingStore{Storage: memory.New()}
	signer, _, _ := ledgertest.NewKey(t)
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 12345))
	for _, n := range []int{1, 7, 1000} {
		if err := s.Stage(t.Context(), ledgertest.Entries(t, n)...); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sequence(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		s.reads = 0
		if _, _, err := ledger.Integrate(t.Context(), s, signer, n); err != nil {
			t.Fatal(err)
		}
		if s.reads != 1 {
			t.Errorf("integrating %d entries read stored hashes %d times, want 1", n, s.reads)
		}
	}
}

func TestIntegrateRefusesAnotherOrigin(t *testing.T) {
	s := memory.New()
	signer, _, _ := ledgertest.NewKey(t)
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 3))
	skey, _, err := ledger.GenerateKey("other.test/log")
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stage(t.Context(), ledgertest.Entries(t, 1)...); err != nil {
		t.Fatal(err)
	}
	s.Sequence(t.Context(), 1)
	if _, _, err := ledger.Integrate(t.Context(), s, other, 10); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("Integrate with another log's key: %v", err)
	}
	if _, _, err := ledger.Integrate(t.Context(), s, signer, 0); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("Integrate with limit 0: %v", err)
	}
}
