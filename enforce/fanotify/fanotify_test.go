package fanotify

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

func TestExecAndOpen(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked-true")
	allowed := copyFile(t, "/bin/true", fs+"/bin/ok-true")
	inDir := copyFile(t, "/bin/true", fs+"/blockdir/true")
	belowDir := copyFile(t, "/bin/true", fs+"/blockdir/sub/true") // the dir rule is not recursive
	secret := writeFile(t, fs+"/secret", "s")
	deep := writeFile(t, fs+"/sdir/a/b/f", "d")
	other := writeFile(t, fs+"/other", "o")

	rs := compile(t, hostpolicy.Postures{}, policy("exec", `  process:
    matchPaths:
    - path: `+blocked+`
    matchDirectories:
    - dir: `+fs+`/blockdir/
  action: Block`), policy("open", `  file:
    matchPaths:
    - path: `+secret+`
    matchDirectories:
    - dir: `+fs+`/sdir/
      recursive: true
  action: Block`))
	_, events, unenforced := start(t, Options{NoNetwork: true}, rs)
	if len(unenforced) != 0 {
		t.Fatalf("unenforced: %v", unenforced)
	}

	for _, c := range []struct {
		bin    string
		denied bool
		rule   string
	}{
		{blocked, true, blocked},
		{inDir, true, fs + "/blockdir/"},
		{belowDir, false, ""},
		{allowed, false, ""},
	} {
		if denied, out := run(t, c.bin); denied != c.denied {
			t.Fatalf("exec %s: %q, want denied=%v", c.bin, out, c.denied)
		}
		if c.denied {
			id := ruleID(t, rs, c.rule)
			ev := events.Wait(t, "exec of "+c.bin, eventWait, func(ev event.Event) bool { return ev.Resource == c.bin })
			if ev.Operation != event.OpProcess || ev.Verdict != event.VerdictBlock || ev.RuleID != id ||
				ev.Enforcer != EnforcerFanotify || ev.Retval != -1 || ev.HostPID == 0 || ev.ParentExe == "" {
				t.Errorf("exec event: %+v (want rule %d)", ev, id)
			}
		}
	}

	for _, c := range []struct {
		path   string
		denied bool
		rule   string
	}{
		{secret, true, secret},
		{deep, true, fs + "/sdir/"},
		{other, false, ""},
	} {
		if denied, out := run(t, "/bin/cat", c.path); denied != c.denied {
			t.Fatalf("cat %s: %q, want denied=%v", c.path, out, c.denied)
		}
		if c.denied {
			id := ruleID(t, rs, c.rule)
			ev := events.Wait(t, "open of "+c.path, eventWait, func(ev event.Event) bool { return ev.Resource == c.path })
			if ev.Operation != event.OpFile || ev.Verdict != event.VerdictBlock || ev.RuleID != id ||
				ev.Exe != "/usr/bin/cat" && ev.Exe != "/bin/cat" {
				t.Errorf("open event: %+v (want rule %d)", ev, id)
			}
		}
	}

	// The agent's own process is never denied.
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("the agent's own open was denied: %v", err)
	}
}

func TestReadOnlyAuditAndReplace(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	ro := writeFile(t, fs+"/ro", "r")
	audited := writeFile(t, fs+"/audited", "a")
	rs := compile(t, hostpolicy.Postures{}, policy("ro", `  file:
    matchPaths:
    - path: `+ro+`
      readOnly: true
  action: Block`), policy("audit", `  file:
    matchPaths:
    - path: `+audited+`
  action: Audit`))
	e, events, _ := start(t, Options{NoNetwork: true}, rs)

	if denied, out := run(t, "/bin/cat", ro); denied {
		t.Fatalf("read of a readOnly file: %s", out)
	}
	if denied, out := run(t, "/bin/sh", "-c", "echo x >> "+ro); !denied {
		t.Fatalf("write of a readOnly file was allowed: %s", out)
	}
	ev := events.Wait(t, "write of "+ro, eventWait, func(ev event.Event) bool { return ev.Resource == ro })
	if ev.Verdict != event.VerdictBlock {
		t.Errorf("readOnly write event: %+v", ev)
	}

	if denied, out := run(t, "/bin/cat", audited); denied {
		t.Fatalf("audited read: %s", out)
	}
	ev = events.Wait(t, "audited open", eventWait, func(ev event.Event) bool { return ev.Resource == audited })
	if ev.Verdict != event.VerdictAudit || ev.RuleID != ruleID(t, rs, audited) || ev.Retval != 0 {
		t.Errorf("audit event: %+v", ev)
	}

	// Replacing the rules lifts the block at once.
	if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
		t.Fatal(err)
	}
	if denied, out := run(t, "/bin/sh", "-c", "echo x >> "+ro); denied {
		t.Fatalf("write after the rules were removed: %s", out)
	}
}

