package event

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// BootClock turns the timestamps of kernel records (CLOCK_BOOTTIME
// nanoseconds, from bpf_ktime_get_boot_ns: how the monitor and every
// enforcer's BPF program stamp them) into wall time.
//
// The offset between the two clocks changes only when the wall clock is
// set: NTP's or chrony's step, settimeofday, a hypervisor's time sync, the
// step at boot from a wrong RTC. Frequency slewing moves both clocks alike,
// and suspend advances both. Every BootClock made by NewBootClock follows
// one shared offset that a watcher re-measures whenever the kernel says the
// wall clock was set (a CLOCK_REALTIME timerfd armed with
// TFD_TIMER_CANCEL_ON_SET), so an agent started before the boot-time step
// does not stamp its alerts hours off for the rest of its life. The watcher
// sleeps in the netpoller: no timer, no wake-up while the clock is left
// alone. The zero BootClock maps with offset 0 (tests).
type BootClock struct {
	off *atomic.Int64 // Unix ns minus CLOCK_BOOTTIME ns
}

// Wall is the wall time of CLOCK_BOOTTIME reading ts.
func (c BootClock) Wall(ts uint64) time.Time {
	var off int64
	if c.off != nil {
		off = c.off.Load()
	}
	return time.Unix(0, int64(ts)+off)
}

var (
	bootToWall  atomic.Int64
	clockSteps  atomic.Uint64 // times the watcher re-measured after a set
	watchOnce   sync.Once
	watchFailed atomic.Pointer[error] // why sets are not followed (nil: they are)
)

// NewBootClock is a clock on the shared offset, measured now and then
// after every setting of the wall clock.
func NewBootClock() BootClock {
	watchOnce.Do(func() {
		bootToWall.Store(measureBootToWall())
		if err := watchClockSets(); err != nil {
			watchFailed.Store(&err)
		}
	})
	return BootClock{off: &bootToWall}
}

// ClockSteps is how many times the wall clock was set since the first
// NewBootClock and the offset re-measured; err says why sets are not
// followed, if they are not.
func ClockSteps() (n uint64, err error) {
	if p := watchFailed.Load(); p != nil {
		err = *p
	}
	return clockSteps.Load(), err
}

// measureBootToWall reads the two clocks in the tightest of several rounds,
// so the offset is exact to well under a microsecond.
func measureBootToWall() int64 {
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
	return best
}

// watchClockSets arms a timerfd that the kernel cancels when CLOCK_REALTIME
// is set, and re-measures the offset on each cancel. The timer is armed
// before each measurement, so a set between the two is never missed.
func watchClockSets() error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("timerfd_create(CLOCK_REALTIME): %w", err)
	}
	arm := func() error {
		// An absolute expiry far in the future: the timer never fires, it
		// is only cancelled. Arming fails with ECANCELED when the clock
		// was set again since the last cancel was read; that set is
		// covered by the measurement that follows, so arm again.
		spec := unix.ItimerSpec{Value: unix.Timespec{Sec: 1 << 62}}
		var err error
		for range 100 {
			err = unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &spec, nil)
			if !errors.Is(err, unix.ECANCELED) {
				break
			}
		}
		return err
	}
	if err := arm(); err != nil {
		unix.Close(fd)
		return fmt.Errorf("timerfd_settime(TFD_TIMER_CANCEL_ON_SET): %w", err)
	}
	f := os.NewFile(uintptr(fd), "clock-set-timerfd")
	go func() {
		var buf [8]byte
		for {
			_, err := f.Read(buf[:])
			switch {
			case err == nil: // expired, in 2^62 s
				continue
			case !errors.Is(err, unix.ECANCELED):
				err = fmt.Errorf("reading the clock-set timerfd: %w", err)
				watchFailed.Store(&err)
				return
			}
			if err := arm(); err != nil {
				err = fmt.Errorf("re-arming the clock-set timerfd: %w", err)
				watchFailed.Store(&err)
				return
			}
			bootToWall.Store(measureBootToWall())
			clockSteps.Add(1)
		}
	}()
	return nil
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
