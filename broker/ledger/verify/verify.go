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
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Kind is a kind of problem.
type Kind string

// The kinds of problem Verify reports.
const (
	BadSignature     Kind = "bad-signature"
	EntryChanged     Kind = "entry-changed"
	EntryMissing     Kind = "entry-missing"
	EntriesReordered Kind = "entries-reordered"
	Truncated        Kind = "truncated"
	Fork             Kind = "fork"
	Inconsistent     Kind = "inconsistent"
	BadEntry         Kind = "bad-entry"
	BadBundle        Kind = "bad-bundle"
	TileMismatch     Kind = "tile-mismatch"
	RootMismatch     Kind = "root-mismatch"
	BadReceipt       Kind = "bad-receipt"
	Unwitnessed      Kind = "unwitnessed"
)

// Problem is one thing wrong with the log.
type Problem struct {
	Kind Kind `json:"kind"`
	// Index is the first entry concerned, or -1.
	Index int64 `json:"index"`
	// Other is the entry that belongs at Index (entries-reordered), or
	// how many entries are concerned (entry-missing, truncated); else 0.
	Other int64 `json:"other,omitempty"`
	// Detail says more, for people.
	Detail string `json:"detail"`
}

func (p Problem) String() string {
	if p.Index < 0 {
		return fmt.Sprintf("%s: %s", p.Kind, p.Detail)
	}
	return fmt.Sprintf("%s at entry %d: %s", p.Kind, p.Index, p.Detail)
}

