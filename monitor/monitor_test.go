package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/proctable"
)

// These tests run on the host kernel as root. They start real processes
// (mostly this test binary re-executed as a helper), then look for those
// processes' events among everything else the machine does.

const helperEnv = "MONITOR_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Args[1:]))
	}
	code := m.Run()
	if shared.m != nil {
		shared.cancel()
		shared.m.Close()
	}
	os.Exit(code)
}

// runHelper performs one action in a child process; its exit code tells
// the test whether the action itself behaved as expected.
func runHelper(args []string) int {
	if len(args) == 0 {
		return 2
	}
	switch args[0] {
	case "mark": // an exec the test waits for; nothing to do
		return 0
	case "open-rw":
		f, err := os.OpenFile(args[1], os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return 1
		}
		f.Close()
	case "open-missing":
		if _, err := os.Open(args[1]); !errors.Is(err, os.ErrNotExist) {
			return 1
		}
	case "connect":
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			return 1
		}
		c.Close()
	case "accept": // accept(2) then accept4(2) of two connections to itself
		if err := acceptBoth(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "udp-socket":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
		if err != nil {
			return 1
		}
		unix.Close(fd)
	case "dns-send": // a DNS query for args[1] to 127.0.0.1:53 by sendto, sendmsg and sendmmsg
		if err := sendDNS(args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "fileops": // the namespace operations fanotify cannot see, under args[1]
		if err := fileOps(args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "setgid-setuid": // raw syscalls: Go's wrappers repeat them on every thread
		if _, _, e := unix.RawSyscall(unix.SYS_SETGID, 65534, 0, 0); e != 0 {
			return 1
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETUID, 65534, 0, 0); e != 0 {
			return 1
		}
	case "setuid-root":
		if _, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); e != unix.EPERM {
			return 1
		}
	case "openat-dirfd": // openat(dirfd, args[2]) after a chdir elsewhere, expected to fail
		dfd, err := unix.Open(args[1], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil || os.Chdir("/") != nil {
			return 1
		}
		if _, err := unix.Openat(dfd, args[2], unix.O_RDONLY, 0); err != unix.ENOENT {
			return 1
		}
	case "openloop", "openloop-rel", "forkexec", "sendloop-udp", "sendloop-tcp", "getpidloop", "setuidloop":
		return benchLoop(args)
	default:
		return 2
	}
	return 0
}

// testHooks is the syscall path the tests force: MONITOR_TEST_HOOKS=fexit
// (the VM test, whose kernel accepts trampolines) or tracepoints; unset,
// the monitor chooses.
func testHooks() Hooks {
	switch os.Getenv("MONITOR_TEST_HOOKS") {
	case "fexit":
		return HooksFexit
	case "tracepoints":
		return HooksTracepoints
	}
	return HooksAuto
}

// newCollector keeps the events of this test's descendants (by host pid).
func newCollector() *eventtest.Collector {
	ours := map[uint32]bool{uint32(os.Getpid()): true}
	return eventtest.New(func(ev event.Event) bool {
		if !ours[ev.HostPID] && !ours[ev.HostPPID] {
			return false
		}
		ours[ev.HostPID] = true
		return true
	})
}

var shared struct {
	once   sync.Once
	m      *Monitor
	c      *eventtest.Collector
	cancel context.CancelFunc
	err    error
}

func requireKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF (/sys/kernel/btf/vmlinux) for CO-RE")
	}
}

// sharedMonitor is one monitor with every scope visible, for the tests
// that only look at events.
func sharedMonitor(t *testing.T) (*Monitor, *eventtest.Collector) {
	t.Helper()
	requireKernel(t)
	shared.once.Do(func() {
		shared.m, shared.err = Open(Options{Visibility: ScopeAll, Hooks: testHooks()})
		if shared.err != nil {
			return
		}
		shared.c = newCollector()
		ctx, cancel := context.WithCancel(context.Background())
		shared.cancel = cancel
		go shared.m.Run(ctx, shared.c.Add)
	})
	if shared.err != nil {
		t.Fatalf("open monitor: %v", shared.err)
	}
	return shared.m, shared.c
}

var markSeq atomic.Int64

// helper runs this test binary as a helper child and returns its pid.
func helper(t *testing.T, args ...string) uint32 {
	t.Helper()
	return helperCmd(t, nil, args...)
}

func helperCmd(t *testing.T, attr *syscall.SysProcAttr, args ...string) uint32 {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return run(t, attr, self, args...)
}

func run(t *testing.T, attr *syscall.SysProcAttr, path string, args ...string) uint32 {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v %s", path, args, err, out)
	}
	return uint32(cmd.Process.Pid)
}

// settle runs a marker exec and waits for its event. Records are ordered in
// the ring buffer, so everything the earlier children did is in by then.
func settle(t *testing.T, c *eventtest.Collector) {
	t.Helper()
	token := "mark-" + strconv.FormatInt(markSeq.Add(1), 10)
	helper(t, "mark", token)
	c.Wait(t, "the marker exec "+token, 30*time.Second, func(e event.Event) bool {
		return e.Operation == event.OpProcess && slices.Contains(e.Args, token)
	})
}

