package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Budgets of TestIdleAgentSleeps: an idle agent's threads may switch this
// often per second (the Go runtime's own housekeeping, the systemd
// watchdog's beat) ...
const (
	idleSwitchesPerSecond = 10
	// ... plus this many per kernel record it was handed in the window:
	// this host's other processes keep producing telemetry, and a record
	// into an empty ring buffer wakes the reader (a burst of records costs
	// a few switches, a lone record about this many with its one empty
	// poll).
	idleSwitchesPerRecord = 5
	// A window with more records than this is busy, not idle, and is not
	// judged: under a steady stream the reader polls every PollInterval by
	// design.
	idleMaxRecords = 50
	idleWindow     = 2 * time.Second
	idleWindows    = 10
)

// An idle agent (default hostVisibility, a policy loaded, no workload of
// its own, no client) sleeps until there is work: no poll loop, no ticker
// of a part that has nothing to do. The agent's threads' context switches
// are counted over windows of idleWindow; the work it was given in a
// window (kernel records: telemetry and verdicts, from every process of
// this host) buys an allowance. A quiet window within budget passes, two
// over it fail. Before the readers slept (a 10 ms poll for 100 ms after
// every record, ring readers with 200-250 ms deadlines, 1 s tickers with
// nothing to do) such a window took 158 switches for 9 records here,
// against a budget of 65. It asserts on counts, never on time.
func TestIdleAgentSleeps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the monitor")
	}
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	os.MkdirAll(policies, 0o700)
	os.WriteFile(filepath.Join(policies, "audit.yaml"), []byte(auditDirPolicy(filepath.Join(dir, "watched"))), 0o600)
	sock := filepath.Join(dir, "kubearmor.sock")
	// The default enforcers: BPF-LSM where the kernel allows it, else
	// fanotify on this host; their ring readers must sleep too.
	cmd := exec.Command(binary, "--config", "/dev/null", "--host", "testhost", "--socket", sock, "--gRPC", "0",
		"--policyDir", policies)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	if line := logs.waitFor(t, "monitor"); strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	time.Sleep(idleWindow) // start-up work (the first policy load, the freed BTF) settles

	var seen []string
	overs := 0 // quiet windows over budget: two fail the test
	for range idleWindows {
		// Status calls wake the agent: they stay outside the window.
		r0 := kernelRecords(t, sock)
		s0 := threadSwitches(t, cmd.Process.Pid)
		time.Sleep(idleWindow)
		s1 := threadSwitches(t, cmd.Process.Pid)
		r1 := kernelRecords(t, sock)
		if s1 < s0 {
			continue // a thread exited with its counts
		}
		switches, records := s1-s0, r1-r0
		budget := idleSwitchesPerSecond*uint64(idleWindow/time.Second) + idleSwitchesPerRecord*records
		seen = append(seen, fmt.Sprintf("%d switches, %d records (budget %d)", switches, records, budget))
		if records > idleMaxRecords {
			continue
		}
		if switches <= budget {
			t.Logf("idle window of %s: %d context switches, %d kernel records (budget %d)", idleWindow, switches, records, budget)
			return
		}
		if overs++; overs == 2 {
			break
		}
	}
	if overs > 0 {
		t.Fatalf("the idle agent woke more than its work explains in quiet windows of %s: %s", idleWindow, strings.Join(seen, "; "))
	}
	t.Skipf("this host was never quiet for %s (more than %d kernel records each time): %s", idleWindow, idleMaxRecords, strings.Join(seen, "; "))
}

// kernelRecords is the work the kernel handed the agent so far: telemetry
// records and enforcer verdicts, from `kubearmor status`.
func kernelRecords(t *testing.T, sock string) uint64 {
	t.Helper()
	var n uint64
	for _, s := range agentStatus(t, sock).Stages {
		if strings.HasSuffix(s.Name, " kernel") || strings.HasSuffix(s.Name, " verdicts") {
			n += s.Received
		}
	}
	return n
}

// threadSwitches sums the voluntary and involuntary context switches of
// every thread of pid.
func threadSwitches(t *testing.T, pid int) uint64 {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("threads of the agent: %v", err)
	}
	var n uint64
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n += parseCount(t, v)
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				n += parseCount(t, v)
			}
		}
	}
	return n
}

func parseCount(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("context switch count %q: %v", s, err)
	}
	return n
}
