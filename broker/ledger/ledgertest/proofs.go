package ledgertest

import (
	"bytes"
	"crypto"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stewardhq/steward/broker/ledger"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/tlog"
)

// refRoot computes the RFC 6962 root of leaves with transparency-dev/merkle,
// independently of x/mod's tlog.
func refRoot(leaves [][]byte) tlog.Hash {
	tree := testonly.New(rfc6962.New(crypto.SHA256))
	tree.AppendData(leaves...)
	return tlog.Hash(tree.Hash())
}

func testProofs(t *testing.T, s ledger.Storage) {
	CheckProofs(t, s, 1500, 300)
}

// CheckProofs builds a log of n entries in s, integrating it in uneven
// steps, and then checks samples inclusion and consistency proofs at random
// tree sizes from 1 to n against an independent implementation
// (transparency-dev/merkle's reference tree and verifier).
func CheckProofs(t *testing.T, s ledger.Storage, n, samples int) {
	ctx := t.Context()
	signer, _, _ := NewKey(t)
	leaves := make([][]byte, n)
	for i := range leaves {
		// Arbitrary bytes are fine here: storage does not parse entries.
		leaves[i] = []byte{byte(i), byte(i >> 8), byte(i >> 16), 'e'}
	}
	ref := testonly.New(rfc6962.New(crypto.SHA256))
	ref.AppendData(leaves...)
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	for done := 0; done < n; {
		step := min(n-done, 1+rng.IntN(max(n/7, 1)))
		if err := s.Stage(ctx, leaves[done:done+step]...); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sequence(ctx, step); err != nil {
			t.Fatal(err)
		}
		c, _, err := ledger.Integrate(ctx, s, signer, step)
		if err != nil {
			t.Fatal(err)
		}
		done += step
		if c.Size != int64(done) || c.Hash != tlog.Hash(ref.HashAt(uint64(done))) {
			t.Fatalf("checkpoint after %d entries: size %d root %s, reference root %x", done, c.Size, c.Hash, ref.HashAt(uint64(done)))
		}
	}
	hasher := rfc6962.DefaultHasher
	for range samples {
		size := 1 + rng.Int64N(int64(n))
		idx := rng.Int64N(size)
		root := ref.HashAt(uint64(size))
		p, err := ledger.InclusionProof(ctx, s, idx, size)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.InclusionProof(uint64(idx), uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if got := hashBytes(p); !slices.EqualFunc(want, got, bytes.Equal) {
			diff := cmp.Diff(want, got)
			t.Fatalf("inclusion proof of %d in %d differs from reference (-want +got):\n%s", idx, size, diff)
		}
		if err := proof.VerifyInclusion(hasher, uint64(idx), uint64(size), hasher.HashLeaf(leaves[idx]), hashBytes(p), root); err != nil {
			t.Fatalf("reference verifier refuses inclusion proof of %d in %d: %v", idx, size, err)
		}
		from := rng.Int64N(size + 1)
		cp, err := ledger.ConsistencyProof(ctx, s, from, size)
		if err != nil {
			t.Fatal(err)
		}
		wantC, err := ref.ConsistencyProof(uint64(from), uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if got := hashBytes(cp); !slices.EqualFunc(wantC, got, bytes.Equal) {
			diff := cmp.Diff(wantC, got)
			t.Fatalf("consistency proof %d -> %d differs from reference (-want +got):\n%s", from, size, diff)
		}
		if err := proof.VerifyConsistency(hasher, uint64(from), uint64(size), hashBytes(cp), ref.HashAt(uint64(from)), root); err != nil {
			t.Fatalf("reference verifier refuses consistency proof %d -> %d: %v", from, size, err)
		}
		if err := ledger.CheckConsistency(cp, from, tlog.Hash(ref.HashAt(uint64(from))), size, tlog.Hash(root)); err != nil {
			t.Fatalf("CheckConsistency %d -> %d: %v", from, size, err)
		}
	}
}

func hashBytes(hs []tlog.Hash) [][]byte {
	if len(hs) == 0 {
		return nil
	}
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}
