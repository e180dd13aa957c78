package fanotify

import (
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// A late decision is allowed, reported, and counted in the tier's stage;
// the verdicts it queued balance.
func TestStagesCountLateDecisions(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked")
	rs := compile(t, hostpolicy.Postures{}, policy("exec", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block`))
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	e, events, _ := start(t, Options{NoNetwork: true, Deadline: 50e6, stall: func() { <-stuck }}, rs)
	if denied, out := run(t, blocked); denied {
		t.Fatalf("exec with a stuck decision: %s", out)
	}
	events.Wait(t, "fail-open report", eventWait, func(ev event.Event) bool { return strings.Contains(ev.Data, "fail open") })
	st := e.Stages()
	if len(st) != 3 || st[0].Name != "fanotify verdicts" || st[1].Name != "fanotify cache" || st[2].Name != "fanotify cache flushes" {
		t.Fatalf("stages: %+v", st)
	}
	s := st[0]
	if s.Received == 0 || s.Received != s.Passed+s.Dropped+s.Pending || !strings.Contains(s.State, "decisions late, allowed (fail open): ") {
		t.Errorf("stage: %+v", s)
	}
}
