package relational_test

import (
	"testing"
	"testing/fstest"

	"github.com/stewardhq/steward/broker/store/relational"
)

func TestLoadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []int
		wantErr bool
	}{
		{"in order", fstest.MapFS{"0002_b.up.sql": file("B"), "0001_a.up.sql": file("A")}, []int{1, 2}, false},
		// Numbers are reserved per stream of work, so one may land before another.
		{"gap", fstest.MapFS{"0001_a.up.sql": file("A"), "0006_vault.up.sql": file("V")}, []int{1, 6}, false},
		{"duplicate version", fstest.MapFS{"0001_a.up.sql": file("A"), "0001_b.up.sql": file("B")}, nil, true},
		{"bad name", fstest.MapFS{"first.up.sql": file("A")}, nil, true},
		{"zero", fstest.MapFS{"0000_a.up.sql": file("A")}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := relational.LoadMigrations(tc.fs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadMigrations: %v, want error %v", err, tc.wantErr)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("versions %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("versions %v, want %v", got, tc.want)
				}
			}
		})
	}
}