// lookEcho is the echo program's path, which exec tests run; the test
// skips without one.
func lookEcho(t *testing.T) string {
	t.Helper()
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Skip("no echo binary")
	}
	return echo
}

func TestExecWithArguments(t *testing.T) {
	m, c := sharedMonitor(t)
	echo := lookEcho(t)
	wantExe, err := filepath.EvalSymlinks(echo)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	selfExe, _ := filepath.EvalSymlinks(self)

	before := time.Now()
	pid := run(t, nil, echo, "hello", "big world")
	after := time.Now()
	settle(t, c)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Operation == event.OpProcess })
	if len(evs) != 1 {
		t.Fatalf("got %d exec events for pid %d, want 1: %+v", len(evs), pid, evs)
	}
	ev := evs[0]
	checks := []struct{ field, got, want string }{
		{"Exe", ev.Exe, wantExe},
		{"Resource", ev.Resource, wantExe + " hello big world"},
		{"Data", ev.Data, "syscall=SYS_EXECVE"},
		{"Syscall", ev.Syscall, "SYS_EXECVE"},
		{"ParentExe", ev.ParentExe, selfExe},
		{"Result", event.ResultText(ev.Retval), "Passed"},
		{"Comm", ev.Comm, "echo"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.field, ch.got, ch.want)
		}
	}
	if !slices.Equal(ev.Args, []string{"hello", "big world"}) {
		t.Errorf("Args = %q", ev.Args)
	}
	// Jiffy-stamped events are exact to a tick (at most 10 ms).
	if slack := 20 * time.Millisecond; ev.Time.Before(before.Add(-slack)) || ev.Time.After(after.Add(slack)) {
		t.Errorf("Time %v outside [%v, %v]", ev.Time, before, after)
	}
	if ev.HostPPID != uint32(os.Getpid()) {
		t.Errorf("HostPPID = %d, want %d", ev.HostPPID, os.Getpid())
	}
	wd, _ := os.Getwd()
	if ev.Cwd != wd {
		t.Errorf("Cwd = %q, want %q", ev.Cwd, wd)
	}
	if ev.CgroupID == 0 || ev.PidNS == 0 || ev.MntNS == 0 {
		t.Errorf("attribution keys missing: cgroup %d pidns %d mntns %d", ev.CgroupID, ev.PidNS, ev.MntNS)
	}
	// The record reads the cgroup id and uid by direct loads, not the
	// helpers: they must be the child's (our) cgroup v2 directory's inode
	// and our uid.
	if id, ok := selfCgroupID(t); ok && ev.CgroupID != id {
		t.Errorf("CgroupID = %d, want %d (the inode of our cgroup v2 directory)", ev.CgroupID, id)
	}
	if ev.UID != uint32(os.Getuid()) {
		t.Errorf("UID = %d, want %d", ev.UID, os.Getuid())
	}
	a := m.Table().Describe(&ev)
	if a.Source != selfExe || a.ProcessName != wantExe || a.ParentProcessName != selfExe {
		t.Errorf("Describe = %+v", a)
	}
}

// TestExecPathWalk: the kernel walks an exec's program and working
// directory up to the namespace's root, crossing mounts. The shapes a walk
// can get wrong: names too long to live inside their dentry, a mount
// crossed (tmpfs), a bind mount, and the root mount only.
func TestExecPathWalk(t *testing.T) {
	_, c := sharedMonitor(t)
	echo := lookEcho(t)
	prog, err := os.ReadFile(echo)
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("l", 31) + "-" + strings.Repeat("m", 40) // 72 bytes: an external name
	inl := strings.Repeat("s", 31)                                  // the longest inline name
	tmpfs := filepath.Join(base, "tmpfs")
	bind := filepath.Join(base, "bind")
	for _, d := range []string{filepath.Join(base, long, inl), tmpfs, bind} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(tmpfs, unix.MNT_DETACH) })
	if err := os.MkdirAll(filepath.Join(tmpfs, long, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(tmpfs, long), bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bind, unix.MNT_DETACH) })
	put := func(path string) string {
		if err := os.WriteFile(path, prog, 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct{ name, exe, cwd string }{
		{"root mount, long names", put(filepath.Join(base, long, inl, "echo-"+long)), filepath.Join(base, long, inl)},
		{"across a tmpfs", put(filepath.Join(tmpfs, long, "d", "e")), filepath.Join(tmpfs, long)},
		{"through a bind mount", filepath.Join(bind, "d", "e"), filepath.Join(bind, "d")},
		{"the root", echo, "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantExe, err := filepath.EvalSymlinks(tc.exe)
			if err != nil {
				t.Fatal(err)
			}
			token := "walk-" + strconv.FormatInt(markSeq.Add(1), 10)
			cmd := exec.Command(tc.exe, token)
			cmd.Args[0] = "echo" // a busybox runs its applet by this name
			cmd.Dir = tc.cwd
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v %s", tc.exe, err, out)
			}
			ev := c.Wait(t, "the exec of "+tc.exe, 30*time.Second, func(e event.Event) bool {
				return e.Operation == event.OpProcess && slices.Contains(e.Args, token)
			})
			if ev.Exe != wantExe || ev.Cwd != tc.cwd {
				t.Errorf("Exe %q, Cwd %q; want %q, %q", ev.Exe, ev.Cwd, wantExe, tc.cwd)
			}
		})
	}
}

