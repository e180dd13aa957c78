package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

// updatedTime writes what time.Format writes for the layout, byte for byte,
// for every kind of instant: the edges of fields, other zones, leap days,
// truncation (not rounding) of nanoseconds, and years time.Format writes
// differently.
func TestUpdatedTimeIsFormat(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 999, time.UTC),
		time.Date(2026, 1, 1, 3, 4, 5, 6_000, east),
		time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
		time.Now().In(east),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(1<<35), r.Int64N(1e9)))
	}
	for _, tm := range times {
		if got, want := updatedTime(tm), tm.UTC().Format(timeLayout); got != want {
			t.Errorf("updatedTime(%v) = %q, want %q", tm, got, want)
		}
	}
}
