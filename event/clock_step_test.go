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
	// The kernel tells a timerfd only of sets that move the clock, so this
	// is a step of a nanosecond forward and one back.
	if err := eventtest.StepWallClock(time.Nanosecond); errors.Is(err, unix.EPERM) {
		t.Skipf("no CAP_SYS_TIME here (a container?): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	if err := eventtest.StepWallClock(-time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := event.ClockSteps()
		if err != nil {
			t.Fatalf("clock sets no longer followed: %v", err)
		}
		if n > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a set of the wall clock was not noticed in 10 s (steps %d)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