func TestOpenReadWrite(t *testing.T) {
	m, c := sharedMonitor(t)
	path := filepath.Join(t.TempDir(), "known-file")
	pid := helper(t, "open-rw", path)
	settle(t, c)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Resource == path })
	if len(evs) != 1 {
		t.Fatalf("got %d events for %s, want 1: %+v", len(evs), path, evs)
	}
	ev := evs[0]
	if ev.Operation != event.OpFile || ev.Syscall != "SYS_OPENAT" {
		t.Errorf("Operation/Syscall = %s/%s", ev.Operation, ev.Syscall)
	}
	if want := "syscall=SYS_OPENAT fd=-100 flags=O_RDWR|O_CREAT|O_CLOEXEC"; ev.Data != want {
		t.Errorf("Data = %q, want %q", ev.Data, want)
	}
	if ev.Retval < 0 || event.ResultText(ev.Retval) != "Passed" {
		t.Errorf("Retval = %d", ev.Retval)
	}
	a := m.Table().Describe(&ev)
	self, _ := os.Executable()
	selfExe, _ := filepath.EvalSymlinks(self)
	if want := selfExe + " open-rw " + path; a.Source != want {
		t.Errorf("Source = %q, want %q", a.Source, want)
	}
}

func TestOpenMissing(t *testing.T) {
	_, c := sharedMonitor(t)
	path := filepath.Join(t.TempDir(), "no", "such", "file")
	pid := helper(t, "open-missing", path)
	settle(t, c)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Resource == path })
	if len(evs) != 1 {
		t.Fatalf("got %d events for %s, want 1", len(evs), path)
	}
	ev := evs[0]
	if ev.Retval != -int64(unix.ENOENT) {
		t.Errorf("Retval = %d, want %d", ev.Retval, -int64(unix.ENOENT))
	}
	if got := event.ResultText(ev.Retval); got != "No such file or directory" {
		t.Errorf("Result = %q", got)
	}
	if want := "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY|O_CLOEXEC"; ev.Data != want {
		t.Errorf("Data = %q, want %q", ev.Data, want)
	}
}

// acceptingListener is a loopback TCP listener that accepts and closes
// every connection until the test ends.
func acceptingListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return ln
}

func TestTCPConnectLoopback(t *testing.T) {
	_, c := sharedMonitor(t)
	ln := acceptingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	pid := helper(t, "connect", ln.Addr().String())
	settle(t, c)

	want := fmt.Sprintf("sa_family=AF_INET sin_port=%d sin_addr=127.0.0.1", port)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Syscall == "SYS_CONNECT" })
	if len(evs) != 1 {
		t.Fatalf("got %d connect events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	if ev.Operation != event.OpNetwork || ev.Resource != want {
		t.Errorf("Operation %q Resource %q, want Network %q", ev.Operation, ev.Resource, want)
	}
	// Go's dialer connects non-blocking: success or "in progress".
	if ev.Retval != 0 && ev.Retval != -int64(unix.EINPROGRESS) {
		t.Errorf("Retval = %d", ev.Retval)
	}
	if !strings.HasPrefix(ev.Data, "syscall=SYS_CONNECT fd=") {
		t.Errorf("Data = %q", ev.Data)
	}
	sock := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Syscall == "SYS_SOCKET" })
	if len(sock) == 0 || !strings.HasPrefix(sock[0].Resource, "domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC protocol=") {
		t.Errorf("socket events = %+v", sock)
	}
}

// acceptBoth accepts one connection by accept(2) and one by accept4(2),
// raw syscalls (x/sys/unix's Accept is accept4).
func acceptBoth() error {
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(l, lo); err != nil {
		return err
	}
	if err := unix.Listen(l, 2); err != nil {
		return err
	}
	sa, err := unix.Getsockname(l)
	if err != nil {
		return err
	}
	for _, nr := range []uintptr{unix.SYS_ACCEPT, unix.SYS_ACCEPT4} {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(c, sa); err != nil {
			return err
		}
		var peer [128]byte
		n := uint32(len(peer))
		fd, _, e := unix.Syscall6(nr, uintptr(l), uintptr(unsafe.Pointer(&peer[0])), uintptr(unsafe.Pointer(&n)), 0, 0, 0)
		if e != 0 {
			return fmt.Errorf("accept (nr %d): %w", nr, e)
		}
		unix.Close(int(fd))
		unix.Close(c)
	}
	return nil
}

