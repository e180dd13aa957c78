package eventtest

import (
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
)

func TestCollector(t *testing.T) {
	c := New(func(ev event.Event) bool { return ev.HostPID != 0 })
	c.Add(event.Event{HostPID: 0, Resource: "dropped"})
	c.Add(event.Event{HostPID: 1, Resource: "a"})
	if n := c.Count(nil); n != 1 {
		t.Fatalf("kept %d events, want 1 (the filter drops pid 0)", n)
	}
	// A waiter wakes when a later event arrives from another goroutine.
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Add(event.Event{HostPID: 2, Resource: "b"})
	}()
	b := func(ev event.Event) bool { return ev.Resource == "b" }
	if ev := c.Wait(t, "b", 10*time.Second, b); ev.HostPID != 2 {
		t.Errorf("got %+v", ev)
	}
	if _, ok := c.WaitFor(10*time.Millisecond, func(ev event.Event) bool { return ev.Resource == "never" }); ok {
		t.Error("WaitFor found an event never added")
	}
	if ev, ok := c.Find(nil); !ok || ev.Resource != "a" {
		t.Errorf("Find(nil) = %+v %v, want the first event", ev, ok)
	}
	c.Reset()
	if n := len(c.All(nil)); n != 0 {
		t.Errorf("%d events after Reset", n)
	}
}
