package event

import (
	"time"

	"golang.org/x/sys/unix"
)

// BootClock turns the timestamps of kernel records (CLOCK_BOOTTIME
// nanoseconds, from bpf_ktime_get_boot_ns: how the monitor and every
// enforcer's BPF program stamp them) into wall time.
type BootClock struct {
	bootToWall int64 // add to a CLOCK_BOOTTIME ns value to get Unix ns
}

// Wall is the wall time of CLOCK_BOOTTIME reading ts.
func (c BootClock) Wall(ts uint64) time.Time {
	return time.Unix(0, int64(ts)+c.bootToWall)
}

// NewBootClock measures the offset from CLOCK_BOOTTIME to the wall clock. The
// two clocks are read in the tightest of several rounds, so the offset is
// exact to well under a microsecond; a later step of the wall clock (NTP,
// settimeofday) is not followed, as upstream's ktime-based stamps do not
// follow it either.
func NewBootClock() BootClock {
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
	return BootClock{bootToWall: best}
}

// CString is the text of a NUL-terminated C char array (a comm, a path) of
// a bpf2go-generated record.
func CString(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(b[i])
	}
	return string(out)
}
