package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
)

// fanotifyTier runs the conformance table against this tier on the host
// kernel: real opens, execs and sockets by real processes (copies of this
// test binary at the table's program paths, in a cgroup of their own, as
// the case's uid and with a terminal when it says so) of real files on a
// marked tmpfs.
type fanotifyTier struct {
	t       *testing.T
	root    string
	cgroup  string
	cgfd    int
	e       *Enforcer
	events  *eventtest.Collector
	rs      *hostpolicy.RuleSet
	helpers map[string]*conformance.Helper
}

func init() { conformance.HelperMain() }

func (*fanotifyTier) Name() string       { return "fanotify" }
func (*fanotifyTier) Enforces() bool     { return true }
func (*fanotifyTier) DenyResult() string { return "Operation not permitted" }

func (f *fanotifyTier) Apply(t *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	t.Helper()
	for _, r := range rs.Rules {
		if r.Action == hostpolicy.ActionAllow && r.Source == "" && r.Category != hostpolicy.CategoryNetwork {
			// Marks cover every filesystem then: every program on this
			// shared host would be in allow-list mode while it runs.
			t.Skip("runner: an allow-list for every program would confine the whole host; per-source allow-lists and network (the test's cgroup) are run")
		}
	}
	f.rs = rs
	got, err := f.e.Apply(rs)
	if err != nil {
		t.Fatal(err)
	}
	// The agent, not the tier, reports container policies' rules
	// (agent/containers.go): this tier cannot scope rules to containers.
	for _, r := range rs.ContainerRules {
		got[r.ID] = conformance.ContainersBPFLSMOnly + Name
	}
	return got
}

func (f *fanotifyTier) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	t.Helper()
	// op.Container: this tier decides every process alike, so an
	// operation in a container is the same operation on the host.
	h := f.helper(t, op.Program, op.UID, op.TTY)
	if op.Kind == conformance.Open || op.Kind == conformance.Exec {
		conformance.MakeObject(t, op)
	}
	f.events.Reset()
	res := h.Do(t, op)
	out := conformance.Outcome{Denied: res != 0}
	if out.Denied && res != syscall.EPERM {
		t.Fatalf("%v %s: %v", op.Kind, op.Object, res)
	}
	// A decision's event is emitted before the operation returns; one
	// that allowed silently emits none, which a short wait confirms.
	wait := 200 * time.Millisecond
	if out.Denied {
		wait = 10 * time.Second
	}
	if ev, ok := f.events.WaitFor(wait, nil); ok {
		out.Verdict, out.RuleID = ev.Verdict, ev.RuleID
		if out.Denied != (ev.Retval < 0) {
			t.Errorf("event %+v, but the operation returned %v", ev, res)
		}
	}
	return out
}

// helper is a long-lived helper process at a program path, as a uid, with
// a terminal or not: started before the case's rules are in force (its own
// exec is not the operation under test), in the test's cgroup.
func (f *fanotifyTier) helper(t *testing.T, program string, uid uint32, tty bool) *conformance.Helper {
	t.Helper()
	k := fmt.Sprintf("%s %d %v", program, uid, tty)
	if h := f.helpers[k]; h != nil {
		return h
	}
	// Start it with no rules in force, then put the case's back.
	if _, err := f.e.Apply(&hostpolicy.RuleSet{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := f.e.Apply(f.rs); err != nil {
			t.Fatal(err)
		}
	}()
	conformance.Install(f.t, program)
	o := conformance.HelperOptions{UID: uid, CgroupFD: f.cgfd}
	if tty {
		o.TTY = conformance.OpenPTS(f.t)
	}
	h := conformance.StartHelper(f.t, program, o)
	f.helpers[k] = h
	return h
}

func TestConformance(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	// The helpers of other uids must reach the tmpfs.
	for d := filepath.Dir(fs); strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cg, cgfd := testCgroup(t)
	e, events, _ := start(t, Options{cgroup: cg}, &hostpolicy.RuleSet{})
	conformance.Run(t, fs, &fanotifyTier{t: t, root: fs, cgroup: cg, cgfd: cgfd, e: e, events: events, helpers: map[string]*conformance.Helper{}})
}