// Report is the outcome of Verify.
type Report struct {
	Checkpoint ledger.Checkpoint `json:"-"`
	// Previous is the state the verifier started from, if any.
	Previous *State    `json:"previous,omitempty"`
	Problems []Problem `json:"problems"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Has reports whether a problem of kind k was found.
func (r *Report) Has(k Kind) bool {
	for _, p := range r.Problems {
		if p.Kind == k {
			return true
		}
	}
	return false
}

// MarshalJSON writes the report for machines: the checkpoint checked,
// "ok", and the problems.
func (r *Report) MarshalJSON() ([]byte, error) {
	problems := r.Problems
	if problems == nil {
		problems = []Problem{}
	}
	return json.Marshal(struct {
		OK       bool      `json:"ok"`
		Origin   string    `json:"origin"`
		Size     int64     `json:"size"`
		Root     tlog.Hash `json:"root"`
		Previous *State    `json:"previous,omitempty"`
		Problems []Problem `json:"problems"`
	}{r.OK(), r.Checkpoint.Origin, r.Checkpoint.Size, r.Checkpoint.Hash, r.Previous, problems})
}

func (r *Report) String() string {
	c := r.Checkpoint
	if r.OK() {
		return fmt.Sprintf("PASS %s size %d root %s\n", c.Origin, c.Size, c.Hash)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "FAIL %s size %d root %s: %d problems\n", c.Origin, c.Size, c.Hash, len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

func (r *Report) add(k Kind, index, other int64, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Kind: k, Index: index, Other: other, Detail: fmt.Sprintf(format, args...)})
}

// State is what the verifier remembers between runs: the last checkpoint
// it verified.
type State struct {
	Origin     string    `json:"origin"`
	Size       int64     `json:"size"`
	Root       tlog.Hash `json:"root"`
	Checkpoint string    `json:"checkpoint"`
}

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

	entries, err := fetchEntries(ctx, src, c.Size, cfg.Parallel, rep)
	if err != nil {
		return nil, err
	}
	tiles, err := fetchLevel0(ctx, src, c.Size, cfg.Parallel)
	if err != nil {
		return nil, err
	}

	// Rebuild the tree from the entries.
	leafE := make([]tlog.Hash, len(entries))
	for i, e := range entries {
		leafE[i] = tlog.RecordHash(e)
	}
	treeE := buildTree(leafE)
	var trusted *tree
	if int64(len(entries)) == c.Size && treeE.root() == c.Hash {
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
			rep.add(RootMismatch, -1, 0, "neither the %d entries nor the hash tiles produce the checkpoint's root; cannot tell which entries changed", len(entries))
		}
	}
	if trusted != nil && trusted == treeE && tiles != nil {
		if err := compareTiles(ctx, src, c.Size, treeE, cfg.Parallel, rep); err != nil {
			return nil, err
		}
	} else if trusted != nil && tiles == nil {
		rep.add(TileMismatch, -1, 0, "hash tiles are not served")
	}

	parseAll(entries, rep)

	// The log must still contain what was verified before.
	if prev != nil {
		checkAgainst(rep, trusted, c, prev.Size, prev.Root, "the checkpoint verified last time")
	}
	for _, rc := range cfg.Receipts {
		checkReceipt(rep, logKey, trusted, treeE, c, rc)
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

func checkReceipt(rep *Report, logKey note.Verifier, trusted, treeE *tree, c ledger.Checkpoint, rc broker.Receipt) {
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
	checkAgainst(rep, trusted, c, rcC.Size, rcC.Hash, fmt.Sprintf("the checkpoint in the receipt for entry %d", rc.Index))
	if rc.Index < int64(len(treeE.leaves)) && treeE.leaves[rc.Index] != lh {
		rep.add(EntryChanged, rc.Index, 0, "entry differs from the one its receipt proves was logged")
	}
}

// align compares the leaf hashes the signed tree has (want) with those of
// the entries served (got) and names each difference.
func align(rep *Report, want, got []tlog.Hash) {
	posW := make(map[tlog.Hash]int, len(want))
	for i := len(want) - 1; i >= 0; i-- {
		posW[want[i]] = i
	}
	posG := make(map[tlog.Hash]int, len(got))
	for j := len(got) - 1; j >= 0; j-- {
		posG[got[j]] = j
	}
	reported := map[int]bool{}
	i, j := 0, 0
	for i < len(want) && j < len(got) {
		if got[j] == want[i] {
			i, j = i+1, j+1
			continue
		}
		p, inWant := posW[got[j]]
		switch {
		case inWant && p > i:
			if q, ok := posG[want[i]]; ok && q > j {
				if !reported[i] {
					rep.add(EntriesReordered, int64(i), int64(p), "entry %d is served at %d and entry %d at %d", p, i, i, q)
					reported[p] = true
				}
				i, j = i+1, j+1
			} else {
				if p-i == 1 {
					rep.add(EntryMissing, int64(i), 1, "entry %d is not served", i)
				} else {
					rep.add(EntryMissing, int64(i), int64(p-i), "entries %d to %d are not served", i, p-1)
				}
				i = p
			}
		case inWant && p < i:
			if !reported[i] {
				rep.add(EntriesReordered, int64(i), int64(p), "entry %d is served again at %d", p, i)
			}
			i, j = i+1, j+1
		default:
			rep.add(EntryChanged, int64(i), 0, "entry bytes differ from the signed tree")
			i, j = i+1, j+1
		}
	}
	if i < len(want) {
		rep.add(Truncated, int64(i), int64(len(want)-i), "the last %d entries are not served", len(want)-i)
	}
}

// tree holds every stored hash of a tree rebuilt in memory.
type tree struct {
	leaves []tlog.Hash
	hashes []tlog.Hash
}

func buildTree(leaves []tlog.Hash) *tree {
	t := &tree{leaves: leaves, hashes: make([]tlog.Hash, 0, 2*len(leaves))}
	r := t.reader()
	for i, h := range leaves {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), h, r)
		if err != nil {
			panic(err) // cannot happen: every index asked for is below len(t.hashes)
		}
		t.hashes = append(t.hashes, hs...)
	}
	return t
}

func (t *tree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(t.hashes)) {
				return nil, fmt.Errorf("stored hash %d: %w", x, broker.ErrNotFound)
			}
			out[i] = t.hashes[x]
		}
		return out, nil
	})
}

func (t *tree) root() tlog.Hash { return t.rootAt(int64(len(t.leaves))) }

func (t *tree) rootAt(n int64) tlog.Hash {
	if n == 0 {
		return ledger.EmptyRoot
	}
	h, err := tlog.TreeHash(n, t.reader())
	if err != nil {
		panic(err) // cannot happen: n ≤ len(t.leaves)
	}
	return h
}

// parseAll parses every entry strictly, on every core.
func parseAll(entries [][]byte, rep *Report) {
	workers := runtime.GOMAXPROCS(0)
	bad := make([]error, len(entries))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(entries); i += workers {
				_, bad[i] = broker.ParseEntry(entries[i])
			}
		})
	}
	wg.Wait()
	for i, err := range bad {
		if err != nil {
			rep.add(BadEntry, int64(i), 0, "%v", err)
		}
	}
}

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

// fetchEntries fetches every entry bundle of a tree of size size and
// returns the entries served, in order. Missing or malformed bundles
// shorten the list; align names the entries that are then absent.
func fetchEntries(ctx context.Context, src Source, size int64, k int, rep *Report) ([][]byte, error) {
	nb := int((size + ledger.TileWidth - 1) / ledger.TileWidth)
	bundles := make([][][]byte, nb)
	var mu sync.Mutex
	err := parallel(ctx, nb, k, func(ctx context.Context, i int) error {
		w := min(ledger.TileWidth, int(size-int64(i)*ledger.TileWidth))
		t := ledger.TileRef{Level: -1, Index: int64(i), Width: w}
		b, got, err := fetchWidest(ctx, src, t)
		if err != nil {
			return err
		}
		es, err := ledger.ParseEntryBundle(b)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			rep.add(BadBundle, int64(i)*ledger.TileWidth, 0, "%s: %v", t.Path(), err)
			es = nil
		case len(es) != got:
			rep.add(BadBundle, int64(i)*ledger.TileWidth, 0, "%s holds %d entries, not %d", t.Path(), len(es), got)
			es = es[:min(len(es), got)]
		}
		bundles[i] = es
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: fetch entries: %w", err)
	}
	var all [][]byte
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

func unverifiedCheckpoint(msg []byte) (ledger.Checkpoint, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return ledger.ParseCheckpoint(msg)
	}
	return ledger.ParseCheckpoint(msg[:i+1])
}

func loadState(path string) (*State, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify: read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("verify: state file %s: %w", path, err)
	}
	return &s, nil
}

func saveState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("verify: save state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".verify-state-*")
	if err != nil {
		return fmt.Errorf("verify: save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("verify: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("verify: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("verify: save state: %w", err)
	}
	return nil
}
