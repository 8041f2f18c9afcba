// Package memory is an in-memory ledger.Storage for tests and demos. It
// keeps nothing across restarts of the process, but a *Storage value
// survives a restart of the ledger loops, which is how tests simulate a
// crash between sequencing and integration.
//
// The Tamper methods change what a verifier will see, the way an operator
// with write access to the database could; only tests should call them.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/tlog"
)

// Storage implements ledger.Storage in memory.
type Storage struct {
	mu          sync.Mutex
	staged      [][]byte
	leaves      [][]byte
	hashes      []tlog.Hash
	checkpoints map[int64][]byte
	latest      int64 // size of the latest checkpoint; -1 if none
	cosigs      map[int64]map[string][]byte
}

// New returns an empty Storage.
func New() *Storage {
	return &Storage{checkpoints: map[int64][]byte{}, latest: -1, cosigs: map[int64]map[string][]byte{}}
}

// Stage implements ledger.Storage.
func (s *Storage) Stage(ctx context.Context, entries ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		s.staged = append(s.staged, bytes.Clone(e))
	}
	return nil
}

// Sequence implements ledger.Storage.
func (s *Storage) Sequence(ctx context.Context, limit int) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(limit, len(s.staged))
	s.leaves = append(s.leaves, s.staged[:n]...)
	s.staged = slices.Delete(s.staged, 0, n)
	return int64(len(s.leaves)), nil
}

// Size implements ledger.Storage.
func (s *Storage) Size(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.leaves)), ctx.Err()
}

// ReadLeaves implements ledger.Reader.
func (s *Storage) ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if start < 0 || n < 0 || start+int64(n) > int64(len(s.leaves)) {
		return nil, fmt.Errorf("leaves [%d, %d) of %d: %w", start, start+int64(n), len(s.leaves), broker.ErrNotFound)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Clone(s.leaves[start+int64(i)])
	}
	return out, nil
}

// FindLeaf implements ledger.Reader.
func (s *Storage) FindLeaf(ctx context.Context, h tlog.Hash) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, l := range s.leaves {
		if tlog.RecordHash(l) == h {
			return int64(i), nil
		}
	}
	return 0, fmt.Errorf("leaf %x: %w", h[:], broker.ErrNotFound)
}

// ReadHashes implements ledger.Reader.
func (s *Storage) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(s.hashes)) {
			return nil, fmt.Errorf("stored hash %d: %w", x, broker.ErrNotFound)
		}
		out[i] = s.hashes[x]
	}
	return out, nil
}

// WriteHashes implements ledger.Storage.
func (s *Storage) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if start < 0 || start > int64(len(s.hashes)) {
		return fmt.Errorf("write hashes at %d leaves a gap after %d: %w", start, len(s.hashes), broker.ErrInvalid)
	}
	for i, h := range hashes {
		if x := start + int64(i); x < int64(len(s.hashes)) && s.hashes[x] != h {
			return fmt.Errorf("stored hash %d differs: %w", x, broker.ErrConflict)
		}
	}
	for i, h := range hashes {
		if x := start + int64(i); x == int64(len(s.hashes)) {
			s.hashes = append(s.hashes, h)
		}
	}
	return nil
}

// ReadCheckpoint implements ledger.Reader.
func (s *Storage) ReadCheckpoint(ctx context.Context) (int64, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest < 0 {
		return 0, nil, fmt.Errorf("checkpoint: %w", broker.ErrNotFound)
	}
	return s.latest, bytes.Clone(s.checkpoints[s.latest]), ctx.Err()
}

// WriteCheckpoint implements ledger.Storage.
func (s *Storage) WriteCheckpoint(ctx context.Context, old, size int64, note []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := max(s.latest, 0)
	if _, dup := s.checkpoints[size]; dup || cur != old || size < old {
		return fmt.Errorf("checkpoint %d -> %d (latest %d): %w", old, size, s.latest, broker.ErrConflict)
	}
	s.checkpoints[size] = bytes.Clone(note)
	s.latest = size
	return nil
}

// AddCosignature implements ledger.Storage.
func (s *Storage) AddCosignature(ctx context.Context, size int64, witness string, line []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cosigs[size] == nil {
		s.cosigs[size] = map[string][]byte{}
	}
	s.cosigs[size][witness] = bytes.Clone(line)
	return nil
}

// ReadCosignatures implements ledger.Reader.
func (s *Storage) ReadCosignatures(ctx context.Context, size int64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.cosigs[size]
	var out [][]byte
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, bytes.Clone(m[name]))
	}
	return out, ctx.Err()
}

// Staged returns how many entries wait to be sequenced.
func (s *Storage) Staged() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.staged)
}

// TamperSetLeaf replaces the bytes of the entry at index i.
func (s *Storage) TamperSetLeaf(i int64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaves[i] = bytes.Clone(data)
}

// TamperDeleteLeaf removes the entry at index i; later entries move down.
func (s *Storage) TamperDeleteLeaf(i int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaves = slices.Delete(s.leaves, int(i), int(i)+1)
}

// TamperSwapLeaves exchanges the entries at indices i and j.
func (s *Storage) TamperSwapLeaves(i, j int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaves[i], s.leaves[j] = s.leaves[j], s.leaves[i]
}

// TamperTruncate drops every entry from index n on.
func (s *Storage) TamperTruncate(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaves = s.leaves[:n]
}

// TamperCheckpoint replaces the latest checkpoint note.
func (s *Storage) TamperCheckpoint(note []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints[s.latest] = bytes.Clone(note)
}

// TamperRewrite replaces all entries and stored hashes, and forgets every
// checkpoint: what an operator rebuilding the log from scratch would do.
func (s *Storage) TamperRewrite(leaves [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaves, s.hashes, s.staged = nil, nil, nil
	for _, l := range leaves {
		s.leaves = append(s.leaves, bytes.Clone(l))
	}
	s.checkpoints, s.latest = map[int64][]byte{}, -1
}
