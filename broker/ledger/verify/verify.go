// Package verify audits a whole ledger from its public files, the way a
// regulator does with `steward audit verify`. It trusts nothing but the
// log's public key and its own record of the last checkpoint it verified.
//
// Verify fetches the checkpoint and checks its signature; re-hashes every
// entry of every entry bundle and rebuilds the tree; compares the result
// with the signed root and with the published hash tiles; parses every
// entry strictly; checks that the log still contains the tree it verified
// last time (kept in a small JSON state file); and checks any receipts
// handed to it. It reports PASS, or each problem by kind and index:
//
//	bad-signature      the checkpoint is not signed by the log's key
//	entry-changed      entry i's bytes differ from what was signed
//	entry-missing      entries i… are gone
//	entries-reordered  entry i sits where entry j belongs
//	truncated          the log ends before its checkpoint (or one it signed before) says
//	fork               two signed checkpoints of one size with different roots
//	inconsistent       the signed tree does not extend the one verified before
//
// and a few more (bad-entry, bad-bundle, tile-mismatch, root-mismatch,
// bad-receipt, unwitnessed).
package verify

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Config configures Verify.
type Config struct {
	// VerifierKey is the log's public key in signed-note format. Required.
	VerifierKey string
	// StatePath is a JSON file holding the last verified checkpoint.
	// Verify reads it if it exists and rewrites it after a PASS. Empty
	// means no state.
	StatePath string
	// Receipts are receipts to check against the log.
	Receipts []broker.Receipt
	// Parallel is how many files to fetch at once; 0 means 8.
	Parallel int
	// WitnessKeys are the cosignature/v1 public keys of witnesses whose
	// cosignatures the checkpoint should carry (witness.GenerateKey).
	WitnessKeys []string
	// MinWitnesses is how many of them must have cosigned; 0 means all.
	MinWitnesses int
}

// Verify audits the log that src serves. It returns an error only when it
// could not do its job (a file could not be fetched for a reason other than
// its absence, the state file is unreadable); everything wrong with the log
// itself is a Problem in the report.
func Verify(ctx context.Context, src Source, cfg Config) (*Report, error) {
	logKey, err := note.NewVerifier(cfg.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("verify: log key: %w", err)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	rep := &Report{}
	msg, err := src.Fetch(ctx, "checkpoint")
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	c, _, err := ledger.OpenCheckpoint(msg, logKey)
	signed := err == nil
	if !signed {
		rep.add(BadSignature, -1, 0, "checkpoint: %v", err)
		// Carry on with the unverified body to say what else is wrong.
		if c, err = unverifiedCheckpoint(msg); err != nil {
			return rep, nil
		}
	}
	rep.Checkpoint = c
	if len(cfg.WitnessKeys) > 0 {
		if err := checkWitnesses(rep, msg, logKey, cfg); err != nil {
			return nil, err
		}
	}
	prev, err := loadState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	if prev != nil && prev.Origin != c.Origin {
		return nil, fmt.Errorf("verify: state file %s is for log %q, not %q", cfg.StatePath, prev.Origin, c.Origin)
	}
	rep.Previous = prev

	leafE, err := fetchEntries(ctx, src, c.Size, cfg.Parallel, rep)
	if err != nil {
		return nil, err
	}
	tiles, err := fetchLevel0(ctx, src, c.Size, cfg.Parallel)
	if err != nil {
		return nil, err
	}

	// Rebuild the tree from the entries.
	treeE := buildTree(leafE)
	var trusted *tree
	if int64(len(leafE)) == c.Size && treeE.root() == c.Hash {
		trusted = treeE
	}
	if trusted == nil {
		// The entries do not make the signed tree. If the hash tiles do,
		// they say what each entry should be and where.
		var treeT *tree
		if tiles != nil {
			treeT = buildTree(tiles)
		}
		if treeT != nil && treeT.root() == c.Hash {
			trusted = treeT
			align(rep, tiles, leafE)
		} else {
			rep.add(RootMismatch, -1, 0, "neither the %d entries nor the hash tiles produce the checkpoint's root; cannot tell which entries changed", len(leafE))
		}
	}
	if trusted != nil && trusted == treeE && tiles != nil {
		if err := compareTiles(ctx, src, c.Size, treeE, cfg.Parallel, rep); err != nil {
			return nil, err
		}
	} else if trusted != nil && tiles == nil {
		rep.add(TileMismatch, -1, 0, "hash tiles are not served")
	}

	// The log must still contain what was verified before.
	// An unsigned checkpoint says nothing about the log's history, so it
	// is compared with earlier signed ones only when it is signed.
	if prev != nil && signed {
		checkAgainst(rep, trusted, c, prev.Size, prev.Root, "the checkpoint verified last time")
	}
	for _, rc := range cfg.Receipts {
		checkReceipt(rep, logKey, trusted, treeE, c, signed, rc)
	}

	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return cmp.Compare(a.Index, b.Index) })
	if rep.OK() && signed && cfg.StatePath != "" {
		if err := saveState(cfg.StatePath, State{Origin: c.Origin, Size: c.Size, Root: c.Hash, Checkpoint: string(msg)}); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// checkWitnesses counts valid cosignatures by the configured witnesses.
func checkWitnesses(rep *Report, msg []byte, logKey note.Verifier, cfg Config) error {
	vs := []note.Verifier{logKey}
	names := map[string]bool{}
	for _, k := range cfg.WitnessKeys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return fmt.Errorf("verify: witness key %q: %w", k, err)
		}
		vs = append(vs, v)
		names[v.Name()] = true
	}
	need := cfg.MinWitnesses
	if need <= 0 || need > len(cfg.WitnessKeys) {
		need = len(cfg.WitnessKeys)
	}
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		rep.add(Unwitnessed, -1, 0, "checkpoint cosignatures: %v", err)
		return nil
	}
	got := 0
	for _, sig := range n.Sigs {
		if names[sig.Name] {
			got++
		}
	}
	if got < need {
		rep.add(Unwitnessed, -1, 0, "checkpoint has %d valid witness cosignatures, want %d", got, need)
	}
	return nil
}

