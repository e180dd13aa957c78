package bpflsm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// run execs path with args and returns the error of starting and waiting.
func run(path string, args ...string) error {
	return exec.Command(path, args...).Run()
}

func wantDenied(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("%s: got %v, want permission denied", what, err)
	}
}

func wantAllowed(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: got %v, want success", what, err)
	}
}

// wantVerdict waits for the event of a decision about resource and checks
// what every verdict event must carry.
func wantVerdict(t *testing.T, rule uint32, v event.Verdict, op, resource string) event.Event {
	t.Helper()
	ev := waitEvent(t, op+" "+resource, func(ev event.Event) bool {
		return ev.Resource == resource && ev.RuleID == rule && ev.Verdict == v
	})
	if ev.Operation != op {
		t.Errorf("Operation = %q, want %q", ev.Operation, op)
	}
	if ev.Enforcer != "BPFLSM" {
		t.Errorf("Enforcer = %q", ev.Enforcer)
	}
	denied := v == event.VerdictBlock || v == event.VerdictPostureBlock
	if denied && ev.Retval != -13 {
		t.Errorf("Retval = %d, want -13", ev.Retval)
	}
	if !denied && ev.Retval != 0 {
		t.Errorf("Retval = %d, want 0", ev.Retval)
	}
	if ev.HostPID == 0 || ev.PID == 0 || ev.HostPPID == 0 || ev.PidNS == 0 || ev.MntNS == 0 || ev.CgroupID == 0 || ev.Time.IsZero() {
		t.Errorf("identity fields missing: %+v", ev)
	}
	return ev
}

