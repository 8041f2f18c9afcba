package ledger

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/stewardhq/steward/broker"
	tlogproof "github.com/transparency-dev/formats/proof"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof returns the proof that the entry at index is in the tree
// of size size, read from r's stored hashes.
func InclusionProof(ctx context.Context, r Reader, index, size int64) (tlog.RecordProof, error) {
	if index < 0 || index >= size {
		return nil, fmt.Errorf("%w: index %d not in tree of size %d", broker.ErrInvalid, index, size)
	}
	p, err := tlog.ProveRecord(size, index, hashReader(ctx, r))
	if err != nil {
		return nil, fmt.Errorf("prove entry %d in tree %d: %w", index, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the proof that the tree of size from is a
// prefix of the tree of size to, read from r's stored hashes.
func ConsistencyProof(ctx context.Context, r Reader, from, to int64) (tlog.TreeProof, error) {
	if from < 0 || from > to {
		return nil, fmt.Errorf("%w: consistency from %d to %d", broker.ErrInvalid, from, to)
	}
	if from == 0 || from == to {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(to, from, hashReader(ctx, r))
	if err != nil {
		return nil, fmt.Errorf("prove tree %d consistent with %d: %w", from, to, err)
	}
	return p, nil
}

// CheckConsistency checks a consistency proof between two tree heads.
// An empty old tree is consistent with every tree.
func CheckConsistency(proof tlog.TreeProof, oldSize int64, oldRoot tlog.Hash, newSize int64, newRoot tlog.Hash) error {
	switch {
	case oldSize == 0:
		return nil
	case oldSize > newSize:
		return fmt.Errorf("%w: tree of size %d cannot extend one of size %d", broker.ErrInvalid, newSize, oldSize)
	case oldSize == newSize:
		if oldRoot != newRoot {
			return fmt.Errorf("%w: two roots for tree size %d", broker.ErrInvalid, newSize)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, newSize, newRoot, oldSize, oldRoot); err != nil {
		return fmt.Errorf("%w: tree %d is not consistent with tree %d: %v", broker.ErrInvalid, newSize, oldSize, err)
	}
	return nil
}

// NewReceipt builds the receipt for the entry with leaf hash h (as returned
// by Log.Stage or tlog.RecordHash). It fails with broker.ErrNotFound until
// the entry is sequenced; before the entry is integrated the receipt has
// an index but no proof.
func NewReceipt(ctx context.Context, r Reader, h tlog.Hash) (broker.Receipt, error) {
	idx, err := r.FindLeaf(ctx, h)
	if err != nil {
		return broker.Receipt{}, fmt.Errorf("receipt for %s: %w", h, err)
	}
	rc := broker.Receipt{Index: idx, LeafHash: base64.StdEncoding.EncodeToString(h[:])}
	size, msg, err := r.ReadCheckpoint(ctx)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && idx >= size) {
		return rc, nil
	}
	if err != nil {
		return broker.Receipt{}, fmt.Errorf("receipt for %s: %w", h, err)
	}
	p, err := InclusionProof(ctx, r, idx, size)
	if err != nil {
		return broker.Receipt{}, fmt.Errorf("receipt for %s: %w", h, err)
	}
	rc.Checkpoint = string(msg)
	rc.Proof = encodeHashes(p)
	return rc, nil
}

// VerifyReceipt checks, offline, that entry is in the log whose key is
// logKey: that the receipt is for these bytes, that its checkpoint is
// signed by the log, and that its inclusion proof leads from the entry to
// the checkpoint's root. It returns the checkpoint. Failures wrap
// broker.ErrInvalid.
func VerifyReceipt(rc broker.Receipt, entry []byte, logKey note.Verifier) (Checkpoint, error) {
	h := tlog.RecordHash(entry)
	if rc.LeafHash != base64.StdEncoding.EncodeToString(h[:]) {
		return Checkpoint{}, fmt.Errorf("%w: receipt is for another entry", broker.ErrInvalid)
	}
	if !rc.Integrated() {
		return Checkpoint{}, fmt.Errorf("%w: receipt for entry %d has no inclusion proof yet", broker.ErrInvalid, rc.Index)
	}
	c, _, err := OpenCheckpoint([]byte(rc.Checkpoint), logKey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("receipt for entry %d: %w", rc.Index, err)
	}
	proof, err := decodeHashes(rc.Proof)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("receipt for entry %d: %w", rc.Index, err)
	}
	if rc.Index < 0 || rc.Index >= c.Size {
		return Checkpoint{}, fmt.Errorf("%w: receipt index %d outside tree of size %d", broker.ErrInvalid, rc.Index, c.Size)
	}
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, rc.Index, h); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: receipt for entry %d: inclusion proof: %v", broker.ErrInvalid, rc.Index, err)
	}
	return c, nil
}

func encodeHashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func decodeHashes(ss []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("%w: proof hash %d is not a base64 SHA-256 hash", broker.ErrInvalid, i)
		}
		out[i] = tlog.Hash(b)
	}
	return out, nil
}

// MarshalTLogProof encodes an integrated receipt in the
// c2sp.org/tlog-proof@v1 text format, for tools outside Steward. The entry
// itself travels separately.
func MarshalTLogProof(rc broker.Receipt) ([]byte, error) {
	if !rc.Integrated() {
		return nil, fmt.Errorf("%w: receipt for entry %d has no inclusion proof yet", broker.ErrInvalid, rc.Index)
	}
	hs, err := decodeHashes(rc.Proof)
	if err != nil {
		return nil, err
	}
	p := tlogproof.TLogProof{Index: uint64(rc.Index), Checkpoint: []byte(rc.Checkpoint)}
	for _, h := range hs {
		p.Hashes = append(p.Hashes, h)
	}
	return p.Marshal(), nil
}

// ParseTLogProof decodes a c2sp.org/tlog-proof@v1 proof of entry into a
// receipt; check it with VerifyReceipt.
func ParseTLogProof(b, entry []byte) (broker.Receipt, error) {
	var p tlogproof.TLogProof
	if err := p.Unmarshal(b); err != nil {
		return broker.Receipt{}, fmt.Errorf("%w: tlog-proof: %v", broker.ErrInvalid, err)
	}
	if p.Index > 1<<62 {
		return broker.Receipt{}, fmt.Errorf("%w: tlog-proof index %d", broker.ErrInvalid, p.Index)
	}
	h := tlog.RecordHash(entry)
	rc := broker.Receipt{Index: int64(p.Index), LeafHash: base64.StdEncoding.EncodeToString(h[:]), Checkpoint: string(p.Checkpoint)}
	for _, ph := range p.Hashes {
		rc.Proof = append(rc.Proof, base64.StdEncoding.EncodeToString(ph[:]))
	}
	return rc, nil
}
