package ledgertest

import (
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
)

func testTamper(t *testing.T, newStorage func(*testing.T) ledger.Storage) {
	if _, ok := newStorage(t).(Tamperer); !ok {
		t.Skip("storage does not implement ledgertest.Tamperer")
	}
}