func TestAllowListPosture(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	ok := copyFile(t, "/bin/true", fs+"/bin/allowed")
	other := copyFile(t, "/bin/true", fs+"/bin/other")
	// The allow-list is for one source program only, a copy of sh, so that
	// no other program on the host is put in allow-list mode. The marks do
	// cover every filesystem, as allow-list mode needs, so the enforcer runs
	// in a child process (see childEnforcer).
	sh := copyFile(t, "/bin/sh", fs+"/bin/sh")
	child := startChild(t, policy("allow", `  process:
    matchPaths:
    - path: `+ok+`
      fromSource:
      - path: `+sh+`
  action: Allow`), "", "FANOTIFY_TEST_FILE_POSTURE=block")

	if out, err := exec.Command(sh, "-c", ok).CombinedOutput(); err != nil {
		t.Fatalf("allowed program: %v %s", err, out)
	}
	out, err := exec.Command(sh, "-c", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("program outside the allow-list: %v %s", err, out)
	}
	line := child.waitEvent(t, "resource="+other)
	if want := fmt.Sprintf("event verdict=%d rule=0 op=Process", event.VerdictPostureBlock); !strings.HasPrefix(line, want) {
		t.Errorf("posture event: %q, want %q...", line, want)
	}
	// Other programs are not in allow-list mode.
	if err := exec.Command(other).Run(); err != nil {
		t.Errorf("exec from the test (not the allow-listed source): %v", err)
	}
}

