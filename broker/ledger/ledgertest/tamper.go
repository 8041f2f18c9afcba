package ledgertest

import (
	"bytes"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tamperLogSize gives two full entry bundles and a partial one.
const tamperLogSize = 600

// BuildLog stages, sequences and integrates entries into s in one go and
// returns the latest checkpoint.
func BuildLog(t testing.TB, s ledger.Storage, signer note.Signer, entries [][]byte) ledger.Checkpoint {
	t.Helper()
	ctx := t.Context()
	if err := s.Stage(ctx, entries...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sequence(ctx, len(entries)); err != nil {
		t.Fatal(err)
	}
	c, _, err := ledger.Integrate(ctx, s, signer, len(entries)+1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testTamper(t *testing.T, newStorage func(*testing.T) ledger.Storage) {
	if _, ok := newStorage(t).(Tamperer); !ok {
		t.Skip("storage does not implement ledgertest.Tamperer")
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, s ledger.Storage, tt Tamperer, signer note.Signer, es [][]byte)
		kind   verify.Kind
		index  int64
		other  int64
	}{
		{"change entry bytes", func(t *testing.T, _ ledger.Storage, tt Tamperer, _ note.Signer, _ [][]byte) {
			tt.TamperSetLeaf(300, Entries(t, 1)[0])
		}, verify.EntryChanged, 300, 0},
		{"delete an entry", func(t *testing.T, _ ledger.Storage, tt Tamperer, _ note.Signer, _ [][]byte) {
			tt.TamperDeleteLeaf(300)
		}, verify.EntryMissing, 300, -1}, // how many depends on how the store lays out a gap
		{"swap two entries", func(t *testing.T, _ ledger.Storage, tt Tamperer, _ note.Signer, _ [][]byte) {
			tt.TamperSwapLeaves(100, 400)
		}, verify.EntriesReordered, 100, 400},
		{"truncate the tail", func(t *testing.T, _ ledger.Storage, tt Tamperer, _ note.Signer, _ [][]byte) {
			tt.TamperTruncate(550)
		}, verify.Truncated, 550, 50},
		{"replace the checkpoint signature", func(t *testing.T, s ledger.Storage, tt Tamperer, _ note.Signer, _ [][]byte) {
			_, msg, err := s.ReadCheckpoint(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			c, err := ledger.ParseCheckpoint(msg[:bytes.LastIndex(msg, []byte("\n\n"))+1])
			if err != nil {
				t.Fatal(err)
			}
			forger, _, _ := NewKey(t) // same name, other key
			forged, err := ledger.SignCheckpoint(c, forger)
			if err != nil {
				t.Fatal(err)
			}
			tt.TamperCheckpoint(forged)
		}, verify.BadSignature, -1, 0},
		{"fork: same size, other root", func(t *testing.T, s ledger.Storage, tt Tamperer, signer note.Signer, es [][]byte) {
			rewritten := append([][]byte(nil), es...)
			rewritten[5] = Entries(t, 1)[0]
			tt.TamperRewrite(nil)
			BuildLog(t, s, signer, rewritten)
		}, verify.Fork, -1, 0},
		{"inconsistent with the previous checkpoint", func(t *testing.T, s ledger.Storage, tt Tamperer, signer note.Signer, es [][]byte) {
			rewritten := append([][]byte(nil), es[1:]...)
			rewritten = append(rewritten, Entries(t, 10)...)
			tt.TamperRewrite(nil)
			BuildLog(t, s, signer, rewritten)
		}, verify.Inconsistent, -1, 0},
		{"rolled back below the previous checkpoint", func(t *testing.T, s ledger.Storage, tt Tamperer, signer note.Signer, es [][]byte) {
			tt.TamperRewrite(nil)
			BuildLog(t, s, signer, es[:500])
		}, verify.Truncated, 500, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStorage(t)
			signer, _, vkey := NewKey(t)
			es := Entries(t, tamperLogSize)
			BuildLog(t, s, signer, es)
			h, err := ledger.Handler(s, ledger.HandlerConfig{Prefix: "/ledger/", VerifierKey: vkey})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			src := verify.HTTPSource{BaseURL: srv.URL + "/ledger/", Client: srv.Client()}
			cfg := verify.Config{VerifierKey: vkey, StatePath: filepath.Join(t.TempDir(), "state.json")}

			rep, err := verify.Verify(t.Context(), src, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("untouched log fails verification:\n%s", rep)
			}
			tc.tamper(t, s, s.(Tamperer), signer, es)
			rep, err = verify.Verify(t.Context(), src, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", rep)
			found := false
			for _, p := range rep.Problems {
				if p.Kind == tc.kind && p.Index == tc.index && (tc.other < 0 || p.Other == tc.other) {
					found = true
				}
			}
			if !found {
				t.Errorf("want a %s problem at %d (other %d); got:\n%s", tc.kind, tc.index, tc.other, rep)
			}
		})
	}
	t.Run("receipt reveals a fork", func(t *testing.T) {
		s := newStorage(t)
		signer, _, vkey := NewKey(t)
		es := Entries(t, tamperLogSize)
		BuildLog(t, s, signer, es)
		rc, err := ledger.NewReceipt(t.Context(), s, tlog.RecordHash(es[42]))
		if err != nil {
			t.Fatal(err)
		}
		// The operator rewrites history and the verifier has no state,
		// but a firm kept its receipt.
		rewritten := append([][]byte(nil), es...)
		rewritten[42] = Entries(t, 1)[0]
		s.(Tamperer).TamperRewrite(nil)
		BuildLog(t, s, signer, rewritten)
		h, err := ledger.Handler(s, ledger.HandlerConfig{VerifierKey: vkey})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		rep, err := verify.Verify(t.Context(), verify.HTTPSource{BaseURL: srv.URL, Client: srv.Client()},
			verify.Config{VerifierKey: vkey, Receipts: []broker.Receipt{rc}})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Has(verify.Fork) || !rep.Has(verify.EntryChanged) {
			t.Errorf("want fork and entry-changed; got:\n%s", rep)
		}
	})
}