// checkAgainst checks that a tree of size size and root root, which the
// log signed earlier, is a prefix of the current tree.
func checkAgainst(rep *Report, trusted *tree, c ledger.Checkpoint, size int64, root tlog.Hash, what string) {
	switch {
	case size > c.Size:
		rep.add(Truncated, c.Size, size-c.Size, "the log has %d entries but %s had %d", c.Size, what, size)
	case size == c.Size && root != c.Hash:
		rep.add(Fork, -1, 0, "%s has size %d like the current one but root %s, not %s", what, size, root, c.Hash)
	case trusted == nil:
		// Nothing trustworthy to compare with; already reported.
	case trusted.rootAt(size) != root:
		rep.add(Inconsistent, -1, 0, "the current tree of size %d does not extend %s (size %d, root %s)", c.Size, what, size, root)
	}
}

func checkReceipt(rep *Report, logKey note.Verifier, trusted, treeE *tree, c ledger.Checkpoint, signed bool, rc broker.Receipt) {
	rcC, _, err := ledger.OpenCheckpoint([]byte(rc.Checkpoint), logKey)
	if err != nil {
		rep.add(BadReceipt, rc.Index, 0, "receipt checkpoint: %v", err)
		return
	}
	lh, err := tlog.ParseHash(rc.LeafHash)
	if err != nil {
		rep.add(BadReceipt, rc.Index, 0, "receipt leaf hash: %v", err)
		return
	}
	proof := make(tlog.RecordProof, len(rc.Proof))
	for i, p := range rc.Proof {
		if proof[i], err = tlog.ParseHash(p); err != nil {
			rep.add(BadReceipt, rc.Index, 0, "receipt proof: %v", err)
			return
		}
	}
	if rc.Index < 0 || rc.Index >= rcC.Size || tlog.CheckRecord(proof, rcC.Size, rcC.Hash, rc.Index, lh) != nil {
		rep.add(BadReceipt, rc.Index, 0, "receipt's inclusion proof does not lead to its checkpoint")
		return
	}
	// A valid receipt is a signed statement; the log must agree with it.
	if signed {
		checkAgainst(rep, trusted, c, rcC.Size, rcC.Hash, fmt.Sprintf("the checkpoint in the receipt for entry %d", rc.Index))
	}
	if rc.Index < int64(len(treeE.leaves)) && treeE.leaves[rc.Index] != lh {
		rep.add(EntryChanged, rc.Index, 0, "entry differs from the one its receipt proves was logged")
	}
}
func unverifiedCheckpoint(msg []byte) (ledger.Checkpoint, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return ledger.ParseCheckpoint(msg)
	}
	return ledger.ParseCheckpoint(msg[:i+1])
}
