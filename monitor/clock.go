package monitor

import (
	"time"

	"golang.org/x/sys/unix"
)

// clock turns record timestamps (CLOCK_BOOTTIME nanoseconds, from
// bpf_ktime_get_boot_ns) into wall time.
type clock struct {
	bootToWall int64 // add to a CLOCK_BOOTTIME ns value to get Unix ns
}

func (c *clock) wall(ts uint64) time.Time {
	return time.Unix(0, int64(ts)+c.bootToWall)
}

// newClock measures the offset from CLOCK_BOOTTIME to the wall clock. The
// two clocks are read in the tightest of several rounds, so the offset is
// exact to well under a microsecond; a later step of the wall clock (NTP,
// settimeofday) is not followed, as upstream's ktime-based stamps do not
// follow it either.
func newClock() clock {
	best, bestSpan := int64(0), int64(-1)
	for i := 0; i < 5; i++ {
		var ts unix.Timespec
		w1 := time.Now().UnixNano()
		_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
		w2 := time.Now().UnixNano()
		if span := w2 - w1; bestSpan < 0 || span < bestSpan {
			best, bestSpan = (w1+w2)/2-ts.Nano(), span
		}
	}
	return clock{bootToWall: best}
}
