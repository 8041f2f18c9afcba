package main

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/dataapi"
	"github.com/stewardhq/steward/broker/store"
	"github.com/stewardhq/steward/broker/store/postgres/pgtest"
)

// TestDisclosureCrashSafety kills `steward serve` with SIGKILL at random
// moments while a firm streams Data API fetches, restarts it, and checks
// DESIGN.md's second invariant against the tables: every disclosure row
// has exactly one ledger entry with the same leaf hash, every disclosure
// entry has its row, and every response the firm received (200 with a
// body) names a disclosure that is both in the table and in the ledger.
func TestDisclosureCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly")
	}
	bin := buildBinary(t)
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -crash_seed=%d)", seed, seed)
	t.Run("sqlite", func(t *testing.T) {
		disclosureCrashRounds(t, bin, rand.New(rand.NewPCG(seed, 3)), t.TempDir(), "")
	})
	t.Run("postgres", func(t *testing.T) {
		disclosureCrashRounds(t, bin, rand.New(rand.NewPCG(seed, 4)), t.TempDir(), pgtest.URL(t))
	})
}

// fetchStream fetches from several goroutines until stop closes and
// returns the disclosures acknowledged with a complete 200 body.
func fetchStream(t *testing.T, e *dataEnv, id broker.ConsentID, token string, stop <-chan struct{}) []dataapi.Disclosed {
	var (
		mu   sync.Mutex
		out  []dataapi.Disclosed
		wg   sync.WaitGroup
		errs []string
	)
	for range crashWriters {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := e.client.Do(t.Context(), http.MethodGet, "/v1/consents/"+string(id)+"/data", nil, nil, token)
				if err != nil {
					continue // killed mid-request: outcome unknown, which is allowed
				}
				var d dataapi.Disclosed
				mu.Lock()
				switch {
				case r.Status == http.StatusOK && r.JSON(&d) == nil:
					out = append(out, d)
				case r.Status == http.StatusOK:
					// cut off mid-body by the kill
				default:
					errs = append(errs, string(r.Body))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Errorf("fetch refused: %s", e)
	}
	return out
}

func disclosureCrashRounds(t *testing.T, bin string, rng *rand.Rand, dir, dbURL string) {
	e := seedDataEnv(t, dir, dbURL)
	s := startCrashServer(t, bin, dir, dbURL)
	e.setBase(s.base)
	tok, id := e.consentToken(t, e.client, e.alice, details("P30D", 1000000), "Contact", "Preference")
	s.kill()

	acked := map[broker.DisclosureID]dataapi.Disclosed{}
	for round := range crashRoundsN {
		s := startCrashServer(t, bin, dir, dbURL)
		e.setBase(s.base)
		stop := make(chan struct{})
		got := make(chan []dataapi.Disclosed)
		go func() { got <- fetchStream(t, e, id, tok.AccessToken, stop) }()
		alive := crashMinAlive + time.Duration(rng.Int64N(int64(crashMaxAlive-crashMinAlive)))
		time.Sleep(alive)
		s.kill()
		close(stop)
		ds := <-got
		for _, d := range ds {
			acked[d.DisclosureID] = d
		}
		t.Logf("round %d: killed after %v, %d disclosures acknowledged", round, alive.Round(time.Millisecond), len(ds))
	}
	s = startCrashServer(t, bin, dir, dbURL)
	size := waitForStableCheckpoint(t, s.base)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.exited

	ctx := t.Context()
	leaves, err := e.st.Ledger().ReadLeaves(ctx, 0, int(size))
	if err != nil {
		t.Fatal(err)
	}
	inLog := map[broker.DisclosureID]string{}
	for i, b := range leaves {
		ent, err := broker.ParseEntry(b)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if ent.Type != broker.EntryDisclosure {
			continue
		}
		if _, dup := inLog[ent.Disclosure]; dup {
			t.Errorf("disclosure %s has two entries", ent.Disclosure)
		}
		inLog[ent.Disclosure] = leafHash(tlog.RecordHash(b))
	}
	rows := map[broker.DisclosureID]bool{}
	p := store.Page{Limit: store.MaxLimit}
	for {
		var page []broker.Disclosure
		if err := e.st.View(ctx, func(tx store.Tx) (err error) { page, err = tx.ListDisclosures(ctx, e.alice.ID, p); return err }); err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			rows[d.ID] = true
			if h, ok := inLog[d.ID]; !ok {
				t.Errorf("disclosure %s has no ledger entry", d.ID)
			} else if h != d.ReceiptID {
				t.Errorf("disclosure %s: row's leaf hash %s, ledger's %s", d.ID, d.ReceiptID, h)
			}
		}
		if len(page) < p.N() {
			break
		}
		p.After = string(page[len(page)-1].ID)
	}
	for id := range inLog {
		if !rows[id] {
			t.Errorf("ledger entry for disclosure %s without its row", id)
		}
	}
	for id, d := range acked {
		if !rows[id] || inLog[id] == "" || inLog[id] != d.Receipt.LeafHash {
			t.Errorf("disclosure %s was sent to the firm but is not on record with its entry", id)
		}
	}
	if len(acked) == 0 {
		t.Error("no disclosure was acknowledged in any round; the test proved nothing")
	}
	t.Logf("%d disclosures acknowledged, %d rows, %d in the ledger of %d entries", len(acked), len(rows), len(inLog), size)
}

func leafHash(h tlog.Hash) string { return dataapi.LeafHash(h) }
