package ledger_test

import (
	"fmt"

	"github.com/stewardhq/steward/broker/ledger"
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
