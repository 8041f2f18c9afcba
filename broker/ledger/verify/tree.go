package verify

import (
	"fmt"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

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
