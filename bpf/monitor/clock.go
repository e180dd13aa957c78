package monitor

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// clock turns record timestamps into wall time. Records carry either
// CLOCK_MONOTONIC nanoseconds or, on hosts where reading that clock is
// slow, jiffies (see coarse_time in monitor.bpf.c).
type clock struct {
	monoToWall int64 // add to a CLOCK_MONOTONIC ns value to get Unix ns

	jiffies     bool
	baseJiffies uint64
	baseMono    int64
	tickNs      int64
}

func (c *clock) wall(ts uint64) time.Time {
	mono := int64(ts)
	if c.jiffies {
		mono = c.baseMono + (int64(ts)-int64(c.baseJiffies))*c.tickNs
	}
	return time.Unix(0, mono+c.monoToWall)
}

// monoToWall is the offset from CLOCK_MONOTONIC (bpf_ktime_get_ns) to Unix
// time, in nanoseconds.
func monoToWall() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().UnixNano() - ts.Nano()
}

// calibrateJiffies measures the jiffy length and a (jiffies, monotonic)
// pair with sample, which reads both clocks in the kernel at one instant.
// The result is exact to a jiffy.
func calibrateJiffies(sample func() (jiffies uint64, mono int64, err error)) (c clock, err error) {
	j1, m1, err := sample()
	if err != nil {
		return c, err
	}
	time.Sleep(60 * time.Millisecond)
	j2, m2, err := sample()
	if err != nil {
		return c, err
	}
	if j2 <= j1 || m2 <= m1 {
		return c, fmt.Errorf("jiffies did not advance (%d -> %d)", j1, j2)
	}
	hz := hzFrom(float64(j2-j1) / (float64(m2-m1) / 1e9))
	return clock{jiffies: true, baseJiffies: j2, baseMono: m2, tickNs: int64(time.Second) / hz}, nil
}

// hzFrom rounds a measured tick rate to the nearest CONFIG_HZ value.
func hzFrom(measured float64) int64 {
	best := int64(0)
	for _, hz := range []int64{100, 250, 300, 1000} {
		if best == 0 || math.Abs(measured-float64(hz)) < math.Abs(measured-float64(best)) {
			best = hz
		}
	}
	return best
}
