package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// parallel runs f(0..n-1) with at most k at a time and returns the first error.
func parallel(ctx context.Context, n, k int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, k)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// fetchWidest fetches tile t, or if it is not served, the widest narrower
// version of it that is (an honest log serves every width up to what its
// tree has). It returns nil data if not even width 1 is served.
func fetchWidest(ctx context.Context, src Source, t ledger.TileRef) ([]byte, int, error) {
	b, err := src.Fetch(ctx, t.Path())
	if err == nil {
		return b, t.Width, nil
	}
	if !errors.Is(err, broker.ErrNotFound) {
		return nil, 0, err
	}
	lo, hi := 0, t.Width // lo is served (or 0), hi is not
	var best []byte
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		p := t
		p.Width = mid
		b, err := src.Fetch(ctx, p.Path())
		switch {
		case err == nil:
			lo, best = mid, b
		case errors.Is(err, broker.ErrNotFound):
			hi = mid
		default:
			return nil, 0, err
		}
	}
	return best, lo, nil
}

// fetchEntries fetches every entry bundle of a tree of size size, parses
// each entry strictly and returns the leaf hashes of the entries served, in
// order. Entry bytes are dropped as soon as they are hashed, so memory
// grows with 32 bytes per entry. Missing or malformed bundles shorten the
// list; align names the entries that are then absent.
func fetchEntries(ctx context.Context, src Source, size int64, k int, rep *Report) ([]tlog.Hash, error) {
	nb := int((size + ledger.TileWidth - 1) / ledger.TileWidth)
	bundles := make([][]tlog.Hash, nb)
	var mu sync.Mutex
	err := parallel(ctx, nb, k, func(ctx context.Context, i int) error {
		w := min(ledger.TileWidth, int(size-int64(i)*ledger.TileWidth))
		t := ledger.TileRef{Level: -1, Index: int64(i), Width: w}
		b, got, err := fetchWidest(ctx, src, t)
		if err != nil {
			return err
		}
		es, err := ledger.ParseEntryBundle(b)
		var problems []Problem
		switch {
		case err != nil:
			problems = append(problems, Problem{Kind: BadBundle, Index: int64(i) * ledger.TileWidth, Detail: fmt.Sprintf("%s: %v", t.Path(), err)})
			es = nil
		case len(es) != got:
			problems = append(problems, Problem{Kind: BadBundle, Index: int64(i) * ledger.TileWidth, Detail: fmt.Sprintf("%s holds %d entries, not %d", t.Path(), len(es), got)})
			es = es[:min(len(es), got)]
		}
		hashes := make([]tlog.Hash, len(es))
		for j, e := range es {
			hashes[j] = tlog.RecordHash(e)
			if _, err := broker.ParseEntry(e); err != nil {
				problems = append(problems, Problem{Kind: BadEntry, Index: int64(i)*ledger.TileWidth + int64(j), Detail: err.Error()})
			}
		}
		mu.Lock()
		defer mu.Unlock()
		bundles[i] = hashes
		rep.Problems = append(rep.Problems, problems...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: fetch entries: %w", err)
	}
	all := make([]tlog.Hash, 0, size)
	for _, b := range bundles {
		all = append(all, b...)
	}
	return all, nil
}

// fetchLevel0 fetches the level-0 hash tiles, the leaf hashes the log
// claims. It returns nil if any is missing or malformed.
func fetchLevel0(ctx context.Context, src Source, size int64, k int) ([]tlog.Hash, error) {
	nt := int((size + ledger.TileWidth - 1) / ledger.TileWidth)
	tiles := make([][]byte, nt)
	err := parallel(ctx, nt, k, func(ctx context.Context, i int) error {
		w := min(ledger.TileWidth, int(size-int64(i)*ledger.TileWidth))
		b, err := src.Fetch(ctx, ledger.TilePath(0, int64(i), w))
		if errors.Is(err, broker.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(b) == w*tlog.HashSize {
			tiles[i] = b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: fetch tiles: %w", err)
	}
	hashes := make([]tlog.Hash, 0, size)
	for _, b := range tiles {
		if b == nil {
			return nil, nil
		}
		for off := 0; off < len(b); off += tlog.HashSize {
			hashes = append(hashes, tlog.Hash(b[off:off+tlog.HashSize]))
		}
	}
	return hashes, nil
}

// compareTiles checks every served Merkle tile against the rebuilt tree.
func compareTiles(ctx context.Context, src Source, size int64, t *tree, k int, rep *Report) error {
	var refs []ledger.TileRef
	for _, r := range ledger.Tiles(size) {
		if r.Level >= 0 {
			refs = append(refs, r)
		}
	}
	var mu sync.Mutex
	err := parallel(ctx, len(refs), k, func(ctx context.Context, i int) error {
		r := refs[i]
		want, err := tlog.ReadTileData(tlog.Tile{H: ledger.TileHeight, L: r.Level, N: r.Index, W: r.Width}, t.reader())
		if err != nil {
			return err
		}
		got, err := src.Fetch(ctx, r.Path())
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		if !bytes.Equal(got, want) {
			mu.Lock()
			rep.add(TileMismatch, r.Index*ledger.TileWidth<<(ledger.TileHeight*r.Level), 0, "%s does not match the entries", r.Path())
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify: compare tiles: %w", err)
	}
	return nil
}
