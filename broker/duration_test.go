package broker

import (
	"testing"
	"time"
)

func TestDurationSubtractFrom(t *testing.T) {
	end := time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    string
		want time.Time
	}{
		{"P1D", time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)},
		{"PT1H30M", time.Date(2026, 3, 31, 10, 30, 0, 0, time.UTC)},
		{"P1W", time.Date(2026, 3, 24, 12, 0, 0, 0, time.UTC)},
		{"P1M", time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)}, // Feb 31 normalises, as AddDate does
		{"P1Y", time.Date(2025, 3, 31, 12, 0, 0, 0, time.UTC)},
	} {
		d, err := ParseDuration(tc.d)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.SubtractFrom(end); !got.Equal(tc.want) {
			t.Errorf("%s.SubtractFrom(%v) = %v, want %v", tc.d, end, got, tc.want)
		}
	}
}
