package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Integrate extends the tree over at most limit newly sequenced entries:
// it computes their stored hashes with tlog.StoredHashes, writes them,
// and signs and stores a checkpoint of the new size. It returns the
// latest checkpoint and whether it wrote one.
//
// Integrate is idempotent and safe after a crash at any point: hashes
// already written by an interrupted run are rewritten with the same
// values, and the checkpoint's compare-and-swap makes the first of two
// racing integrators win (the loser gets broker.ErrConflict and its hashes,
// being the same, do no harm). With no checkpoint stored, it first writes
// the checkpoint of the empty tree.
func Integrate(ctx context.Context, s Storage, signer note.Signer, limit int) (Checkpoint, bool, error) {
	if limit < 1 {
		return Checkpoint{}, false, fmt.Errorf("%w: integrate limit %d", broker.ErrInvalid, limit)
	}
	origin := signer.Name()
	old, msg, err := s.ReadCheckpoint(ctx)
	if errors.Is(err, broker.ErrNotFound) {
		c := Checkpoint{Origin: origin, Size: 0, Hash: EmptyRoot}
		empty, serr := SignCheckpoint(c, signer)
		if serr != nil {
			return Checkpoint{}, false, serr
		}
		if werr := s.WriteCheckpoint(ctx, 0, 0, empty); werr != nil && !errors.Is(werr, broker.ErrConflict) {
			return Checkpoint{}, false, fmt.Errorf("write empty checkpoint: %w", werr)
		}
		old, msg, err = s.ReadCheckpoint(ctx)
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	cur, err := ParseCheckpoint(noteText(msg))
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("stored checkpoint: %w", err)
	}
	if cur.Size != old {
		return Checkpoint{}, false, fmt.Errorf("stored checkpoint of size %d says %d", old, cur.Size)
	}
	if cur.Origin != origin {
		return Checkpoint{}, false, fmt.Errorf("%w: the log's origin is %q but the signer's key is named %q", broker.ErrInvalid, cur.Origin, origin)
	}
	size, err := s.Size(ctx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read sequenced size: %w", err)
	}
	if size <= old {
		return cur, false, nil
	}
	end := min(size, old+int64(limit))
	leaves, err := s.ReadLeaves(ctx, old, int(end-old))
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read leaves [%d, %d): %w", old, end, err)
	}
	hr := newBatchHashReader(ctx, s, tlog.StoredHashCount(old))
	if err := hr.prefetch(old); err != nil {
		return Checkpoint{}, false, fmt.Errorf("read right edge of tree %d: %w", old, err)
	}
	for i, data := range leaves {
		hs, err := tlog.StoredHashes(old+int64(i), data, hr)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("hash leaf %d: %w", old+int64(i), err)
		}
		hr.fresh = append(hr.fresh, hs...)
	}
	root, err := tlog.TreeHash(end, hr)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("tree hash at %d: %w", end, err)
	}
	if err := s.WriteHashes(ctx, hr.start, hr.fresh); err != nil {
		return Checkpoint{}, false, fmt.Errorf("write hashes for [%d, %d): %w", old, end, err)
	}
	next := Checkpoint{Origin: origin, Size: end, Hash: root}
	n, err := SignCheckpoint(next, signer)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if err := s.WriteCheckpoint(ctx, old, end, n); err != nil {
		return Checkpoint{}, false, fmt.Errorf("write checkpoint %d -> %d: %w", old, end, err)
	}
	return next, true, nil
}

// noteText returns the text of a signed note without checking signatures
// (the caller wrote it).
func noteText(msg []byte) []byte {
	if i := bytes.LastIndex(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

// batchHashReader serves stored hashes from the batch being integrated
// (indexes ≥ start) and from storage (indexes < start), caching the latter.
type batchHashReader struct {
	ctx   context.Context
	s     Reader
	start int64
	fresh []tlog.Hash
	old   map[int64]tlog.Hash
}

func newBatchHashReader(ctx context.Context, s Reader, start int64) *batchHashReader {
	return &batchHashReader{ctx: ctx, s: s, start: start, old: map[int64]tlog.Hash{}}
}

// prefetch reads, in one call, the roots of the complete subtrees that
// make up the tree of size n: the only old hashes that extending it needs.
func (r *batchHashReader) prefetch(n int64) error {
	var idx []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			idx = append(idx, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	_, err := r.ReadHashes(idx)
	return err
}

func (r *batchHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var need []int64
	for _, x := range indexes {
		if _, ok := r.old[x]; x < r.start && !ok {
			need = append(need, x)
		}
	}
	if len(need) > 0 {
		hs, err := r.s.ReadHashes(r.ctx, need)
		if err != nil {
			return nil, err
		}
		if len(hs) != len(need) {
			return nil, fmt.Errorf("storage returned %d hashes for %d indexes", len(hs), len(need))
		}
		for i, x := range need {
			r.old[x] = hs[i]
		}
	}
	for i, x := range indexes {
		switch {
		case x < r.start:
			out[i] = r.old[x]
		case x-r.start < int64(len(r.fresh)):
			out[i] = r.fresh[x-r.start]
		default:
			return nil, fmt.Errorf("stored hash %d not computed yet: %w", x, broker.ErrNotFound)
		}
	}
	return out, nil
}