// TestAccept: accept and accept4 are told apart (the fexit path sees both
// in the one kernel function they share) and report the peer's address.
func TestAccept(t *testing.T) {
	_, c := sharedMonitor(t)
	pid := helper(t, "accept")
	settle(t, c)
	for _, name := range []string{"SYS_ACCEPT", "SYS_ACCEPT4"} {
		evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Syscall == name })
		if len(evs) != 1 {
			t.Errorf("%d %s events, want 1: %+v", len(evs), name, evs)
			continue
		}
		ev := evs[0]
		if ev.Retval < 0 || !strings.HasPrefix(ev.Resource, "sa_family=AF_INET sin_port=") ||
			!strings.HasSuffix(ev.Resource, "sin_addr=127.0.0.1") || !strings.HasPrefix(ev.Data, "syscall="+name+" fd=") {
			t.Errorf("%s: Retval %d Resource %q Data %q", name, ev.Retval, ev.Resource, ev.Data)
		}
	}
}

func TestUDPSocket(t *testing.T) {
	_, c := sharedMonitor(t)
	pid := helper(t, "udp-socket")
	settle(t, c)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Syscall == "SYS_SOCKET" })
	if len(evs) != 1 {
		t.Fatalf("got %d socket events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	if want := "domain=AF_INET type=SOCK_DGRAM protocol=UDP"; ev.Resource != want || ev.Data != "syscall=SYS_SOCKET" || ev.Operation != event.OpNetwork {
		t.Errorf("got %s %q %q, want Network %q syscall=SYS_SOCKET", ev.Operation, ev.Resource, ev.Data, want)
	}
	if ev.Retval < 0 {
		t.Errorf("Retval = %d", ev.Retval)
	}
}

func TestSetgidSetuid(t *testing.T) {
	_, c := sharedMonitor(t)
	pid := helper(t, "setgid-setuid")
	settle(t, c)
	for _, want := range []string{"syscall=SYS_SETGID userid=65534", "syscall=SYS_SETUID userid=65534"} {
		evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Data == want })
		if len(evs) != 1 {
			t.Errorf("%q: got %d events, want 1", want, len(evs))
			continue
		}
		ev := evs[0]
		if ev.Operation != event.OpSyscall || ev.Resource != "" || ev.Retval != 0 || event.ResultText(ev.Retval) != "Passed" {
			t.Errorf("%q: got %+v", want, ev)
		}
	}
}

