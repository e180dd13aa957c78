package bpflsm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
)

// A copy of this test binary started as a conformance helper or exec
// target never reaches TestMain (which would load the enforcer).
func init() { conformance.HelperMain() }

// lsmTier runs the conformance table against the kernel enforcer: the
// RuleSet through Apply, each operation done by a real process (a copy of
// this test binary at the table's program path, as the case's uid, with a
// terminal when the case says so, in a container's cgroup when it runs in
// one), the verdict and rule ID read from the enforcer's own events.
type lsmTier struct {
	t          *testing.T
	e          *Enforcer
	root       string
	sentinel   string
	cgroups    map[string]int // container name -> cgroup2 directory fd
	helpers    map[string]*conformance.Helper
	rs         *hostpolicy.RuleSet // the case's rules with the sentinel rule
	sentinelID uint32
}

func (*lsmTier) Name() string       { return "bpflsm" }
func (*lsmTier) Enforces() bool     { return true }
func (*lsmTier) DenyResult() string { return "Permission denied" }

// noRules is in force outside an operation, so that the test binary's own
// work (files, helpers) is never decided by a case's rules.
var noRules = &hostpolicy.RuleSet{}

func (l *lsmTier) Apply(t *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	t.Helper()
	l.rs, l.sentinelID = conformance.WithSentinel(t, rs, l.sentinel)
	un, err := l.e.Apply(l.rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := l.e.Apply(noRules); err != nil {
		t.Fatalf("Apply(noRules): %v", err)
	}
	return un
}

func (l *lsmTier) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	t.Helper()
	h := l.helper(t, op)
	if op.Kind == conformance.Open || op.Kind == conformance.Exec {
		conformance.MakeObject(t, op)
	}
	mark := len(collected.All(nil))
	if _, err := l.e.Apply(l.rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	res := h.Do(t, op)
	// The test binary's own open of the sentinel: its event comes after
	// every event of the operation.
	f, err := os.Open(l.sentinel)
	if err == nil {
		f.Close()
	}
	if _, err2 := l.e.Apply(noRules); err2 != nil {
		t.Fatalf("Apply(noRules): %v", err2)
	}
	if err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	evs := l.eventsUntilSentinel(t, mark)

	out := conformance.Outcome{Denied: res != 0}
	want := syscall.EACCES
	if op.Kind == conformance.Capability {
		want = syscall.EPERM // capable() failing makes the kernel answer EPERM
	}
	if res != 0 && res != want {
		t.Fatalf("%v %s: %v, want success or %v", op.Kind, op.Object, res, want)
	}
	var got []event.Event
	for _, ev := range evs {
		if l.about(ev, op, h.Pid) {
			got = append(got, ev)
		}
	}
	if len(got) == 0 {
		return out
	}
	out.Verdict, out.RuleID = got[0].Verdict, got[0].RuleID
	for _, ev := range got {
		if ev.Verdict != out.Verdict || ev.RuleID != out.RuleID {
			t.Errorf("one operation, two decisions:\n%s", eventtest.Dump(got))
		}
		if denied := ev.Verdict == event.VerdictBlock || ev.Verdict == event.VerdictPostureBlock; denied != (ev.Retval < 0) {
			t.Errorf("verdict %d with retval %d", ev.Verdict, ev.Retval)
		}
	}
	return out
}

// about says whether ev is the enforcer's decision on op by the helper pid.
func (l *lsmTier) about(ev event.Event, op conformance.Op, pid int) bool {
	switch op.Kind {
	case conformance.Open:
		return ev.Operation == event.OpFile && ev.HostPID == uint32(pid) &&
			strings.TrimSuffix(ev.Resource, "/") == strings.TrimSuffix(op.Object, "/")
	case conformance.Exec:
		// the exec is done by a child of the helper
		// (a file rule refusing the exec's open of the program reports
		// that open: decide.Exec)
		return (ev.Operation == event.OpProcess || ev.Operation == event.OpFile) && ev.Resource == op.Object
	case conformance.Socket:
		return ev.Operation == event.OpNetwork && ev.HostPID == uint32(pid)
	case conformance.Capability:
		return ev.Operation == event.OpCapabilities && ev.HostPID == uint32(pid)
	}
	return false
}

// helper returns the helper for op's subject, started (once, with no
// rules in force, so that its own exec is not the operation under test)
// at op's program path.
func (l *lsmTier) helper(t *testing.T, op conformance.Op) *conformance.Helper {
	t.Helper()
	k := fmt.Sprintf("%s %d %v %s", op.Program, op.UID, op.TTY, op.Container)
	if h := l.helpers[k]; h != nil {
		return h
	}
	o := conformance.HelperOptions{UID: op.UID, CgroupFD: -1}
	if op.Container != "" {
		fd, ok := l.cgroups[op.Container]
		if !ok {
			t.Fatalf("no container %q in the runner", op.Container)
		}
		o.CgroupFD = fd
	}
	if op.TTY {
		o.TTY = conformance.OpenPTS(l.t)
	}
	conformance.Install(t, op.Program)
	h := conformance.StartHelper(l.t, op.Program, o)
	l.helpers[k] = h
	return h
}

// eventsUntilSentinel returns the events collected after mark, up to the
// sentinel's.
func (l *lsmTier) eventsUntilSentinel(t *testing.T, mark int) []event.Event {
	t.Helper()
	for i := 0; i < 600; i++ {
		evs := collected.All(nil)[mark:]
		for j, ev := range evs {
			if ev.RuleID == l.sentinelID && ev.Resource == l.sentinel {
				return evs[:j]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the sentinel's event never arrived; got:\n%s", eventtest.Dump(collected.All(nil)))
	return nil
}

// TestConformance runs hostpolicy/conformance's table against the kernel
// enforcer, with the containers "web" and "db" of the table as cgroups the
// enforcer knows (as the agent passes every running container).
func TestConformance(t *testing.T) {
	e := kernel(t)
	root := "/tmp/conformance-bpflsm"
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	l := &lsmTier{t: t, e: e, root: root, sentinel: root + "/sentinel", cgroups: map[string]int{}, helpers: map[string]*conformance.Helper{}}
	if err := os.WriteFile(l.sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var cs []hostpolicy.Container
	for _, name := range []string{"web", "db"} {
		dir := filepath.Join("/sys/fs/cgroup", "conformance-"+name)
		_ = os.Remove(dir)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cgroup2 is needed at /sys/fs/cgroup: %v", err)
		}
		// registered first, so it runs after the helpers in it have ended
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove cgroup %s: %v", dir, err)
			}
		})
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		l.cgroups[name] = fd
		cs = append(cs, hostpolicy.Container{ID: name, CgroupID: st.Ino, Info: info(name)})
	}
	if _, err := e.SetContainers(cs); err != nil {
		t.Fatalf("SetContainers: %v", err)
	}
	t.Cleanup(func() {
		if _, err := e.SetContainers(nil); err != nil {
			t.Errorf("SetContainers(nil): %v", err)
		}
		if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
			t.Errorf("reset rules: %v", err)
		}
	})
	conformance.Run(t, root, l)
}
