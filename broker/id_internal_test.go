package broker

import (
	"slices"
	"testing"
	"time"
)

// TestTimedIDs: disclosure ids sort in the order they were minted, to
// the millisecond; ids of one millisecond still differ; ids minted before
// the alphabet was put in order still parse. (48 bits of time fill the
// first 9 of the 26 characters.)
func TestTimedIDs(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	var ids []string
	for d := time.Duration(0); d < 24*365*time.Hour; d = d*3 + 7*time.Millisecond {
		ids = append(ids, newTimedID("dis", t0.Add(d)))
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids minted in time order do not sort in it: %v", ids)
	}
	a, b := newTimedID("dis", t0), newTimedID("dis", t0)
	if a == b || a[:4+9] != b[:4+9] {
		t.Errorf("ids of one millisecond: %s %s; want a shared time prefix and different ids", a, b)
	}
	for _, id := range append(ids, string(NewDisclosureID()), "dis_abcdefghijklmnopqrstuvwxyz", "dis_zzzzzzzzzzzzzzzzzzzzzzzz77") {
		if err := checkID("dis", id); err != nil {
			t.Errorf("checkID(dis, %s): %v", id, err)
		}
	}
}
