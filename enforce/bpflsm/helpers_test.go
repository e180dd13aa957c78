package bpflsm

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// The kernel tests share one Enforcer: loading takes seconds in the TCG
// guest, and sharing it also proves that Apply replaces rules in place.
var (
	shared    *Enforcer
	collected = eventtest.New(nil)
	skipWhy   string
	busybox   string
)

func TestMain(m *testing.M) {
	code := func() int {
		if err := Supported(); err != nil {
			skipWhy = err.Error()
			return m.Run()
		}
		start := time.Now()
		var err error
		shared, err = New(Options{RateBurst: -1})
		if err != nil {
			fmt.Fprintln(os.Stderr, "bpflsm: New:", err)
			return 1
		}
		fmt.Printf("bpflsm: New (load+attach) took %v (load %v, attach %v)\n", time.Since(start), shared.loadTime, shared.attachTime)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- shared.Run(ctx, collected.Add) }()
		code := m.Run()
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bpflsm: Run:", err)
			code = 1
		}
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bpflsm: Close:", err)
			code = 1
		}
		return code
	}()
	os.Exit(code)
}

// kernel returns the shared enforcer, or skips when this kernel cannot
// run BPF-LSM programs (the host kernel of the dev machines refuses them).
func kernel(t *testing.T) *Enforcer {
	t.Helper()
	if skipWhy != "" {
		t.Skipf("BPF-LSM is not usable here (%s); run enforce/bpflsm/vmtest/run.sh in the QEMU guest", skipWhy)
	}
	if busybox == "" {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if _, err := os.Stat(p); err == nil {
				busybox = p
				break
			}
		}
		if busybox == "" {
			t.Skip("busybox is needed for the kernel tests")
		}
	}
	return shared
}

// waitEvent waits for an event the predicate accepts. The bound only
// limits a failing test; a passing one returns as soon as the event is in.
func waitEvent(t *testing.T, what string, pred func(event.Event) bool) event.Event {
	t.Helper()
	return collected.Wait(t, what, 30*time.Second, pred)
}

const sentinelPath = "/tmp/bpflsm-sentinel"

// sentinelPolicy audits opens of one file; flush uses it to know that
// every event of earlier operations has been read.
const sentinelPolicy = `
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: zz-sentinel
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /tmp/bpflsm-sentinel
  action: Audit
`

var flushes int

// flush returns once the events of every operation done before it have
// been collected: the ring buffer keeps order, so waiting for the event of
// a later operation is enough.
func flush(t *testing.T) {
	t.Helper()
	flushes++
	before := collected.Count(isSentinel)
	if err := os.WriteFile(sentinelPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ {
		if collected.Count(isSentinel) > before {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sentinel event never arrived; got:\n%s", eventtest.Dump(collected.All(nil)))
}

func isSentinel(ev event.Event) bool {
	return ev.Resource == sentinelPath && ev.Verdict == event.VerdictAudit
}

// compile builds a RuleSet from policy YAML documents (the sentinel policy
// is always added).
func compile(t *testing.T, postures hostpolicy.Postures, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	host, _ := os.Hostname()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: host, Postures: postures}, append(docs, sentinelPolicy)...)
}

// apply compiles and applies policies; it fails the test on any rule the
// enforcer reports as unenforced.
func apply(t *testing.T, e *Enforcer, postures hostpolicy.Postures, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	rs := compile(t, postures, docs...)
	un, err := e.Apply(rs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(un) > 0 {
		t.Fatalf("unenforced rules: %v", un)
	}
	t.Cleanup(func() {
		if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
			t.Errorf("reset rules: %v", err)
		}
	})
	return rs
}

// ruleID is the ID of the only rule of a policy.
func ruleID(t *testing.T, rs *hostpolicy.RuleSet, policy string) uint32 {
	t.Helper()
	var ids []uint32
	for _, r := range rs.Rules {
		if r.Policy == policy {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("policy %s has %d rules, want 1", policy, len(ids))
	}
	return ids[0]
}

var policy = hostpolicytest.HostPolicy

// copyBusybox copies busybox to path (creating directories) and returns
// path. The name must start with "busybox", so that busybox takes its
// first argument as the applet to run.
func copyBusybox(t *testing.T, path string) string {
	t.Helper()
	if !strings.HasPrefix(filepath.Base(path), "busybox") {
		t.Fatalf("copyBusybox: %s does not start with busybox", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(busybox)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// testDir is a fresh directory under /tmp with a short, known path
// (t.TempDir names are long and random, which the path tests must control).
func testDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join("/tmp/bpflsm", strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
