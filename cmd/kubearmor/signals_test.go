package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGPIPE (what a write to a client that closed its socket raises) must not
// stop the daemon; SIGTERM stops it with status 0.
func TestDaemonIgnoresSIGPIPE(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "k.sock")
	cfgFile := filepath.Join(dir, "kubearmor.yaml")
	os.WriteFile(cfgFile, []byte("cluster: test\nhost: testhost\nlsm: none\ngRPC: \"0\"\nsocket: "+sock+"\n"), 0o600)
	cmd := exec.Command(binary, "--config", cfgFile, "--policyDir", filepath.Join(dir, "policies"))
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs.waitFor(t, "kubearmor ready")
	logs.waitFor(t, "file descriptor limit", "RLIMIT_NOFILE=")

	for range 3 {
		if err := cmd.Process.Signal(syscall.SIGPIPE); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the daemon stopped on SIGPIPE: %v", err)
	case <-time.After(time.Second):
	}
	out, err := exec.Command(binary, "status", "--addr", "unix://"+sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "testhost") {
		t.Fatalf("status after SIGPIPE: %v\n%s", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SIGTERM must stop the daemon with status 0: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	logs.waitFor(t, "stopping kubearmor", "signal=terminated")
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, l := range logs.lines {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("ERROR logged by a clean stop: %s", l)
		}
	}
}
