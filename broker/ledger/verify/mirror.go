package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stewardhq/steward/broker/ledger"
)

// Mirror copies the log that src serves, as it stands at its current
// checkpoint, into dir in the c2sp.org/tlog-tiles layout: every tile and
// entry bundle, then the checkpoint last. A regulator keeps such copies as
// evidence; DirSource(dir) audits one offline. Mirror checks nothing:
// run Verify on the copy.
func Mirror(ctx context.Context, src Source, dir string) (ledger.Checkpoint, error) {
	msg, err := src.Fetch(ctx, "checkpoint")
	if err != nil {
		return ledger.Checkpoint{}, fmt.Errorf("mirror: %w", err)
	}
	c, err := unverifiedCheckpoint(msg)
	if err != nil {
		return ledger.Checkpoint{}, fmt.Errorf("mirror: %w", err)
	}
	write := func(path string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
	refs := ledger.Tiles(c.Size)
	err = parallel(ctx, len(refs), 8, func(ctx context.Context, i int) error {
		b, err := src.Fetch(ctx, refs[i].Path())
		if err != nil {
			return err
		}
		return write(refs[i].Path(), b)
	})
	if err != nil {
		return ledger.Checkpoint{}, fmt.Errorf("mirror %s: %w", c.Origin, err)
	}
	for _, extra := range []string{"vkey"} {
		if b, err := src.Fetch(ctx, extra); err == nil {
			if err := write(extra, b); err != nil {
				return ledger.Checkpoint{}, fmt.Errorf("mirror: %w", err)
			}
		}
	}
	if err := write("checkpoint", msg); err != nil {
		return ledger.Checkpoint{}, fmt.Errorf("mirror: %w", err)
	}
	return c, nil
}
