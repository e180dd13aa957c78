package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
	"github.com/armorhost/kubearmor/proctable"
	"golang.org/x/sys/unix"
)

// monitorTier runs the conformance table against the monitor-only tier:
// the matcher with no kernel enforcer, fed the telemetry events the
// monitor makes of each operation, and the alert the pipeline builds from
// its verdict. Files are real (ownerOnly is decided from the file's owner).
type monitorTier struct {
	root string
	m    *matcher
}

func (*monitorTier) Name() string       { return "monitor" }
func (*monitorTier) Enforces() bool     { return false }
func (*monitorTier) DenyResult() string { return "" }

// Apply reports what the agent reports with no kernel enforcer.
func (mt *monitorTier) Apply(_ *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	mt.m = newMatcher(rs, false)
	unenforced := map[uint32]string{}
	for _, r := range rs.Rules {
		if r.Action != hostpolicy.ActionAudit {
			unenforced[r.ID] = "no kernel enforcer is available on this host"
		}
	}
	(&Agent{}).unscopedContainerRules(rs, unenforced)
	return unenforced
}

func (mt *monitorTier) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	ev := &event.Event{UID: op.UID}
	if op.TTY {
		ev.TTY = "pts0"
	}
	proc, parent := op.Program, ""
	switch op.Kind {
	case conformance.Exec:
		ev.Operation, ev.Syscall, ev.Resource = event.OpProcess, "SYS_EXECVE", op.Object
		proc, parent = op.Object, op.Program
		mt.own(t, op)
	case conformance.Open:
		// The fields the monitor's decoder fills for this openat(2).
		flags := uint32(unix.O_RDONLY)
		if op.Write {
			flags = unix.O_WRONLY | unix.O_TRUNC
		}
		ev.Operation, ev.Syscall, ev.Resource, ev.Path = event.OpFile, "SYS_OPENAT", op.Object, op.Object
		ev.File = event.File{Op: event.FileOpen, Flags: flags, Dir: op.Dir}
		mt.own(t, op)
	case conformance.Socket:
		ev.Operation, ev.Syscall = event.OpNetwork, "SYS_SOCKET"
		typ, _ := hostpolicy.SocketTypeNamed(op.SockType)
		ip, _ := hostpolicy.IPProtocolNamed(op.Proto) // "": protocol 0
		ev.Socket = event.Socket{Family: unix.AF_INET, Type: typ.Number, Protocol: ip.Number}
	default:
		t.Fatalf("the monitor makes no event of a %v", op.Kind)
	}
	v, ok := mt.m.match(ev, proc, parent)
	if !ok {
		return conformance.Outcome{}
	}
	out := conformance.Outcome{}
	switch {
	case v.posture && v.action == actionUnenforced:
		out.Verdict = event.VerdictPostureBlock
	case v.posture:
		out.Verdict = event.VerdictPostureAudit
	case v.action == actionUnenforced:
		out.Verdict, out.RuleID = event.VerdictBlock, v.rule.ID
	default:
		out.Verdict, out.RuleID = event.VerdictAudit, v.rule.ID
	}
	a := (&pipeline{}).matchedAlert(ev, &proctable.Attribution{ProcessName: proc, ParentProcessName: parent}, v)
	out.Alert = &conformance.Alert{Action: a.Action, Result: a.Result, PolicyName: a.PolicyName}
	return out
}

// own makes op's object a real file (or directory) that op's uid owns or
// not, as the case says.
func (mt *monitorTier) own(t *testing.T, op conformance.Op) {
	t.Helper()
	if !strings.HasPrefix(op.Object, mt.root+"/") {
		t.Fatalf("%s is not under %s", op.Object, mt.root)
	}
	if op.Dir {
		if err := os.MkdirAll(op.Object, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(op.Object), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(op.Object, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uid := int(op.UID) + 1
	if op.Owner {
		uid = int(op.UID)
	}
	if err := os.Chown(op.Object, uid, 0); err != nil {
		t.Skipf("ownership: %v", err)
	}
}

func TestConformanceMonitorOnly(t *testing.T) {
	root := t.TempDir()
	conformance.Run(t, root, &monitorTier{root: root})
}
