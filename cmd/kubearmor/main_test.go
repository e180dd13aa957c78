package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the kubearmor binary built once for the end-to-end tests here.
var binary string

func TestMain(m *testing.M) {
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
	code := m.Run()
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

func exitCode(cmd *exec.Cmd) int {
	cmd.Run()
	return cmd.ProcessState.ExitCode()
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"policy", "--help"}, {"policy", "check", "--help"}} {
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
