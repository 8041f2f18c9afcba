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
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
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
	// cosign appends a cosignature/v1 line by the witness key skey.
	cosign := func(skey string) []byte {
		signer, err := fnote.NewSignerForCosignatureV1(skey)
		if err != nil {
			t.Fatal(err)
		}
		text := msg[:bytes.Index(msg, []byte("\n\n"))+1]
		signed, err := note.Sign(&note.Note{Text: string(text)}, signer)
		if err != nil {
			t.Fatal(err)
		}
		line := signed[bytes.LastIndex(signed[:len(signed)-1], []byte("\n"))+1:]
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