// unprivilegedCopy puts the test binary where an unprivileged user can run
// it (go test's build directory is private to root).
func unprivilegedCopy(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(worldTraversableTempDir(t), "monitor-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "monitor.test")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// worldTraversableTempDir picks a temporary directory other users can reach
// and execute from (a shared machine's /tmp may have lost its o+x bit).
func worldTraversableTempDir(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{os.TempDir(), "/var/tmp", "/dev/shm"} {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			continue
		}
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_NOEXEC != 0 {
			continue
		}
		return dir
	}
	t.Skip("no temporary directory an unprivileged user can execute from")
	return ""
}

func TestSetuidDeniedUnprivileged(t *testing.T) {
	_, c := sharedMonitor(t)
	bin := unprivilegedCopy(t)
	pid := run(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, bin, "setuid-root")
	settle(t, c)
	evs := c.All(func(e event.Event) bool {
		return e.HostPID == pid && e.Syscall == "SYS_SETUID" && e.Data == "syscall=SYS_SETUID userid=0"
	})
	if len(evs) != 1 {
		t.Fatalf("got %d setuid(0) events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Retval != -1 || event.ResultText(ev.Retval) != "Operation not permitted" {
		t.Errorf("Retval %d Result %q, want -1 Operation not permitted", ev.Retval, event.ResultText(ev.Retval))
	}
	if ev.UID != 65534 || ev.Operation != event.OpSyscall {
		t.Errorf("UID %d Operation %q", ev.UID, ev.Operation)
	}
}

// A forked shell that opens a file without exec'ing is attributed to the
// shell; after exit the process still resolves for a while.
func TestForkExecExitInTable(t *testing.T) {
	m, c := sharedMonitor(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	shExe, _ := filepath.EvalSymlinks(sh)
	path := filepath.Join(t.TempDir(), "from-subshell")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	shPid := run(t, nil, sh, "-c", "( read x < "+path+" ); true")
	settle(t, c)

	evs := c.All(func(e event.Event) bool { return e.Resource == path && e.HostPPID == shPid })
	if len(evs) != 1 {
		t.Fatalf("got %d opens of %s by a child of %d, want 1", len(evs), path, shPid)
	}
	ev := evs[0]
	if ev.Exe != shExe || ev.ParentExe != shExe {
		t.Errorf("subshell Exe %q ParentExe %q, want %q for both", ev.Exe, ev.ParentExe, shExe)
	}
	sub, ok := m.Table().Lookup(ev.HostPID)
	if !ok || sub.Exe != shExe || sub.HostPPID != shPid {
		t.Errorf("table entry for the exited subshell: %+v %v", sub, ok)
	}
	top, ok := m.Table().Lookup(shPid)
	if !ok || top.Exe != shExe || !slices.Equal(top.Args, []string{"-c", "( read x < " + path + " ); true"}) {
		t.Errorf("table entry for the shell: %+v %v", top, ok)
	}
}

// With only process visibility and capabilities failures, a successful
// setuid is not reported and a failed one is; file events are not.
func TestVisibilityScopes(t *testing.T) {
	m, c, stop := startMonitor(t, Options{Visibility: ScopeProcess, FailuresOf: ScopeCapabilities})

	okPid := helper(t, "setgid-setuid")
	bin := unprivilegedCopy(t)
	denyPid := run(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, bin, "setuid-root")
	openPid := helper(t, "open-rw", filepath.Join(t.TempDir(), "f"))
	settle(t, c)
	stop()

	if evs := c.All(func(e event.Event) bool { return e.HostPID == okPid && e.Operation == event.OpSyscall }); len(evs) != 0 {
		t.Errorf("successful setuid/setgid reported with capabilities invisible: %+v", evs)
	}
	if evs := c.All(func(e event.Event) bool { return e.HostPID == denyPid && e.Data == "syscall=SYS_SETUID userid=0" }); len(evs) != 1 || evs[0].Retval != -1 {
		t.Errorf("failed setuid: %+v", evs)
	}
	if evs := c.All(func(e event.Event) bool { return e.HostPID == openPid && e.Operation == event.OpFile }); len(evs) != 0 {
		t.Errorf("file events with file scope off: %+v", evs)
	}
	if evs := c.All(func(e event.Event) bool { return e.HostPID == openPid && e.Operation == event.OpProcess }); len(evs) != 1 {
		t.Errorf("want the helper's exec event, got %+v", evs)
	}
	if s := m.Stats(); s.Lost != 0 || s.Dropped != 0 || s.DecodeErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A poll that finds nothing parks the reader; the first record into the
// empty buffer must wake it, and cancelling must end a sleeping Run. (On a busy host other processes' events may keep it awake;
// then this covers the polling path only.)
func TestIdleReaderWakes(t *testing.T) {
	_, c, stop := startMonitor(t, Options{Visibility: ScopeProcess, PollInterval: time.Millisecond})
	for range 3 {
		time.Sleep(100 * time.Millisecond) // long enough to fall asleep
		settle(t, c)
	}
	time.Sleep(100 * time.Millisecond)
	stop()
}

// startMonitor opens a monitor of its own and runs it; stop cancels Run and
// reports its error. The monitor is closed when the test ends.
func startMonitor(t *testing.T, opts Options) (*Monitor, *eventtest.Collector, func()) {
	t.Helper()
	requireKernel(t)
	opts.Table = proctable.New(proctable.Options{ReadProcOnMiss: true})
	opts.Hooks = testHooks()
	m, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, c.Add) }()
	return m, c, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// Close must end a Run whose reader is parked, and only then
// unmap the ring buffer; a Run after Close is refused. A regression hangs
// here or crashes on the unmapped ring.
func TestCloseEndsSleepingRun(t *testing.T) {
	requireKernel(t)
	m, err := Open(Options{Visibility: ScopeProcess, PollInterval: time.Millisecond,
		Table: proctable.New(proctable.Options{ReadProcOnMiss: true})})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	c := newCollector()
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background(), c.Add) }()
	settle(t, c)
	time.Sleep(100 * time.Millisecond) // long enough to fall asleep
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := m.Run(context.Background(), c.Add); err == nil {
		t.Error("a second Run after Close was accepted")
	}
}

// TestRelativePathsAfterChdir is issue 18's false alert: a relative path
// must name the file the syscall used, not the one the process's working
// directory names when the event is decoded. The shell (the issue's
// bash -c, here any POSIX sh) opens ./a.yaml, then changes into files/;
// the event must say <dir>/a.yaml, never <dir>/files/a.yaml (which does
// not exist). The shell stays in files/ for a while, so reading its cwd
// when decoding would find files/.
func TestRelativePathsAfterChdir(t *testing.T) {
	_, c := sharedMonitor(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.yaml", "gone", "files/.keep"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sh, "-c", ": < ./a.yaml; true < ./missing.yaml 2>/dev/null; cd files; : < ../a.yaml; rm ../gone; sleep 1")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v %s", err, out)
	}
	shPID := uint32(cmd.Process.Pid)
	helperPID := helper(t, "openat-dirfd", filepath.Join(dir, "files"), "nothing-here")
	settle(t, c)

	file := func(e event.Event) bool { return e.Operation == event.OpFile && strings.HasPrefix(e.Resource, dir) }
	var got []string
	for _, e := range c.All(file) {
		got = append(got, fmt.Sprintf("%s %s %d", e.Resource, e.Syscall, e.Retval))
		if strings.HasPrefix(e.Resource, dir+"/files/a.yaml") || strings.HasPrefix(e.Resource, dir+"/files/missing") {
			t.Errorf("path resolved against the later cwd: %s (%s)", e.Resource, e.Data)
		}
	}
	want := []struct {
		pid     uint32
		path    string
		syscall string
		retval  int64 // 0: any success
	}{
		{shPID, dir + "/a.yaml", "SYS_OPENAT", 0},                                   // relative open, resolved by the opened file
		{0, dir + "/missing.yaml", "SYS_OPENAT", -int64(unix.ENOENT)},               // relative failed open: the cwd then
		{shPID, dir + "/a.yaml", "SYS_OPENAT", 0},                                   // ../a.yaml from files/
		{0, dir + "/gone", "SYS_UNLINK", 0},                                         // rm ../gone (unlink or unlinkat), a child of the shell in files/
		{helperPID, dir + "/files/nothing-here", "SYS_OPENAT", -int64(unix.ENOENT)}, // dirfd, after chdir("/")
	}
	for _, w := range want {
		evs := c.All(func(e event.Event) bool {
			return file(e) && e.Resource == w.path && strings.HasPrefix(e.Syscall, w.syscall) &&
				(w.pid == 0 || e.HostPID == w.pid) && (w.retval == 0 && e.Retval >= 0 || w.retval != 0 && e.Retval == w.retval)
		})
		if len(evs) == 0 {
			t.Errorf("no %s event for %s (retval %d, pid %d); file events under %s:\n%s", w.syscall, w.path, w.retval, w.pid, dir, strings.Join(got, "\n"))
		}
	}
}

