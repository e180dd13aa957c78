package fanotify

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// TestEventFormat: the tier's events read as the same operation's event of
// the other tiers (reference §2.10): an exec's Resource is the command line,
// its Data the syscall; an open's Data the syscall with its dirfd and flags,
// write flags included; ProcessName, parent and Source as for BPF-LSM.
// Only Enforcer and Result (EPERM, "Operation not permitted", where
// BPF-LSM returns EACCES) differ.
func TestEventFormat(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked-true")
	ro := writeFile(t, fs+"/ro", "r")
	audited := writeFile(t, fs+"/audited", "a")
	rs := compile(t, hostpolicy.Postures{}, policy("exec", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block`), policy("ro", `  file:
    matchPaths:
    - path: `+ro+`
      readOnly: true
  action: Block`), policy("audit", `  file:
    matchPaths:
    - path: `+audited+`
  action: Audit`))
	_, events, _ := start(t, Options{NoNetwork: true}, rs)
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}

	if denied, out := run(t, blocked, "one", "two words", ""); !denied {
		t.Fatalf("exec of %s was allowed: %s", blocked, out)
	}
	ev := events.Wait(t, "exec", eventWait, func(ev event.Event) bool { return strings.HasPrefix(ev.Resource, blocked) })
	for _, c := range []struct{ field, got, want string }{
		{"Resource", ev.Resource, blocked + " one two words "},
		{"Data", ev.Data, "syscall=SYS_EXECVE"},
		{"Syscall", ev.Syscall, "SYS_EXECVE"},
		{"Operation", ev.Operation, event.OpProcess},
		{"Exe (ProcessName)", ev.Exe, blocked},
		{"ParentExe (the program that called exec, Source)", ev.ParentExe, sh},
	} {
		if c.got != c.want {
			t.Errorf("exec event %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if ev.Retval != -int64(unix.EPERM) || ev.Verdict != event.VerdictBlock {
		t.Errorf("exec event: retval %d verdict %d", ev.Retval, ev.Verdict)
	}

	if denied, out := run(t, "/bin/sh", "-c", "echo x >> "+ro); !denied {
		t.Fatalf("write of a readOnly file was allowed: %s", out)
	}
	ev = events.Wait(t, "write open", eventWait, func(ev event.Event) bool { return ev.Resource == ro })
	if ev.Data != "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_APPEND" || ev.Syscall != "SYS_OPENAT" ||
		ev.Operation != event.OpFile || ev.Exe != sh {
		t.Errorf("write open event: Data %q Syscall %q Operation %q Exe %q", ev.Data, ev.Syscall, ev.Operation, ev.Exe)
	}
	// The structured fields beside the display strings.
	if ev.Path != ro || ev.File.Op != event.FileOpen || ev.File.Flags != unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND || !ev.File.Write() || ev.File.Dir {
		t.Errorf("write open event: Path %q File %+v", ev.Path, ev.File)
	}

	if denied, out := run(t, "/bin/cat", audited); denied {
		t.Fatalf("audited read: %s", out)
	}
	ev = events.Wait(t, "audited open", eventWait, func(ev event.Event) bool { return ev.Resource == audited })
	if !strings.HasPrefix(ev.Data, "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY") || ev.Retval != 0 || ev.Verdict != event.VerdictAudit {
		t.Errorf("audited open event: Data %q retval %d verdict %d", ev.Data, ev.Retval, ev.Verdict)
	}
	if ev.Path != audited || ev.File.Op != event.FileOpen || ev.File.Write() {
		t.Errorf("audited open event: Path %q File %+v", ev.Path, ev.File)
	}
}

// TestOneAlertPerConnect: the cgroup programs report a TCP connection once,
// when its socket is made (allowed or denied), not again at bind or connect.
func TestOneAlertPerConnect(t *testing.T) {
	needRoot(t)
	cgPath, cgFD := testCgroup(t)
	audit := compile(t, hostpolicy.Postures{}, policy("net", `  network:
    matchProtocols:
    - protocol: tcp
  action: Audit`))
	e, events, _ := start(t, Options{cgroup: cgPath}, audit)
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := "FANOTIFY_TEST_ADDR=" + ln.Addr().String()
	network := func(ev event.Event) bool { return ev.Operation == event.OpNetwork }
	// settle waits for the first event, then long enough for any other one
	// the same connection would raise (the ring buffer is read every few
	// microseconds when busy), and returns them all.
	settle := func(what string) []event.Event {
		events.Wait(t, what, eventWait, network)
		time.Sleep(300 * time.Millisecond)
		evs := events.All(network)
		events.Reset()
		return evs
	}
	block := compile(t, hostpolicy.Postures{}, policy("net", `  network:
    matchProtocols:
    - protocol: tcp
  action: Block`))
	for _, c := range []struct {
		name, mode string
		rs         *hostpolicy.RuleSet
		out, data  string
		verdict    event.Verdict
		retval     int64
	}{
		{"audited connect", "tcp", audit, "ok", "syscall=SYS_SOCKET protocol=TCP type=SOCK_STREAM", event.VerdictAudit, 0},
		{"audited bind, then connect", "tcp-bind", audit, "ok", "syscall=SYS_SOCKET protocol=TCP type=SOCK_STREAM", event.VerdictAudit, 0},
		{"blocked socket", "tcp", block, "socket: operation not permitted", "syscall=SYS_SOCKET protocol=TCP type=SOCK_STREAM", event.VerdictBlock, -int64(unix.EPERM)},
	} {
		if _, err := e.Apply(c.rs); err != nil {
			t.Fatal(err)
		}
		if got := inCgroup(t, cgFD, c.mode, addr); got != c.out {
			t.Fatalf("%s: %q, want %q", c.name, got, c.out)
		}
		evs := settle(c.name)
		if len(evs) != 1 {
			t.Errorf("%s: %d events, want 1: %+v", c.name, len(evs), evs)
			continue
		}
		ev := evs[0]
		if ev.Data != c.data || ev.Resource != "protocol=TCP type=SOCK_STREAM" || ev.Verdict != c.verdict ||
			ev.Retval != c.retval || ev.Enforcer != EnforcerCgroup || ev.RuleID != ruleID(t, c.rs, "tcp") || ev.HostPID == 0 {
			t.Errorf("%s: event %+v, want Data %q", c.name, ev, c.data)
		}
	}
}