func TestExecMatchPath(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	blocked := copyBusybox(t, filepath.Join(dir, "busybox-blocked"))
	other := copyBusybox(t, filepath.Join(dir, "busybox-other"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-path", `
  process:
    matchPaths:
    - path: `+blocked+`
  action: Block
`))
	id := ruleID(t, rs, "exec-path")

	wantDenied(t, run(blocked, "true"), "exec blocked path")
	wantAllowed(t, run(other, "true"), "exec other path")

	ev := wantVerdict(t, id, event.VerdictBlock, event.OpProcess, blocked)
	if ev.Data != "lsm=SECURITY_BPRM_CHECK" {
		t.Errorf("Data = %q", ev.Data)
	}
	self, _ := os.Executable()
	if ev.Exe != blocked || ev.ParentExe != self {
		t.Errorf("Exe = %q, ParentExe = %q; want %q, %q", ev.Exe, ev.ParentExe, blocked, self)
	}
	if ev.UID != 0 || ev.Comm == "" {
		t.Errorf("UID = %d, Comm = %q", ev.UID, ev.Comm)
	}
	flush(t)
	if n := collected.Count(func(ev event.Event) bool { return ev.Resource == other }); n != 0 {
		t.Errorf("%d events for the allowed exec", n)
	}
}

func TestExecName(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	a := copyBusybox(t, filepath.Join(dir, "a", "busybox-named"))
	b := copyBusybox(t, filepath.Join(dir, "b", "c", "busybox-named"))
	other := copyBusybox(t, filepath.Join(dir, "a", "busybox-named2"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-name", `
  process:
    matchPaths:
    - execname: busybox-named
  action: Block
`))
	id := ruleID(t, rs, "exec-name")
	wantDenied(t, run(a, "true"), "exec name in a")
	wantDenied(t, run(b, "true"), "exec name in b/c")
	wantAllowed(t, run(other, "true"), "exec other name")
	wantVerdict(t, id, event.VerdictBlock, event.OpProcess, a)
	wantVerdict(t, id, event.VerdictBlock, event.OpProcess, b)
}

func TestExecDirectory(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	top := copyBusybox(t, filepath.Join(dir, "d", "busybox-bb"))
	deep := copyBusybox(t, filepath.Join(dir, "d", "sub", "busybox-bb"))
	outside := copyBusybox(t, filepath.Join(dir, "busybox-bb"))

	for _, recursive := range []bool{false, true} {
		name := "exec-dir"
		if recursive {
			name = "exec-dir-recursive"
		}
		t.Run(name, func(t *testing.T) {
			rs := apply(t, e, hostpolicy.Postures{}, policy(name, `
  process:
    matchDirectories:
    - dir: `+dir+`/d/
      recursive: `+map[bool]string{false: "false", true: "true"}[recursive]+`
  action: Block
`))
			id := ruleID(t, rs, name)
			wantDenied(t, run(top, "true"), "exec in the directory")
			if recursive {
				wantDenied(t, run(deep, "true"), "exec in a subdirectory")
				wantVerdict(t, id, event.VerdictBlock, event.OpProcess, deep)
			} else {
				wantAllowed(t, run(deep, "true"), "exec in a subdirectory")
			}
			wantAllowed(t, run(outside, "true"), "exec outside")
			wantVerdict(t, id, event.VerdictBlock, event.OpProcess, top)
		})
	}
}

func TestExecPattern(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	hit := copyBusybox(t, filepath.Join(dir, "x1", "busybox-ab-tool"))
	hitClass := copyBusybox(t, filepath.Join(dir, "x2", "busybox-q-tool"))
	missClass := copyBusybox(t, filepath.Join(dir, "y2", "busybox-q-tool"))
	missSlash := copyBusybox(t, filepath.Join(dir, "x1", "deeper", "busybox-ab-tool"))
	missSuffix := copyBusybox(t, filepath.Join(dir, "x1", "busybox-ab-tools"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-pattern", `
  process:
    matchPatterns:
    - pattern: `+dir+`/x[0-9]/busybox-*-t?ol
  action: Block
`))
	id := ruleID(t, rs, "exec-pattern")
	wantDenied(t, run(hit, "true"), "exec matching pattern")
	wantDenied(t, run(hitClass, "true"), "exec matching pattern with class")
	wantAllowed(t, run(missClass, "true"), "exec outside the class")
	wantAllowed(t, run(missSlash, "true"), "exec where * would have to cross /")
	wantAllowed(t, run(missSuffix, "true"), "exec with a longer name")
	wantVerdict(t, id, event.VerdictBlock, event.OpProcess, hit)
	wantVerdict(t, id, event.VerdictBlock, event.OpProcess, hitClass)
}

func TestExecFromSource(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	shell := copyBusybox(t, filepath.Join(dir, "busybox-src-sh"))
	otherShell := copyBusybox(t, filepath.Join(dir, "busybox-other-sh"))
	target := copyBusybox(t, filepath.Join(dir, "busybox-target"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-source", `
  process:
    matchPaths:
    - path: `+target+`
      fromSource:
      - path: `+shell+`
  action: Block
`))
	id := ruleID(t, rs, "exec-source")

	// "; echo" keeps the shell from exec'ing the target in its own process.
	out, err := exec.Command(shell, "sh", "-c", target+" true; echo rc=$?").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=126") || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("target from the source shell: err=%v out=%q, want rc=126 and Permission denied", err, out)
	}
	out, err = exec.Command(otherShell, "sh", "-c", target+" true; echo rc=$?").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rc=0") {
		t.Fatalf("target from another shell: err=%v out=%q, want rc=0", err, out)
	}
	wantAllowed(t, run(target, "true"), "target from the test binary")
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpProcess, target)
	if ev.ParentExe != shell {
		t.Errorf("ParentExe = %q, want %q", ev.ParentExe, shell)
	}
}

func TestExecOwnerOnly(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	owned := copyBusybox(t, filepath.Join(dir, "busybox-owned"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-owner", `
  process:
    matchPaths:
    - path: `+owned+`
      ownerOnly: true
  action: Block
`))
	id := ruleID(t, rs, "exec-owner")
	wantAllowed(t, run(owned, "true"), "exec by the owner (root)")

	cmd := exec.Command(owned, "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	wantDenied(t, cmd.Run(), "exec by uid 65534")
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpProcess, owned)
	if ev.UID != 65534 {
		t.Errorf("UID = %d, want 65534", ev.UID)
	}
}

// A 255-byte path: rules are not limited to 64 characters or a depth.
func TestExecLongPath(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	p := dir
	for len(p) < 255-41 {
		p += "/" + strings.Repeat("d", 40)
	}
	p += "/busybox-" + strings.Repeat("x", 254-len(p)-8)
	if len(p) != 255 {
		t.Fatalf("built a %d-byte path", len(p))
	}
	long := copyBusybox(t, p)
	sibling := copyBusybox(t, p[:len(p)-1]+"y")
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-long", `
  process:
    matchPaths:
    - path: `+long+`
  action: Block
`))
	id := ruleID(t, rs, "exec-long")
	wantDenied(t, run(long, "true"), "exec the 255-byte path")
	wantAllowed(t, run(sibling, "true"), "exec its sibling")
	wantVerdict(t, id, event.VerdictBlock, event.OpProcess, long)
}

// Rules apply to processes that started before them.
func TestExecStartedBeforeApply(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	target := copyBusybox(t, filepath.Join(dir, "busybox-late"))
	cmd := exec.Command(busybox, "sh", "-c", "read x; "+target+" true; echo rc=$?")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rs := apply(t, e, hostpolicy.Postures{}, policy("exec-late", `
  process:
    matchPaths:
    - path: `+target+`
  action: Block
`))
	stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("shell: %v (%s)", err, out.String())
	}
	if !strings.Contains(out.String(), "rc=126") {
		t.Fatalf("output %q, want rc=126", out.String())
	}
	wantVerdict(t, ruleID(t, rs, "exec-late"), event.VerdictBlock, event.OpProcess, target)
}

// A second Apply switches a path from blocked to allowed and back while the
// programs stay attached.
func TestExecSwap(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	target := copyBusybox(t, filepath.Join(dir, "busybox-swap"))
	block := policy("exec-swap", `
  process:
    matchPaths:
    - path: `+target+`
  action: Block
`)
	links := len(e.links)
	apply(t, e, hostpolicy.Postures{}, block)
	wantDenied(t, run(target, "true"), "blocked")
	apply(t, e, hostpolicy.Postures{})
	wantAllowed(t, run(target, "true"), "allowed after the rule was removed")
	apply(t, e, hostpolicy.Postures{}, block)
	wantDenied(t, run(target, "true"), "blocked again")
	if len(e.links) != links {
		t.Errorf("links changed from %d to %d", links, len(e.links))
	}
}

func TestProcessAllowList(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	shell := copyBusybox(t, filepath.Join(dir, "busybox-sh"))
	allowed := copyBusybox(t, filepath.Join(dir, "busybox-allowed"))
	other := copyBusybox(t, filepath.Join(dir, "busybox-other"))
	allow := policy("exec-allow", `
  process:
    matchPaths:
    - path: `+allowed+`
      fromSource:
      - path: `+shell+`
  action: Allow
`)
	script := allowed + " true; echo allowed=$?; " + other + " true; echo other=$?"

	t.Run("audit", func(t *testing.T) {
		apply(t, e, hostpolicy.Postures{File: "audit"}, allow)
		out, err := exec.Command(shell, "sh", "-c", script).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "allowed=0") || !strings.Contains(string(out), "other=0") {
			t.Fatalf("err=%v out=%q, want both allowed", err, out)
		}
		wantVerdict(t, 0, event.VerdictPostureAudit, event.OpProcess, other)
		flush(t)
		if n := collected.Count(func(ev event.Event) bool { return ev.Resource == allowed }); n != 0 {
			t.Errorf("%d events for the allowed program", n)
		}
	})
	t.Run("block", func(t *testing.T) {
		apply(t, e, hostpolicy.Postures{File: "block"}, allow)
		out, err := exec.Command(shell, "sh", "-c", script).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "allowed=0") || !strings.Contains(string(out), "other=126") {
			t.Fatalf("err=%v out=%q, want allowed=0 other=126", err, out)
		}
		wantVerdict(t, 0, event.VerdictPostureBlock, event.OpProcess, other)
		// Programs the allow-list does not name as source are not affected.
		wantAllowed(t, run(other, "true"), "other from the test binary")
	})
}
