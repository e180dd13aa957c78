package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/runtimes/runtimetest"
)

// binary is the kubearmor binary built once for the end-to-end tests here.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv("KUBEARMOR_TEST_SETUID") != "" {
		privilegeChanges()
		return
	}
	if os.Getenv(attackEnv) != "" { // selfdefence_test.go's attacker (attack_test.go)
		os.Exit(attackMain(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "kubearmor-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "kubearmor")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := runtimetest.RunLocked(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestPolicyCheck(t *testing.T) {
	examples, _ := filepath.Glob("../../examples/policies/*.yaml")
	if len(examples) == 0 {
		t.Fatal("no example policies")
	}
	out, err := exec.Command(binary, append([]string{"policy", "check"}, examples...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("examples must pass: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: bad
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: usr/bin/apt
  severity: 12
`), 0o600)
	cmd := exec.Command(binary, "policy", "check", bad)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d, want 1: %v\n%s", cmd.ProcessState.ExitCode(), err, out)
	}
	for _, want := range []string{
		bad + `:11: spec.process.matchPaths[0].path: must be absolute: "usr/bin/apt"`,
		bad + ":12: spec.severity: must be between 1 and 10, not 12",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code := exitCode(exec.Command(binary, "policy", "check")); code != 2 {
		t.Errorf("no files: exit %d, want 2", code)
	}
}

func TestPolicyRenderAppArmor(t *testing.T) {
	examples, _ := filepath.Glob("../../examples/policies/*.yaml")
	out, err := exec.Command(binary, append([]string{"policy", "render", "--apparmor"}, examples...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"# ---- profile kubearmor-host", `audit "/etc/shadow"`, "audit-sensitive-files.yaml:15"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered profiles lack %q:\n%s", want, out)
		}
	}
	if code := exitCode(exec.Command(binary, "policy", "render", examples[0])); code != 2 {
		t.Errorf("render without --apparmor: exit %d, want 2", code)
	}
}

// renderPolicies is one file of several policies: fromSource profiles, an
// allow-list of files, processes and network for one program, and a
// host-wide file-only allow-list, so that the rendered file holds several
// profiles. Under block posture the file-only allow-list keeps "/** px,"
// without the blanket file rule: the shape the parser refused while the
// renderer included <abstractions/base> (its "owner @{HOME}/.Private/**
// mrixwlk," conflicts with px).
const renderPolicies = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: render-block
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: /usr/bin/wget
    - path: /usr/bin/curl
      fromSource:
      - path: /usr/bin/bash
  file:
    matchDirectories:
    - dir: /root/.ssh/
      recursive: true
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: render-allow
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchDirectories:
    - dir: /var/lib/app/
      recursive: true
      fromSource:
      - path: /usr/sbin/appd
  process:
    matchPaths:
    - path: /usr/bin/true
      fromSource:
      - path: /usr/sbin/appd
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/sbin/appd
  action: Allow
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: render-file-allow
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /etc/hosts
    - path: /etc/resolv.conf
      readOnly: true
  action: Allow
`

// TestPolicyRenderLoads: what `policy render --apparmor` prints loads with
// apparmor_parser as one file (issue 18: one abi line per profile made the
// parser refuse it), for every example policy, all of them at once, and a
// file of several policies, under both postures.
func TestPolicyRenderLoads(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		if parser, err = exec.LookPath("/usr/sbin/apparmor_parser"); err != nil {
			t.Skip("apparmor_parser is not installed (apt-get install apparmor)")
		}
	}
	dir := t.TempDir()
	multi := filepath.Join(dir, "multi.yaml")
	if err := os.WriteFile(multi, []byte(renderPolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob("../../examples/policies/*.yaml")
	sets := [][]string{examples, {multi}, append([]string{multi}, examples...)}
	for _, e := range examples {
		sets = append(sets, []string{e})
	}
	for i, files := range sets {
		for _, posture := range []string{"audit", "block"} {
			args := append([]string{"policy", "render", "--apparmor", "--posture", posture}, files...)
			out, err := exec.Command(binary, args...).Output()
			if err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			if n := strings.Count(string(out), "\nabi <"); n != 1 {
				t.Errorf("%v: %d abi lines, want 1", files, n)
			}
			f := filepath.Join(dir, fmt.Sprintf("rendered-%d-%s", i, posture))
			if err := os.WriteFile(f, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command(parser, "-Q", "-K", f).CombinedOutput(); err != nil {
				t.Errorf("apparmor_parser rejects the rendering of %v (posture %s): %v\n%s\n--- file:\n%s", files, posture, err, msg, out)
			}
		}
	}
}

func exitCode(cmd *exec.Cmd) int {
	cmd.Run()
	return cmd.ProcessState.ExitCode()
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"policy", "--help"}, {"policy", "check", "--help"},
		{"logs", "--help"}, {"status", "--help"}, {"fleet", "--help"}, {"fleet", "status", "--help"}} {
		cmd := exec.Command(binary, args...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage: kubearmor") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if code := exitCode(exec.Command(binary, "frobnicate")); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// logWatcher follows the daemon's log and lets a test wait for a line.
type logWatcher struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{}
}

func watchLog(t *testing.T, cmd *exec.Cmd) *logWatcher {
	r, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &logWatcher{more: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

// waitFor returns once a log line contains every part; it fails after a
// generous hang guard, never on how fast the daemon was.
func (w *logWatcher) waitFor(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	seen := 0
	for {
		w.mu.Lock()
		for ; seen < len(w.lines); seen++ {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(w.lines[seen], p)
			}
			if ok {
				line := w.lines[seen]
				w.mu.Unlock()
				return line
			}
		}
		w.mu.Unlock()
		select {
		case <-w.more:
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no log line with %q; log so far:\n%s", parts, strings.Join(w.lines, "\n"))
		}
	}
}

func TestDaemonLifecycle(t *testing.T) {
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	cfgFile := filepath.Join(dir, "kubearmor.yaml")
	os.WriteFile(cfgFile, []byte("cluster: test\nhost: testhost\nlsm: none\nsocket: \"\"\ngRPC: \"0\"\n"), 0o600)
	cmd := exec.Command(binary, "--config", cfgFile, "--policyDir", policies)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	logs.waitFor(t, "kubearmor ready", "enforcer monitor only; 0 policies, 0 rules")
	if info, err := os.Stat(policies); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("policy directory must be created 0700: %v %v", info, err)
	}

	policy := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: block-sleep
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  process:
    matchPaths:
    - path: /usr/bin/sleep
  action: Block
`
	os.WriteFile(filepath.Join(policies, "block.yaml"), []byte(policy), 0o600)
	logs.waitFor(t, "policies in force", "policies=block-sleep", "1 rules, 1 not enforced")
	logs.waitFor(t, "rule not enforced", "policy=block-sleep", "no kernel enforcer")

	os.WriteFile(filepath.Join(policies, "block.yaml"), []byte(strings.Replace(policy, "/usr/bin/sleep", "usr/bin/sleep", 1)), 0o600)
	logs.waitFor(t, "policy rejected", "block.yaml:11: spec.process.matchPaths[0].path: must be absolute")
	logs.waitFor(t, "its last good version stays in force", "kept=block-sleep")

	// SIGHUP: a broken config is refused and the running one stays.
	os.WriteFile(cfgFile, []byte("cluster: test\nbogus: 1\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.waitFor(t, "configuration rejected", "bogus: unknown key")
	os.WriteFile(cfgFile, []byte("cluster: test\nhost: otherhost\nlsm: none\nsocket: \"\"\ngRPC: \"0\"\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.waitFor(t, "reloaded", "0 policies, 0 rules")

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SIGTERM must stop the daemon with status 0: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	logs.waitFor(t, "stopping kubearmor", "signal=terminated")
}

func TestDaemonRefusesBadConfig(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "kubearmor.yaml")
	os.WriteFile(cfgFile, []byte("cluster: a\nmaxAlertPerSec: many\n"), 0o600)
	cmd := exec.Command(binary, "--config", cfgFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(cmd); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), cfgFile+`:2: maxAlertPerSec: expected an integer, found "many"`) {
		t.Fatalf("error must name file, line and key:\n%s", stderr.String())
	}
}

// privilegeChanges runs in a child process: a setgid/setuid pair to nobody,
// then a setuid back to root that the kernel refuses with EPERM.
func privilegeChanges() {
	if err := syscall.Setgid(65534); err != nil {
		os.Exit(3)
	}
	if err := syscall.Setuid(65534); err != nil {
		os.Exit(4)
	}
	if err := syscall.Setuid(0); err != syscall.EPERM {
		os.Exit(5)
	}
	os.Exit(0)
}

// recordTail follows the agent's logPath JSON lines, reading only what was
// appended since the last look (the file grows fast with telemetry on).
type recordTail struct {
	path string
	off  int64
	part []byte
	recs []map[string]any
}

func (r *recordTail) read(t *testing.T) {
	f, err := os.Open(r.path)
	if err != nil {
		return
	}
	defer f.Close()
	f.Seek(r.off, io.SeekStart)
	data, _ := io.ReadAll(f)
	r.off += int64(len(data))
	data = append(r.part, data...)
	lines := bytes.Split(data, []byte("\n"))
	r.part = append([]byte(nil), lines[len(lines)-1]...)
	for _, line := range lines[:len(lines)-1] {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("logPath line is not JSON: %v\n%s", err, line)
		}
		r.recs = append(r.recs, m)
	}
}

// waitForRecord polls the JSON lines until one record has every field given
// (a hang guard bounds it; nothing depends on how fast it arrives). An
// "absent" value means the field must not be there.
func waitForRecord(t *testing.T, r *recordTail, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	seen := 0
	for time.Now().Before(deadline) {
		r.read(t)
		for ; seen < len(r.recs); seen++ {
			m := r.recs[seen]
			ok := true
			for k, v := range want {
				got, has := m[k]
				if v == absent {
					ok = ok && !has
				} else {
					ok = ok && got == v
				}
			}
			if ok {
				return m
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no record with %v in %s", want, r.path)
	return nil
}

// absent, as a wanted value, means "this field must not be present".
var absent = &struct{}{}

// The monitor path on this host's kernel: a syscalls rule raises Audit
// alerts for setuid/setgid, a refused setuid raises the DefaultPosture alert,
// and file telemetry becomes HostLog.
func TestSyscallAlerts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the monitor")
	}
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	os.MkdirAll(policies, 0o700)
	os.WriteFile(filepath.Join(policies, "setuid.yaml"), []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: audit-setuid
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  severity: 4
  message: privilege change
  syscalls:
    matchSyscalls:
    - syscall: [setuid, setgid]
`), 0o600)
	out := startMonitorOnly(t, dir, policies)

	self, _ := os.Executable()
	child := exec.Command(self, "-test.run=^$")
	child.Env = append(os.Environ(), "KUBEARMOR_TEST_SETUID=1")
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("privilege changes: %v\n%s", err, out)
	}
	pid := float64(child.Process.Pid)
	common := map[string]any{"ProcessName": self, "Type": "MatchedHostPolicy", "Operation": "Syscall", "HostPID": pid}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range common {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tail := &recordTail{path: out}
	a := waitForRecord(t, tail, with("PolicyName", "audit-setuid", "Data", "syscall=SYS_SETGID userid=65534", "Action", "Audit", "Result", "Passed"))
	if a["Severity"] != "4" || a["Message"] != "privilege change" || a["ClusterName"] != "default" || a["HostName"] != "testhost" {
		t.Errorf("setgid alert metadata: %v", a)
	}
	if _, has := a["Enforcer"]; has {
		t.Errorf("syscall verdicts carry no Enforcer, as upstream: %v", a)
	}
	tail.recs, tail.off = nil, 0
	waitForRecord(t, tail, with("PolicyName", "audit-setuid", "Data", "syscall=SYS_SETUID userid=65534", "Action", "Audit", "Result", "Passed"))
	tail.recs, tail.off = nil, 0
	d := waitForRecord(t, tail, with("PolicyName", "DefaultPosture", "Data", "syscall=SYS_SETUID userid=0",
		"Result", "Operation not permitted", "Action", "Block", "Enforcer", "eBPF Monitor"))
	for _, k := range []string{"Severity", "Tags", "Message"} {
		if _, has := d[k]; has {
			t.Errorf("DefaultPosture alerts carry no %s: %v", k, d)
		}
	}
	if d["UID"] != float64(65534) {
		t.Errorf("UID %v, want 65534", d["UID"])
	}
}

// A syscall rule on a call the monitor reports as a File event (unlink)
// raises a Syscall alert, as upstream's audit-all-unlink host policy
// example: Operation Syscall, the path in Resource, no Enforcer.
func TestSyscallRuleOnFileOperation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the monitor")
	}
	unlinkBin, err := exec.LookPath("unlink")
	if err != nil {
		t.Skip("no unlink(1) here")
	}
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	os.MkdirAll(policies, 0o700)
	os.WriteFile(filepath.Join(policies, "unlink.yaml"), []byte(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: audit-all-unlink
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  severity: 3
  syscalls:
    matchSyscalls:
    - syscall: [unlink]
  action: Audit
`), 0o600)
	out := startMonitorOnly(t, dir, policies)

	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("x"), 0o600)
	if b, err := exec.Command(unlinkBin, secret).CombinedOutput(); err != nil {
		t.Fatalf("unlink: %v\n%s", err, b)
	}
	tail := &recordTail{path: out}
	a := waitForRecord(t, tail, map[string]any{"PolicyName": "audit-all-unlink", "Type": "MatchedHostPolicy",
		"Operation": "Syscall", "Resource": secret, "Action": "Audit", "Result": "Passed", "Severity": "3"})
	if d, _ := a["Data"].(string); !strings.HasPrefix(d, "syscall=SYS_UNLINK") {
		t.Errorf("Data %q, want syscall=SYS_UNLINK...", d)
	}
	if _, has := a["Enforcer"]; has {
		t.Errorf("syscall verdicts carry no Enforcer, as upstream: %v", a)
	}
}

// startMonitorOnly runs the agent with no enforcer on the policies in
// policies, skipping the test where the monitor cannot load; it returns the
// JSON-lines file the agent writes its events to.
func startMonitorOnly(t *testing.T, dir, policies string) string {
	t.Helper()
	out := filepath.Join(dir, "alerts.jsonl")
	cmd := exec.Command(binary, "--config", "/dev/null", "--host", "testhost", "--lsm", "none", "--socket", "",
		"--gRPC", "0", "--policyDir", policies, "--logPath", out)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	line := logs.waitFor(t, "monitor")
	if strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	return out
}