// TestTimestampsResolution: a burst of opens from one process gets
// timestamps with real resolution (every one a distinct microsecond, the
// resolution of UpdatedTime), in order, and close to the wall clock.
func TestTimestampsResolution(t *testing.T) {
	_, c := sharedMonitor(t)
	file := filepath.Join(t.TempDir(), "burst")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	pid := helper(t, "openloop", "500", file)
	after := time.Now()
	settle(t, c)
	evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Resource == file })
	if len(evs) != 500 {
		t.Fatalf("got %d events, want 500", len(evs))
	}
	for i, e := range evs {
		if e.Time.Before(before.Add(-time.Millisecond)) || e.Time.After(after.Add(time.Millisecond)) {
			t.Fatalf("event %d at %v, outside the run [%v, %v]", i, e.Time, before, after)
		}
		if i == 0 {
			continue
		}
		prev := evs[i-1].Time
		if !e.Time.After(prev) {
			t.Fatalf("event %d at %v is not after event %d at %v", i, e.Time, i-1, prev)
		}
		if e.Time.Truncate(time.Microsecond).Equal(prev.Truncate(time.Microsecond)) {
			t.Errorf("events %d and %d share the microsecond %v", i-1, i, e.Time.Format("15:04:05.000000"))
		}
	}
}

// TestTimestampsFollowClockStep: after the wall clock is stepped (NTP's
// step at boot, a hypervisor's time sync), events are stamped with the new
// wall time, not the one the monitor measured at start. The step is real,
// so it runs only where MONITOR_TEST_STEP_CLOCK=1 says the machine is a
// guest of its own (vmtests/12-monitor-fexit.sh).
func TestTimestampsFollowClockStep(t *testing.T) {
	if os.Getenv("MONITOR_TEST_STEP_CLOCK") != "1" {
		t.Skip("steps the wall clock by 2 s: set MONITOR_TEST_STEP_CLOCK=1 in a guest of its own (vmtests/12-monitor-fexit.sh does)")
	}
	_, c := sharedMonitor(t)
	file := filepath.Join(t.TempDir(), "stepped")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []time.Duration{2 * time.Second, -2 * time.Second} {
		if err := eventtest.StepWallClock(step); err != nil {
			t.Fatal(err)
		}
		// The watcher re-measures asynchronously; an event stamped in the
		// instant before it has the old offset.
		time.Sleep(50 * time.Millisecond)
		before := time.Now()
		pid := helper(t, "openloop", "3", file)
		after := time.Now()
		settle(t, c)
		evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Resource == file })
		if len(evs) != 3 {
			t.Fatalf("step %v: got %d events, want 3", step, len(evs))
		}
		for i, e := range evs {
			if e.Time.Before(before.Add(-time.Millisecond)) || e.Time.After(after.Add(time.Millisecond)) {
				t.Errorf("step %v: event %d at %v, outside the run [%v, %v]", step, i, e.Time, before, after)
			}
		}
	}
}

// dnsMessage is a DNS query for name with type qtype, as a stub resolver sends it.
func dnsMessage(id uint16, name string, qtype uint16) []byte {
	b := []byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, byte(qtype>>8), byte(qtype), 0, 1)
}

