package witness

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/stewardhq/steward/broker/ledger"
	"github.com/stewardhq/steward/broker/ledger/verify"
	"golang.org/x/mod/sumdb/tlog"
)

// Follower lets a witness pull instead of waiting to be pushed: it reads a
// log's checkpoint and tiles from a Source, proves consistency with the
// last cosigned checkpoint itself from the tiles, and cosigns.
type Follower struct {
	Witness *Witness
	// Source reads the log, e.g. verify.HTTPSource{BaseURL: ".../ledger/"}.
	Source verify.Source
}

// Step cosigns the log's current checkpoint if it is consistent with the
// last one the witness cosigned. It returns the checkpoint note and the
// cosignature line, which the caller publishes or hands to the log
// (Storage.AddCosignature).
func (f *Follower) Step(ctx context.Context) (checkpoint, cosignature []byte, err error) {
	msg, err := f.Source.Fetch(ctx, "checkpoint")
	if err != nil {
		return nil, nil, fmt.Errorf("follow: %w", err)
	}
	text := msg
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		text = msg[:i+1]
	}
	c, err := ledger.ParseCheckpoint(text)
	if err != nil {
		return nil, nil, fmt.Errorf("follow: %w", err)
	}
	var old int64
	if last, ok := f.Witness.Last(c.Origin); ok {
		old = last.Size
	}
	var proof tlog.TreeProof
	if old > 0 && old < c.Size {
		tr := tileReader{ctx: ctx, src: f.Source}
		proof, err = tlog.ProveTree(c.Size, old, tlog.TileHashReader(tlog.Tree{N: c.Size, Hash: c.Hash}, tr))
		if err != nil {
			return nil, nil, fmt.Errorf("follow %s: consistency proof %d -> %d from tiles: %w", c.Origin, old, c.Size, err)
		}
	}
	line, err := f.Witness.AddCheckpoint(ctx, old, proof, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("follow %s: %w", c.Origin, err)
	}
	return msg, line, nil
}

// tileReader reads c2sp.org/tlog-tiles hash tiles for tlog.TileHashReader,
// which checks them against the tree before using any.
type tileReader struct {
	ctx context.Context
	src verify.Source
}

func (tileReader) Height() int { return ledger.TileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.src.Fetch(r.ctx, ledger.TilePath(t.L, t.N, t.W))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// Start runs Step every interval until shutdown, handing each cosignature
// to publish (for example, posting it back to the log or serving it from
// the witness). Failures, including refusals to cosign a fork, are logged
// at Error: a regulator's witness refusing is news.
func (f *Follower) Start(ctx context.Context, interval time.Duration, publish func(ctx context.Context, checkpoint, cosignature []byte) error, log *slog.Logger) func(context.Context) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			cp, line, err := f.Step(ctx)
			if err == nil && publish != nil {
				err = publish(ctx, cp, line)
			}
			if err != nil && ctx.Err() == nil {
				log.LogAttrs(ctx, slog.LevelError, "witness follow step failed", slog.Any(logKeyError, err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func(sctx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-sctx.Done():
			return fmt.Errorf("witness follower shutdown: %w", sctx.Err())
		}
	}
}
