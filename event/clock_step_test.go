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
	before, err := event.ClockSteps()
	if err != nil {
		t.Fatalf("clock sets not followed: %v", err)
	}
	// The kernel tells a timerfd only of sets that move the clock, so these
	// are steps of a nanosecond forward and back, in quick succession: a
	// set between reading one cancel and re-arming must not stop the watch
	// (the re-arm fails with ECANCELED then).
	for range 5 {
		if err := eventtest.StepWallClock(time.Nanosecond); errors.Is(err, unix.EPERM) {
			t.Skipf("no CAP_SYS_TIME here (a container?): %v", err)
		} else if err != nil {
			t.Fatal(err)
		}
		if err := eventtest.StepWallClock(-time.Nanosecond); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := event.ClockSteps()
		if err != nil {
			t.Fatalf("clock sets no longer followed: %v", err)
		}
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a set of the wall clock was not noticed in 10 s (steps %d)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The watch survived the burst: a later set is followed too.
	time.Sleep(20 * time.Millisecond)
	n, err := event.ClockSteps()
	if err != nil {
		t.Fatalf("clock sets no longer followed after a burst of sets: %v", err)
	}
	if err := eventtest.StepWallClock(time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if err := eventtest.StepWallClock(-time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		m, err := event.ClockSteps()
		if err != nil {
			t.Fatalf("clock sets no longer followed: %v", err)
		}
		if m > n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the set after a burst was not noticed in 10 s (steps %d)", m)
		}
	}
}
