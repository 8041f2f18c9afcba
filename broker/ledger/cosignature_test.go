package ledger_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/ledgertest"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"github.com/stewardhq/steward/broker/ledger/witness"
)

func TestCosignatureHandlerRefuses(t *testing.T) {
	signer, _, vkey := ledgertest.NewKey(t)
	s := memory.New()
	ledgertest.BuildLog(t, s, signer, ledgertest.Entries(t, 3))
	_, msg, _ := s.ReadCheckpoint(t.Context())
	wskey, wvkey, _ := witness.GenerateKey("witness.a")
	oskey, _, _ := witness.GenerateKey("witness.b")
	h, err := ledger.CosignatureHandler(s, ledger.CosignatureConfig{VerifierKey: vkey, WitnessKeys: []string{wvkey}})
	if err != nil {
		t.Fatal(err)
	}
	cosign := func(skey string) []byte {
		w, err := witness.New(witness.Config{Key: skey, Logs: []string{vkey}})
		if err != nil {
			t.Fatal(err)
		}
		line, err := w.Add(t.Context(), 0, nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]byte{}, msg...), line...)
	}
	good, unknown := cosign(wskey), cosign(oskey)
	forged := bytes.Replace(good, []byte("\n3\n"), []byte("\n4\n"), 1)
	tests := []struct {
		name string
		body []byte
		code int
	}{
		{"cosigned", good, http.StatusNoContent},
		{"log signature only", msg, http.StatusForbidden},
		{"unknown witness", unknown, http.StatusForbidden},
		{"altered checkpoint", forged, http.StatusForbidden},
		{"not a note", []byte("hello"), http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ledger/cosignature", bytes.NewReader(tc.body)))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
		})
	}
	cs, err := s.ReadCosignatures(t.Context(), 3)
	if err != nil || len(cs) != 1 || !bytes.HasPrefix(cs[0], []byte("— witness.a ")) {
		t.Errorf("stored cosignatures %q (%v)", cs, err)
	}
}
