package verify

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stewardhq/steward/broker/ledger"
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
