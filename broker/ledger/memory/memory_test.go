package memory_test

import (
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
)

var (
	_ ledger.Storage      = (*memory.Storage)(nil)
	_ ledgertest.Tamperer = (*memory.Storage)(nil)
)

func TestConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) ledger.Storage { return memory.New() })
}