// sendDNS sends name's queries as glibc's resolver does: sendto with an
// address (A), send on a connected socket (AAAA), sendmsg (MX) and one
// sendmmsg with two (TXT, HTTPS); plus one datagram to port 53 that is no
// query and one query to another port, neither of which is reported.
func sendDNS(name string) error {
	// Something must listen on port 53, or the first datagram's ICMP
	// error fails the connected socket's next send. If the bind fails,
	// a resolver listens there already.
	if l, err := net.ListenPacket("udp4", "127.0.0.1:53"); err == nil {
		defer l.Close()
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Port: 53, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Sendto(fd, dnsMessage(1, name, 1), 0, to); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	if err := unix.Sendto(fd, []byte("not a dns query"), 0, to); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	if err := unix.Sendto(fd, dnsMessage(9, name, 16), 0, &unix.SockaddrInet4{Port: 5353, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, to); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := unix.Sendto(c, dnsMessage(2, name, 28), 0, nil); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := unix.SendmsgN(c, dnsMessage(3, name, 15), nil, nil, 0); err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	m1, m2 := dnsMessage(4, name, 16), dnsMessage(5, name, 65)
	iov := []unix.Iovec{{Base: &m1[0]}, {Base: &m2[0]}}
	iov[0].SetLen(len(m1))
	iov[1].SetLen(len(m2))
	type mmsghdr struct {
		hdr unix.Msghdr
		n   uint32
		_   [4]byte
	}
	msgs := []mmsghdr{{hdr: unix.Msghdr{Iov: &iov[0], Iovlen: 1}}, {hdr: unix.Msghdr{Iov: &iov[1], Iovlen: 1}}}
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(c), uintptr(unsafe.Pointer(&msgs[0])), 2, 0, 0, 0)
	runtime.KeepAlive(msgs)
	runtime.KeepAlive(iov)
	if e != 0 || n != 2 {
		return fmt.Errorf("sendmmsg: %d %v", n, e)
	}
	return nil
}

// TestDNSQueries: every DNS query a process sends over UDP is logged in
// upstream's DNS visibility form, whichever send call and whether the
// socket is connected or not; nothing else sent over UDP is.
func TestDNSQueries(t *testing.T) {
	_, c := sharedMonitor(t)
	pid := helper(t, "dns-send", "host.example.test")
	settle(t, c)
	var got []string
	for _, e := range c.All(func(e event.Event) bool { return e.HostPID == pid && strings.HasPrefix(e.Syscall, "SYS_SEND") }) {
		if e.Operation != event.OpNetwork || e.Resource != "sa_family=AF_INET sin_port=53" || e.Retval < 0 {
			t.Errorf("%s: Operation %q Resource %q Retval %d", e.Syscall, e.Operation, e.Resource, e.Retval)
		}
		got = append(got, e.Syscall+" "+e.Data)
	}
	const d = "kfunc=UDP_SENDMSG,domain=host.example.test,daddr=127.0.0.1,qtype="
	want := []string{"SYS_SENDTO " + d + "A", "SYS_SENDTO " + d + "AAAA", "SYS_SENDMSG " + d + "MX",
		"SYS_SENDMMSG " + d + "TXT", "SYS_SENDMMSG " + d + "HTTPS"}
	if !slices.Equal(got, want) {
		t.Errorf("DNS logs:\n got %q\nwant %q", got, want)
	}
}

// TestDNSQueriesNeedNetworkVisibility: without network visibility no send
// program is attached at all.
func TestDNSQueriesNeedNetworkVisibility(t *testing.T) {
	requireKernel(t)
	_, c, stop := startMonitor(t, Options{Visibility: ScopeProcess | ScopeFile})
	defer stop()
	pid := helper(t, "dns-send", "quiet.example.test")
	settle(t, c)
	if evs := c.All(func(e event.Event) bool { return e.HostPID == pid && e.Operation == event.OpNetwork }); len(evs) != 0 {
		t.Errorf("network events without network visibility: %+v", evs)
	}
}

// fileOps does, under dir, each namespace operation the monitor reports
// beside open, unlink and chown: the ones the fanotify tier cannot see.
func fileOps(dir string) error {
	if err := os.Chdir(dir); err != nil {
		return err
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"mkdir", func() error { return rawPaths(unix.SYS_MKDIR, 0o750, "d") }},
		{"mknod", func() error { return unix.Mknod("fifo", unix.S_IFIFO|0o600, 0) }},
		{"symlink", func() error { return unix.Symlink("f", "sl") }},
		{"link", func() error { return unix.Link("f", "hl") }},
		{"rename", func() error { return rawPaths(unix.SYS_RENAME, 0, "hl", "hl2") }},
		{"renameat2", func() error { return unix.Renameat2(unix.AT_FDCWD, "hl2", unix.AT_FDCWD, "hl3", unix.RENAME_NOREPLACE) }},
		{"chmod", func() error { return unix.Chmod("f", 0o640) }},
		{"truncate", func() error { return unix.Truncate("f", 0) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// TestFileNamespaceOps: the file operations fanotify cannot see are
// reported with the path a rule would protect, resolved in the kernel.
func TestFileNamespaceOps(t *testing.T) {
	_, c := sharedMonitor(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := helper(t, "fileops", dir)
	settle(t, c)
	var got []string
	for _, e := range c.All(func(e event.Event) bool {
		return e.HostPID == pid && e.Operation == event.OpFile && !isOpenSyscall(e.Syscall)
	}) {
		got = append(got, e.Resource+" "+e.Data)
	}
	want := []string{ // Go's unix package calls the *at forms
		dir + "/d syscall=SYS_MKDIR mode=0750",
		dir + "/fifo syscall=SYS_MKNODAT fd=-100 mode=0600",
		dir + "/sl syscall=SYS_SYMLINKAT fd=-100",
		dir + "/f syscall=SYS_LINKAT fd=-100",
		dir + "/hl syscall=SYS_RENAME",
		dir + "/hl2 syscall=SYS_RENAMEAT2 fd=-100",
		dir + "/f syscall=SYS_FCHMODAT fd=-100 mode=0640",
		dir + "/f syscall=SYS_TRUNCATE",
	}
	if !slices.Equal(got, want) {
		t.Errorf("file operations:\n got %q\nwant %q", got, want)
	}
}

func isOpenSyscall(s string) bool { return s == "SYS_OPEN" || s == "SYS_OPENAT" || s == "SYS_OPENAT2" }

// rawPaths calls a legacy path syscall (mkdir, rename) that Go's unix
// package replaces by its *at form: the paths, then arg.
func rawPaths(nr uintptr, arg uintptr, paths ...string) error {
	var a [2]uintptr
	var keep [2]*byte
	for i, p := range paths {
		b, err := unix.BytePtrFromString(p)
		if err != nil {
			return err
		}
		keep[i], a[i] = b, uintptr(unsafe.Pointer(b))
	}
	if len(paths) == 1 {
		a[1] = arg
	}
	_, _, e := unix.Syscall(nr, a[0], a[1], 0)
	runtime.KeepAlive(keep)
	if e != 0 {
		return e
	}
	return nil
}

// On the kernel: the setuid and setgid records Options.Unneeded takes are
// counted emitted and undecoded and never reach emit; the refused setuid
// it leaves is decoded and emitted.
func TestUnneededOnKernel(t *testing.T) {
	var mu sync.Mutex
	var asked []event.Event
	take := func(ev *event.Event) bool {
		mu.Lock()
		asked = append(asked, *ev)
		mu.Unlock()
		return ev.Operation == event.OpSyscall && ev.Retval == 0
	}
	m, c, stop := startMonitor(t, Options{Visibility: ScopeProcess | ScopeCapabilities, Unneeded: take})
	before := m.Stats()
	okPid := helper(t, "setgid-setuid")
	bin := unprivilegedCopy(t)
	denyPid := run(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, bin, "setuid-root")
	settle(t, c)
	stop()

	if evs := c.All(func(e event.Event) bool { return e.HostPID == okPid && e.Operation == event.OpSyscall }); len(evs) != 0 {
		t.Errorf("taken setuid/setgid emitted: %+v", evs)
	}
	if evs := c.All(func(e event.Event) bool { return e.HostPID == denyPid && e.Syscall == "SYS_SETUID" }); len(evs) != 1 || evs[0].Retval != -1 {
		t.Errorf("refused setuid: %+v, want one event", evs)
	}
	s := m.Stats()
	if n := s.Undecoded - before.Undecoded; n < 2 {
		t.Errorf("undecoded %d, want at least the helper's setgid and setuid", n)
	}
	if s.Undecoded > s.Emitted || s.DecodeErrors != 0 {
		t.Errorf("stats %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range asked {
		if ev.Syscall == "" || ev.Operation == "" || ev.HostPID != 0 || ev.Data != "" {
			t.Errorf("asked about %+v: want only Operation, Syscall and Retval", ev)
		}
	}
}

// selfCgroupID is the id of this process's cgroup v2 (the inode number of
// its directory, what bpf_get_current_cgroup_id returns); false where the
// unified hierarchy is not mounted.
func selfCgroupID(t *testing.T) (uint64, bool) {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	root := ""
	for _, line := range strings.Split(string(mounts), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
		if f := strings.Fields(line); len(f) > 4 && strings.Contains(line, " - cgroup2 ") && f[3] == "/" {
			root = f[4]
			break
		}
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if root == "" || err != nil {
		t.Log("cgroup id not checked: no cgroup2 mount")
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(root, path), &st); err != nil {
				t.Logf("cgroup id not checked: %v", err)
				return 0, false
			}
			return st.Ino, true
		}
	}
	return 0, false
}
