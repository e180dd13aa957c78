package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The fanotify tier on this host's kernel, with the monitor beside it: a
// network Audit rule with fromSource, which the cgroup socket programs
// cannot decide, is decided on the monitor's telemetry (Enforcer eBPF
// Monitor); a refused setuid's DefaultPosture alert names the monitor, not
// fanotify, which played no part.
func TestFallbackTierAlerts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the fanotify tier and the monitor")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	os.MkdirAll(policies, 0o700)
	os.WriteFile(filepath.Join(policies, "net.yaml"), []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: audit-tcp-from-test
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: `+self+`
  action: Audit
`), 0o600)
	out := filepath.Join(dir, "alerts.jsonl")
	cmd := exec.Command(binary, "--config", "/dev/null", "--host", "testhost", "--lsm", "fanotify", "--socket", "",
		"--gRPC", "0", "--policyDir", policies, "--logPath", out)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	if line := logs.waitFor(t, "enforcer chosen"); !strings.Contains(line, "enforcer=Fanotify") {
		t.Skipf("the fanotify tier is not available here: %s", line)
	}
	if line := logs.waitFor(t, "monitor"); strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "rule not enforced", "fromSource network rules")
	logs.waitFor(t, "kubearmor ready")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	tail := &recordTail{path: out}
	a := waitForRecord(t, tail, map[string]any{"PolicyName": "audit-tcp-from-test", "Type": "MatchedHostPolicy",
		"Operation": "Network", "ProcessName": self, "Action": "Audit", "Result": "Passed", "Enforcer": "eBPF Monitor",
		"HostPID": float64(os.Getpid())})
	if r, _ := a["Resource"].(string); !strings.Contains(r, "type=SOCK_STREAM") || a["Data"] != "syscall=SYS_SOCKET" {
		t.Errorf("network alert Resource/Data: %v", a)
	}

	child := exec.Command(self, "-test.run=^$")
	child.Env = append(os.Environ(), "KUBEARMOR_TEST_SETUID=1")
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("privilege changes: %v\n%s", err, out)
	}
	tail.recs, tail.off = nil, 0
	waitForRecord(t, tail, map[string]any{"PolicyName": "DefaultPosture", "Operation": "Syscall",
		"HostPID": float64(child.Process.Pid), "Data": "syscall=SYS_SETUID userid=0",
		"Result": "Operation not permitted", "Action": "Block", "Enforcer": "eBPF Monitor"})
}

// TestFallbackTierFileOps: fanotify sees only opens and execs. The agent
// names the file operations it cannot refuse (log at start, kubearmor
// status), and the monitor decides file rules on each of them: a Block
// rule alerts as "Audit (Block)" (the operation happened: Result Passed),
// an Audit rule as Audit, e.g. an unlink of an audited file with upstream's
// syscall=SYS_UNLINKAT Data. With no enforcer (monitor only) the same
// alerts are raised.
func TestFallbackTierFileOps(t *testing.T) {
	for _, lsm := range []string{"fanotify", "none"} {
		t.Run(lsm, func(t *testing.T) { testFileOps(t, lsm) })
	}
}

func testFileOps(t *testing.T, lsm string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the fanotify tier and the monitor")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blk, aud := filepath.Join(dir, "blk"), filepath.Join(dir, "audited")
	for _, d := range []string{blk, filepath.Join(blk, "r"), filepath.Join(dir, "policies"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"t", "u", "l", "rn", "c", "o"} {
		os.WriteFile(filepath.Join(blk, f), []byte("x"), 0o600)
	}
	os.WriteFile(aud, []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "policies", "files.yaml"), []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: block-blk
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  file:
    matchDirectories:
    - dir: `+blk+`/
      recursive: true
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: audit-file
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  file:
    matchPaths:
    - path: `+aud+`
  action: Audit
`), 0o600)
	out := filepath.Join(dir, "alerts.jsonl")
	sock := filepath.Join(dir, "run", "kubearmor.sock")
	cmd := exec.Command(binary, "--config", "/dev/null", "--host", "testhost", "--lsm", lsm, "--socket", sock,
		"--gRPC", "0", "--policyDir", filepath.Join(dir, "policies"), "--logPath", out)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	const ops = "truncate, unlink, rmdir, mkdir, mknod, symlink, link, rename, chmod, chown"
	if lsm == "fanotify" {
		if line := logs.waitFor(t, "enforcer chosen"); !strings.Contains(line, "enforcer=Fanotify") {
			t.Skipf("the fanotify tier is not available here: %s", line)
		}
		logs.waitFor(t, "Fanotify cannot refuse these file operations: "+ops)
	}
	if line := logs.waitFor(t, "monitor"); strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	if st := statusText(t, sock); lsm == "fanotify" && !strings.Contains(st, "cannot refuse these file operations: "+ops) {
		t.Errorf("kubearmor status does not list the operations fanotify cannot refuse:\n%s", st)
	}

	p := func(name string) string { return filepath.Join(blk, name) }
	for _, op := range []struct {
		resource, data string
		do             func() error
	}{
		{p("t"), "syscall=SYS_TRUNCATE", func() error { return unix.Truncate(p("t"), 0) }},
		{p("u"), "syscall=SYS_UNLINKAT flags=", func() error { return unix.Unlink(p("u")) }},
		{p("r"), "syscall=SYS_UNLINKAT flags=AT_REMOVEDIR", func() error { return unix.Rmdir(p("r")) }},
		{p("m"), "syscall=SYS_MKDIRAT fd=-100 mode=0700", func() error { return unix.Mkdir(p("m"), 0o700) }},
		{p("n"), "syscall=SYS_MKNODAT fd=-100 mode=0600", func() error { return unix.Mknod(p("n"), unix.S_IFIFO|0o600, 0) }},
		{p("s"), "syscall=SYS_SYMLINKAT fd=-100", func() error { return unix.Symlink("/etc/hostname", p("s")) }},
		{p("l"), "syscall=SYS_LINKAT fd=-100", func() error { return unix.Link(p("l"), filepath.Join(dir, "l2")) }},
		{p("rn"), "syscall=SYS_RENAMEAT fd=-100", func() error { return unix.Rename(p("rn"), filepath.Join(dir, "out")) }},
		{p("c"), "syscall=SYS_FCHMODAT fd=-100 mode=0644", func() error { return unix.Chmod(p("c"), 0o644) }},
		{p("o"), "syscall=SYS_FCHOWNAT userid=0 group=0 mode=0", func() error { return unix.Chown(p("o"), 0, 0) }},
	} {
		if err := op.do(); err != nil {
			t.Fatalf("%s on %s: %v (fanotify cannot refuse it)", op.data, op.resource, err)
		}
		waitForRecord(t, &recordTail{path: out}, map[string]any{"PolicyName": "block-blk", "Type": "MatchedHostPolicy",
			"Operation": "File", "Resource": op.resource, "Data": op.data, "ProcessName": self, "HostPID": float64(os.Getpid()),
			"Action": "Audit (Block)", "Result": "Passed", "Enforcer": "eBPF Monitor"})
	}
	if err := os.Remove(aud); err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, &recordTail{path: out}, map[string]any{"PolicyName": "audit-file", "Type": "MatchedHostPolicy",
		"Operation": "File", "Resource": aud, "Data": "syscall=SYS_UNLINKAT flags=", "Action": "Audit", "Result": "Passed",
		"Enforcer": "eBPF Monitor", "HostPID": float64(os.Getpid())})
}
