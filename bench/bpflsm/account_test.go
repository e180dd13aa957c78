package main

import (
	"os"
	"testing"
	"time"
)

// schedRunTime must see CPU a process spends, at nanosecond resolution:
// the exec account divides it by a few thousand execs.
func TestSchedRunTime(t *testing.T) {
	pid := os.Getpid()
	before := schedRunTime(pid)
	if before <= 0 {
		t.Fatalf("schedRunTime(self) = %v, want > 0", before)
	}
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
		sink++
	}
	if got := schedRunTime(pid) - before; got < 10*time.Millisecond {
		t.Errorf("30 ms of spinning counted as %v", got)
	}
	if got := schedRunTime(-1); got != 0 {
		t.Errorf("schedRunTime(no such process) = %v, want 0", got)
	}
}

func TestAccountPrograms(t *testing.T) {
	e := opAccount{progs: map[string]time.Duration{"sched_exec": 3000, "sched_fork": 700, "enforce_exec": 141}}
	if got := e.programs(); got != 3841 {
		t.Errorf("programs() = %v, want 3841ns", got)
	}
}

// Every loop an account names must run: a name that maps to nothing would
// fail only in the guest, after the agent's start.
func TestAccountLoopsRun(t *testing.T) {
	if err := account(options{}, "no-such-loop", 1, nil); err == nil {
		t.Error("account of an unknown loop: no error")
	}
	for name, l := range accountLoops {
		if l.stopped <= 0 || l.stopped > 2000 {
			t.Errorf("%s: %d ops while stopped, want 1..2000 (the ring's wakeup mark)", name, l.stopped)
		}
		if name == "exec" || name == "setuid" || name == "open" {
			continue // need the prepared files, a probe program or root
		}
		if err := l.run(10); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