func TestFailOpen(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked")
	rs := compile(t, hostpolicy.Postures{}, policy("exec", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block`))
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // runs after the enforcer's cleanup
	opts := Options{NoNetwork: true, Deadline: 50e6, stall: func() { <-stuck }}
	_, events, _ := start(t, opts, rs)

	// A decision that never comes: the exec is allowed at the deadline.
	if denied, out := run(t, blocked); denied {
		t.Fatalf("exec with a stuck decision: %s", out)
	}
	ev := events.Wait(t, "fail-open report", eventWait, func(ev event.Event) bool { return strings.Contains(ev.Data, "fail open") })
	if ev.Operation != event.OpProcess || ev.Resource != blocked || ev.Enforcer != EnforcerFanotify || ev.Verdict != event.VerdictPostureAudit {
		t.Errorf("fail-open event: %+v", ev)
	}
}

func TestNetwork(t *testing.T) {
	needRoot(t)
	cgPath, cgFD := testCgroup(t)
	e, events, _ := start(t, Options{cgroup: cgPath}, compile(t, hostpolicy.Postures{}))

	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	if got := inCgroup(t, cgFD, "tcp", "FANOTIFY_TEST_ADDR="+addr); got != "ok" {
		t.Fatalf("TCP connect with no rules: %s", got)
	}

	// A socket made before the rules arrive is stopped at connect.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FANOTIFY_TEST_CHILD=tcp-late", "FANOTIFY_TEST_ADDR="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	r := bufio.NewReader(stdout)
	if got := readLine(t, r); got != "socket" {
		t.Fatalf("child: %q", got)
	}
	rs := compile(t, hostpolicy.Postures{}, policy("net", `  network:
    matchProtocols:
    - protocol: tcp
    - protocol: udp
  action: Block`))
	if _, err := e.Apply(rs); err != nil {
		t.Fatal(err)
	}
	_, _ = stdin.Write([]byte("go\n"))
	if got := readLine(t, r); got != "connect: operation not permitted" {
		t.Fatalf("TCP connect under a tcp Block rule: %q", got)
	}
	ev := events.Wait(t, "connect verdict", eventWait, func(ev event.Event) bool { return strings.HasPrefix(ev.Data, "syscall=SYS_CONNECT ") })
	if ev.RuleID != ruleID(t, rs, "tcp") || ev.Verdict != event.VerdictBlock || ev.Enforcer != EnforcerCgroup ||
		ev.Operation != event.OpNetwork || ev.Resource != "protocol=TCP type=SOCK_STREAM" {
		t.Errorf("connect event: %+v", ev)
	}

	if got := inCgroup(t, cgFD, "udp"); got != "operation not permitted" {
		t.Fatalf("UDP socket under a udp Block rule: %q", got)
	}
	ev = events.Wait(t, "socket verdict", eventWait, func(ev event.Event) bool { return ev.Data == "syscall=SYS_SOCKET protocol=UDP type=SOCK_DGRAM" })
	if ev.RuleID != ruleID(t, rs, "udp") || ev.HostPID == 0 ||
		ev.Socket != (event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_UDP}) {
		t.Errorf("socket event: %+v", ev)
	}

	// The rules are replaced in place.
	if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
		t.Fatal(err)
	}
	if got := inCgroup(t, cgFD, "udp"); got != "ok" {
		t.Fatalf("UDP socket after the rules were removed: %q", got)
	}
}

// TestKilledAgentLeavesHostUsable runs the enforcer in a child process,
// proves it enforces, kills it with SIGKILL and proves execs and sockets
// work again: nothing of the tier outlives its process.
func TestKilledAgentLeavesHostUsable(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	cgPath, cgFD := testCgroup(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked")
	child := startChild(t, policy("kill", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block`)+"\n---\n"+policy("net", `  network:
    matchProtocols:
    - protocol: udp
  action: Block`), cgPath)
	if err := exec.Command(blocked).Run(); !isEPERM(err) {
		t.Fatalf("exec under the child's enforcer: %v", err)
	}
	child.waitEvent(t, "resource="+blocked)
	if got := inCgroup(t, cgFD, "udp"); got != "operation not permitted" {
		t.Fatalf("UDP socket under the child's enforcer: %q", got)
	}
	child.waitEvent(t, "protocol=UDP")

	child.kill()

	if err := exec.Command(blocked).Run(); err != nil {
		t.Fatalf("exec after SIGKILL of the enforcer: %v", err)
	}
	if got := inCgroup(t, cgFD, "udp"); got != "ok" {
		t.Fatalf("UDP socket after SIGKILL of the enforcer: %q", got)
	}
}

func TestUnenforced(t *testing.T) {
	needRoot(t)
	rs := compile(t, hostpolicy.Postures{}, policy("u", `  process:
    matchPaths:
    - path: /usr/bin/env
      allowedArgs: [x]
  file:
    matchPaths:
    - path: /proc/kcore
  network:
    matchProtocols:
    - protocol: udp
      fromSource:
      - path: /usr/bin/nc
  capabilities:
    matchCapabilities:
    - capability: net_raw
  action: Block`))
	e, err := New(Options{NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	un, err := e.Apply(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"/usr/bin/env", "/proc/kcore", "udp", "net_raw"} {
		why, ok := un[ruleID(t, rs, v)]
		if !ok || why == "" {
			t.Errorf("rule %s: not reported unenforced (%v)", v, un)
		}
	}
	if len(e.marks) != 0 {
		t.Errorf("marks for rules that are not enforced: %v", e.marks)
	}
}

// TestSupportedNeverHoldsExecs: probing the kernel while this process forks
// and execs never leaves an exec waiting. Supported once marked the root
// filesystem for exec permission events in a group nobody read; a child
// forked in that instant kept the group alive until its own exec, which
// the mark then held, and with it every exec on the host's root filesystem
// until this process ended (with that Supported this test stalls in its
// first second). The execs run in a goroutine, so that a regression fails
// this test after a minute rather than holding the whole run.
func TestSupportedNeverHoldsExecs(t *testing.T) {
	needRoot(t)
	if err := Supported(); err != nil {
		t.Skipf("no fanotify tier here: %v", err)
	}
	const n = 1000
	probed := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := Supported(); err != nil {
				probed <- err
				return
			}
		}
		probed <- nil
	}()
	execd := make(chan error, 1)
	go func() {
		for i := 0; i < n/4; i++ {
			if err := exec.Command("/bin/true").Run(); err != nil {
				execd <- fmt.Errorf("exec %d beside Supported: %w", i, err)
				return
			}
		}
		execd <- nil
	}()
	select {
	case err := <-execd:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("an exec beside Supported has waited a minute: it waits on a probe's fanotify group, and so does every exec on this host's root filesystem until this test process ends")
	}
	if err := <-probed; err != nil {
		t.Fatal(err)
	}
}

