package event

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestClock(t *testing.T) {
	if got := (BootClock{}).Wall(100).UnixNano(); got != 100 {
		t.Errorf("zero clock: wall = %d, want 100", got)
	}
	c := BootClock{off: new(atomic.Int64)}
	c.off.Store(7)
	if got := c.Wall(100).UnixNano(); got != 107 {
		t.Errorf("wall = %d, want 107", got)
	}
	// NewBootClock maps CLOCK_BOOTTIME now to the wall clock now.
	c = NewBootClock()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(c.Wall(uint64(ts.Nano()))); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("boot time mapped to wall time is %v off", d)
	}
}

func TestCString(t *testing.T) {
	for _, tt := range []struct {
		in   []int8
		want string
	}{{[]int8{'c', 'a', 't', 0, 'x'}, "cat"}, {[]int8{'a', 'b'}, "ab"}, {nil, ""}, {[]int8{0}, ""}} {
		if got := CString(tt.in); got != tt.want {
			t.Errorf("CString(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
