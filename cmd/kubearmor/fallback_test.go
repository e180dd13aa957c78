package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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

// The fanotify tier cannot outlive the agent's process, and `kubearmor
// status` says so on the enforcer's line (issue 21).
func TestFanotifyStatusLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the fanotify tier")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "ka.sock")
	cmd := exec.Command(binary, "--config", "/dev/null", "--lsm", "fanotify", "--socket", sock,
		"--gRPC", "0", "--policyDir", filepath.Join(dir, "policies"), "--hostVisibility", "none")
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	if line := logs.waitFor(t, "enforcer chosen"); !strings.Contains(line, "enforcer=Fanotify") {
		t.Skipf("the fanotify tier is not available here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	st := statusText(t, sock)
	for _, l := range strings.Split(st, "\n") {
		if strings.HasPrefix(l, "Enforcer:") {
			if !strings.Contains(l, "Fanotify") || !strings.Contains(l, "enforcement ends with this process") {
				t.Errorf("status does not say the tier ends with the process: %q", l)
			}
			return
		}
	}
	t.Errorf("no Enforcer line in status:\n%s", st)
}
