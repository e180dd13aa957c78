// Package eventtest collects the events a producer emits (an enforcer's or
// the monitor's Run) for the tests of the packages that make them.
package eventtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
)

// Collector keeps the events handed to Add, in order; safe for concurrent use.
type Collector struct {
	mu     sync.Mutex
	keep   func(event.Event) bool
	events []event.Event
	grew   chan struct{} // closed and replaced on every kept event
}

// New is a Collector that keeps the events keep accepts (all with nil).
// keep runs under the collector's lock, so it may hold state of its own.
func New(keep func(event.Event) bool) *Collector {
	return &Collector{keep: keep, grew: make(chan struct{})}
}

// Add is the emit function to hand a producer's Run.
func (c *Collector) Add(ev event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keep != nil && !c.keep(ev) {
		return
	}
	c.events = append(c.events, ev)
	close(c.grew)
	c.grew = make(chan struct{})
}

// All is the events kept so far that pred accepts (every one with nil).
func (c *Collector) All(pred func(event.Event) bool) []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []event.Event
	for _, ev := range c.events {
		if pred == nil || pred(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// Find is the first event kept so far that pred accepts.
func (c *Collector) Find(pred func(event.Event) bool) (event.Event, bool) {
	ev, _, ok := c.find(pred)
	return ev, ok
}

func (c *Collector) find(pred func(event.Event) bool) (event.Event, <-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if pred == nil || pred(ev) {
			return ev, nil, true
		}
	}
	return event.Event{}, c.grew, false
}

// Count is how many events kept so far pred accepts.
func (c *Collector) Count(pred func(event.Event) bool) int { return len(c.All(pred)) }

// Reset forgets the events kept so far.
func (c *Collector) Reset() {
	c.mu.Lock()
	c.events = nil
	c.mu.Unlock()
}

// WaitFor waits up to d for an event pred accepts (the first kept, with
// nil). It returns as soon as the event is in: d only bounds a wait for
// an event that does not come.
func (c *Collector) WaitFor(d time.Duration, pred func(event.Event) bool) (event.Event, bool) {
	limit := time.After(d)
	for {
		ev, grew, ok := c.find(pred)
		if ok {
			return ev, true
		}
		select {
		case <-grew:
		case <-limit:
			return event.Event{}, false
		}
	}
}

// Wait is WaitFor that fails the test, naming what it waited for and
// listing the events it got, when the event does not come within d.
func (c *Collector) Wait(t testing.TB, what string, d time.Duration, pred func(event.Event) bool) event.Event {
	t.Helper()
	ev, ok := c.WaitFor(d, pred)
	if !ok {
		t.Fatalf("no event for %s within %v; got:\n%s", what, d, Dump(c.All(nil)))
	}
	return ev
}

// Dump lists events one a line, for a failure message.
func Dump(evs []event.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  rule=%d verdict=%d op=%s res=%q data=%q ret=%d exe=%q parent=%q uid=%d pid=%d\n",
			ev.RuleID, ev.Verdict, ev.Operation, ev.Resource, ev.Data, ev.Retval, ev.Exe, ev.ParentExe, ev.UID, ev.HostPID)
	}
	return b.String()
}

// StepWallClock sets CLOCK_REALTIME forward by d (back when negative) in one
// exact step, as NTP's or a hypervisor's step would (adjtimex ADJ_SETOFFSET;
// a nanosecond forward and back is harmless on a shared machine). It
// needs CAP_SYS_TIME; a test that steps by more than nothing should run only
// in a guest of its own.
func StepWallClock(d time.Duration) error {
	const adjSetOffset, adjNano = 0x0100, 0x2000 // <linux/timex.h>
	sec, nsec := int64(d/time.Second), int64(d%time.Second)
	if nsec < 0 { // the kernel wants 0 <= nsec < 1e9
		sec, nsec = sec-1, nsec+int64(time.Second)
	}
	tx := unix.Timex{Modes: adjSetOffset | adjNano, Time: unix.Timeval{Sec: sec, Usec: nsec}}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("adjtimex(ADJ_SETOFFSET %v): %w", d, err)
	}
	return nil
}
