package event_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
)

// TestClockFollowsSets: when the wall clock is set, every BootClock
// re-measures its offset. On a shared machine the sets are a nanosecond
// forward and back; the monitor's TestTimestampsFollowClockStep
// steps the clock for real in a guest of its own.
func TestClockFollowsSets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting the clock needs root (CAP_SYS_TIME)")
	}
	_ = event.NewBootClock()
	steps := func() uint64 {
		t.Helper()
		n, err := event.ClockSteps()
		if err != nil {
			t.Fatalf("clock sets not followed: %v", err)
		}
		return n
	}
	// The kernel tells a timerfd only of sets that move the clock, so these
	// are steps of a nanosecond forward and back.
	set := func() {
		t.Helper()
		if err := eventtest.StepWallClock(time.Nanosecond); errors.Is(err, unix.EPERM) {
			t.Skipf("no CAP_SYS_TIME here (a container?): %v", err)
		} else if err != nil {
			t.Fatal(err)
		}
		if err := eventtest.StepWallClock(-time.Nanosecond); err != nil {
			t.Fatal(err)
		}
	}
	noticed := func(what string, after uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); steps() <= after; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not noticed in 10 s", what)
			}
		}
	}
	// In quick succession: a set between reading one cancel and re-arming
	// must not stop the watch (the re-arm fails with ECANCELED then).
	before := steps()
	for range 5 {
		set()
	}
	noticed("a burst of sets of the wall clock", before)
	// The watch survived the burst: a later set is followed too.
	time.Sleep(20 * time.Millisecond)
	before = steps()
	set()
	noticed("a set after a burst", before)
}
