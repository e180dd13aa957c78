package apparmor

import (
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
)

// A copy of this test binary started as a conformance helper or exec
// target never runs the tests.
func init() { conformance.HelperMain() }

// aaTier runs the conformance table against the AppArmor tier: the
// RuleSet loaded as profiles through Apply, each operation done by a real
// process started after the load (AppArmor confines a program when it
// starts: a copy of this test binary at the table's program path, as the
// case's uid), the verdict and rule ID read from the kernel's audit records
// as the tier attributes them (Run).
type aaTier struct {
	e          *Enforcer
	root       string
	sentinel   string
	events     *events
	rs         *hostpolicy.RuleSet // the case's rules with the sentinel rule
	sentinelID uint32
}

func (*aaTier) Name() string       { return "apparmor" }
func (*aaTier) Enforces() bool     { return true }
func (*aaTier) DenyResult() string { return "Permission denied" }

func (a *aaTier) Apply(t *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	t.Helper()
	a.rs, a.sentinelID = conformance.WithSentinel(t, rs, a.sentinel)
	un, err := a.e.Apply(a.rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// The agent, not the tier, reports container policies' rules
	// (agent/containers.go): AppArmor cannot scope rules to containers.
	for _, r := range rs.ContainerRules {
		un[r.ID] = conformance.ContainersBPFLSMOnly + Name
	}
	return un
}

func (a *aaTier) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	t.Helper()
	// op.Container: AppArmor decides every process alike, so an
	// operation in a container is the same operation on the host.
	if op.Kind == conformance.Open || op.Kind == conformance.Exec {
		conformance.MakeObject(t, op)
	}
	conformance.Install(t, op.Program)
	o := conformance.HelperOptions{UID: op.UID, CgroupFD: -1}
	if op.TTY {
		o.TTY = conformance.OpenPTS(t)
	}
	// Started now, under the loaded profiles, and ended with the case.
	h := conformance.StartHelper(t, op.Program, o)
	mark := a.events.len()
	res := h.Do(t, op)
	if r := h.Line(t, "open r "+a.sentinel); r != 0 {
		t.Fatalf("sentinel: %v", r)
	}
	evs := a.events.until(t, mark, func(ev event.Event) bool {
		return ev.RuleID == a.sentinelID && ev.Resource == a.sentinel && ev.HostPID == uint32(h.Pid)
	})

	out := conformance.Outcome{Denied: res != 0}
	want := syscall.EACCES
	if op.Kind == conformance.Capability {
		want = syscall.EPERM
	}
	if res != 0 && res != want {
		t.Fatalf("%v %s: %v, want success or %v", op.Kind, op.Object, res, want)
	}
	var got []event.Event
	for _, ev := range evs {
		if about(ev, op, h.Pid) {
			got = append(got, ev)
		}
	}
	if len(got) == 0 {
		return out
	}
	out.Verdict, out.RuleID = got[0].Verdict, got[0].RuleID
	for _, ev := range got[1:] {
		if ev.Verdict != out.Verdict || ev.RuleID != out.RuleID {
			t.Errorf("one operation, two decisions: %+v and %+v", got[0], ev)
		}
	}
	return out
}

// about says whether ev is AppArmor's record of op by the helper pid.
func about(ev event.Event, op conformance.Op, pid int) bool {
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

type events struct {
	mu  sync.Mutex
	evs []event.Event
}

func (c *events) add(ev event.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, ev)
	c.mu.Unlock()
}

func (c *events) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.evs)
}

// until returns the events after mark up to the first that last accepts.
func (c *events) until(t *testing.T, mark int, last func(event.Event) bool) []event.Event {
	t.Helper()
	for i := 0; i < 500; i++ {
		c.mu.Lock()
		evs := append([]event.Event(nil), c.evs[mark:]...)
		c.mu.Unlock()
		for j, ev := range evs {
			if last(ev) {
				return evs[:j]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, ev := range c.evs[mark:] {
		b.WriteString("  " + ev.Operation + " " + ev.Resource + " " + ev.Data + "\n")
	}
	t.Fatalf("the sentinel's audit record never arrived; got:\n%s", b.String())
	return nil
}

// TestConformance runs hostpolicy/conformance's table against the AppArmor
// tier. It needs root and AppArmor as an active LSM (the QEMU guest:
// vmtests/15-conformance-apparmor.sh).
func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := Supported(); err != nil {
		t.Skipf("AppArmor is not usable here: %v", err)
	}
	root := "/tmp/conformance-apparmor"
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	a := &aaTier{root: root, sentinel: root + "/sentinel", events: &events{}}
	if err := os.WriteFile(a.sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if e.audit == nil {
		t.Fatal("no audit records: the verdicts cannot be read")
	}
	a.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, a.events.add) }()
	t.Cleanup(func() {
		if err := e.Unpin(); err != nil {
			t.Errorf("Unpin: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	conformance.Run(t, root, a)
}
