package agent

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/proctable"
)

// TestExecEventFilled: every alert and log carries upstream's ExecEvent,
// ExecID "0" (a host process) and the task's comm as ExecutableName, as
// upstream's monitor and BPF-LSM logger fill it (issue 18).
func TestExecEventFilled(t *testing.T) {
	p := &pipeline{}
	for _, tt := range []struct{ comm, want string }{{"cat", "cat"}, {"", ""}, {"a\xffb", `a\xffb`}} {
		ev := &event.Event{Operation: event.OpFile, Resource: "/etc/hostname", Comm: tt.comm}
		at := &proctable.Attribution{ProcessName: "/usr/bin/cat"}
		l := p.log(ev, at)
		a := p.base(ev, at)
		for what, e := range map[string]interface {
			GetExecID() string
			GetExecutableName() string
		}{"log": l.GetExecEvent(), "alert": a.GetExecEvent()} {
			if e.GetExecID() != "0" || e.GetExecutableName() != tt.want {
				t.Errorf("comm %q: %s ExecEvent = {%q %q}, want {\"0\" %q}", tt.comm, what, e.GetExecID(), e.GetExecutableName(), tt.want)
			}
		}
	}
}

// TestOwnerEmptyOnHost: upstream fills Owner (the pod's owner reference)
// only for Kubernetes pods, as in its DNS visibility example, and OID (the
// inode owner) only in its stdout JSON, outside the protos; a host event
// here carries neither, as upstream's host events do not.
func TestOwnerEmptyOnHost(t *testing.T) {
	p := &pipeline{}
	ev := &event.Event{Operation: event.OpFile, Resource: "/etc/hostname", Comm: "cat"}
	at := &proctable.Attribution{ProcessName: "/usr/bin/cat"}
	if l := p.log(ev, at); l.GetOwner() != nil {
		t.Errorf("log Owner = %v, want none", l.GetOwner())
	}
	if a := p.base(ev, at); a.GetOwner() != nil {
		t.Errorf("alert Owner = %v, want none", a.GetOwner())
	}
}
