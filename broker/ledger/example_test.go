package ledger_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/memory"
	"golang.org/x/mod/sumdb/note"
)

func ExampleTilePath() {
	fmt.Println(ledger.TilePath(0, 1234067, 256))
	fmt.Println(ledger.TilePath(0, 1234067, 8))
	fmt.Println(ledger.EntriesPath(5, 200))
	// Output:
	// tile/0/x001/x234/067
	// tile/0/x001/x234/067.p/8
	// tile/entries/005.p/200
}

func ExampleTiles() {
	// Everything a tree of 600 entries publishes.
	for _, t := range ledger.Tiles(600) {
		fmt.Println(t.Path())
	}
	// Output:
	// tile/0/000
	// tile/entries/000
	// tile/0/001
	// tile/entries/001
	// tile/0/002.p/88
	// tile/entries/002.p/88
	// tile/1/000.p/2
}

// Example shows the life of an entry: stage it, let the sequencer and
// integrator run, then build a receipt and check it offline.
func Example() {
	ctx := context.Background()
	skey, vkey, _ := ledger.GenerateKey("steward.example/ledger")
	signer, _ := note.NewSigner(skey)
	logKey, _ := note.NewVerifier(vkey)

	s := memory.New() // store/postgres or store/sqlite in production
	l, shutdown, err := ledger.Start(ctx, s, ledger.Config{Signer: signer})
	if err != nil {
		panic(err)
	}
	defer shutdown(ctx)

	e := broker.Entry{Type: broker.EntryFirmRegistered, Time: time.Now(), Firm: broker.NewFirmID()}
	b, _ := e.CanonicalBytes()
	hashes, err := l.Stage(ctx, b)
	if err != nil {
		panic(err)
	}
	for {
		rc, err := ledger.NewReceipt(ctx, s, hashes[0])
		if err == nil && rc.Integrated() {
			c, err := ledger.VerifyReceipt(rc, b, logKey)
			fmt.Println(rc.Index, c.Origin, c.Size, err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Output: 0 steward.example/ledger 1 <nil>
}