// TestStackedNeverMarked: the tier never marks an overlayfs (nor any
// stacked filesystem), even when a rule's directory holds one, so opens and
// execs through it never deadlock the tier. With the overlay and the
// filesystem holding its layers both marked, the kernel (6.18) opens the
// layer's file for the reader inside the reader's own read(2), and that
// open waits for the same reader: the open through the overlay, the
// reader, and every later open on both filesystems hung (this test's first
// open, with the old marks). The enforcer runs in a child, so that a
// regression is a failure after a bounded wait rather than a hung test
// process. A rule on a path of the overlay itself is reported unenforced.
func TestStackedNeverMarked(t *testing.T) {
	needRoot(t)
	base := scratchFS(t)
	for _, d := range []string{"/l/lower", "/l/upper", "/l/work", "/m"} {
		if err := os.MkdirAll(base+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, base+"/l/lower/file", "through the overlay\n")
	copyFile(t, "/bin/true", base+"/l/lower/true")
	secret := writeFile(t, base+"/l/secret", "s")
	opts := "lowerdir=" + base + "/l/lower,upperdir=" + base + "/l/upper,workdir=" + base + "/l/work"
	if err := unix.Mount("overlay", base+"/m", "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount an overlayfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(base+"/m", unix.MNT_DETACH) })

	// The pattern's literal prefix is base/: its filesystem and every one
	// mounted below it are the rule's, the overlay among them.
	child := startChild(t, policy("stacked", "  file:\n    matchPatterns:\n    - pattern: "+base+"/*/secret\n  action: Block"), "")
	within := func(argv ...string) (denied bool, out string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("%v did not finish in 20 s: the tier deadlocked on the overlay", argv)
		}
		out = string(b)
		denied = strings.Contains(out, "not permitted")
		if err != nil && !denied {
			t.Fatalf("%v: %v %q", argv, err, out)
		}
		return denied, out
	}
	if d, out := within("/bin/cat", base+"/m/file"); d || out != "through the overlay\n" {
		t.Fatalf("cat through the overlay: %q", out)
	}
	if d, out := within("/bin/sh", "-c", "exec "+base+"/m/true"); d {
		t.Fatalf("exec through the overlay: %q", out)
	}
	// The tier still decides the plain filesystem.
	if d, out := within("/bin/cat", secret); !d {
		t.Fatalf("cat %s: %q", secret, out)
	}
	child.waitEvent(t, "resource="+secret)

	// A rule whose own path is on the overlay: reported, no mark.
	rs := compile(t, hostpolicy.Postures{}, policy("on-overlay", "  file:\n    matchPaths:\n    - path: "+base+"/m/file\n  action: Block"))
	e, _, un := start(t, Options{NoNetwork: true}, rs)
	if why := un[ruleID(t, rs, base+"/m/file")]; !strings.Contains(why, "overlay") {
		t.Errorf("rule on the overlay: reported %q", why)
	}
	if len(e.marks) != 0 {
		t.Errorf("marks for a rule on an overlay: %v", e.marks)
	}
}
