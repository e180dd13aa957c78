package monitor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/event"
)

// TestHooks: the monitor says which syscall path it uses, and it is the
// one asked for (MONITOR_TEST_HOOKS).
func TestHooks(t *testing.T) {
	m, _ := sharedMonitor(t)
	hooks, note := m.Hooks()
	t.Logf("hooks: %s; %s", hooks, note)
	if want := testHooks(); want != HooksAuto && hooks != want {
		t.Fatalf("hooks %q, want %q", hooks, want)
	}
	if hooks != HooksFexit && hooks != HooksTracepoints {
		t.Fatalf("hooks %q with every scope visible", hooks)
	}
	if hooks == HooksTracepoints && testHooks() == HooksAuto && note == "" {
		t.Error("tracepoints chosen without saying why fexit was not used")
	}
	if s := m.Stats(); s.Hooks != hooks || s.HooksNote != note {
		t.Errorf("Stats hooks %q %q, want %q %q", s.Hooks, s.HooksNote, hooks, note)
	}
}

// TestCompat32: syscalls made through the 32-bit entry (int 0x80,
// socketcall) are reported like their 64-bit forms, with x86-64 names.
// The helper is MONITOR_TEST_COMPAT32 (the VM test builds it) or built
// here with GOARCH=386.
func TestCompat32(t *testing.T) {
	m, c := sharedMonitor(t)
	if hooks, _ := m.Hooks(); hooks != HooksFexit {
		t.Skipf("hooks %q: syscall tracepoints do not see 32-bit syscalls (only the fexit path attaches the ia32 entry points)", hooks)
	}
	bin := os.Getenv("MONITOR_TEST_COMPAT32")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "compat32")
		out, err := goBuild386(bin).CombinedOutput()
		if err != nil {
			t.Skipf("cannot build the 32-bit helper: %v %s", err, out)
		}
	}
	file := filepath.Join(t.TempDir(), "compat32-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(bin, file, fmt.Sprint(port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(err.Error(), "exec format error") {
			t.Skipf("this kernel runs no 32-bit programs (no IA32 emulation): %v", err)
		}
		t.Fatalf("compat32: %v %s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	settle(t, c)

	evs := c.All(func(e event.Event) bool { return e.HostPID == pid })
	has := func(what string, f func(e event.Event) bool) {
		t.Helper()
		if !slices.ContainsFunc(evs, f) {
			t.Errorf("no %s event among the helper's %d:", what, len(evs))
			for _, e := range evs {
				t.Logf("  %s %s %q %q %d", e.Operation, e.Syscall, e.Resource, e.Data, e.Retval)
			}
		}
	}
	has("open", func(e event.Event) bool { return e.Operation == event.OpFile && e.Resource == file })
	addr := fmt.Sprintf("sa_family=AF_INET sin_port=%d sin_addr=127.0.0.1", port)
	n := 0
	for _, e := range evs {
		if e.Syscall == "SYS_CONNECT" && e.Resource == addr && e.Retval == 0 {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d connects to %s, want 2 (socketcall and connect)", n, addr)
	}
	has("setuid", func(e event.Event) bool { return e.Syscall == "SYS_SETUID" && e.Data == "syscall=SYS_SETUID userid=0" })
	has("DNS query", func(e event.Event) bool {
		return e.Syscall == "SYS_SENDTO" && strings.Contains(e.Data, "domain=compat32.example.test,")
	})
	has("failed execve", func(e event.Event) bool {
		return e.Syscall == "SYS_EXECVE" && e.Retval < 0 && strings.Contains(e.Resource, "/nonexistent/compat32-exec")
	})
}

func goBuild386(out string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-o", out, "./testdata/compat32")
	cmd.Env = append(os.Environ(), "GOARCH=386", "CGO_ENABLED=0")
	return cmd
}
