package fanotify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
	"github.com/armorhost/kubearmor/runtimes/runtimetest"
)

// Child modes of the test binary, chosen by environment variable:
//
//	FANOTIFY_TEST_CHILD=enforce  run the enforcer with the policy in
//	    FANOTIFY_TEST_POLICY (cgroup programs in FANOTIFY_TEST_CGROUP,
//	    file posture FANOTIFY_TEST_FILE_POSTURE, allow cache off when
//	    FANOTIFY_TEST_CACHE=off), print "ready", then one
//	    line per verdict until killed.
//	FANOTIFY_TEST_CHILD=udp      open a UDP socket, print "ok" or the error.
//	FANOTIFY_TEST_CHILD=tcp      connect to FANOTIFY_TEST_ADDR, print "ok" or the error.
//	FANOTIFY_TEST_CHILD=tcp-bind bind to a port of its own, then connect to FANOTIFY_TEST_ADDR.
func TestMain(m *testing.M) {
	switch os.Getenv("FANOTIFY_TEST_CHILD") {
	case "":
		os.Exit(runtimetest.RunLocked(m))
	case "enforce":
		childEnforce()
	case "monitor":
		childMonitor()
	case "udp":
		fmt.Println(errText(udpSocket()))
	case "tcp":
		fmt.Println(errText(tcpConnect(os.Getenv("FANOTIFY_TEST_ADDR"))))
	case "tcp-bind":
		fmt.Println(errText(tcpBindConnect(os.Getenv("FANOTIFY_TEST_ADDR"))))
	case "tcp-late":
		tcpLate(os.Getenv("FANOTIFY_TEST_ADDR"))
	}
	os.Exit(0)
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func childEnforce() {
	doc, err := os.ReadFile(os.Getenv("FANOTIFY_TEST_POLICY"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ps, diags := hostpolicy.Parse("child.yaml", doc)
	if diags.HasErrors() {
		fmt.Println(diags)
		return
	}
	e, err := New(Options{cgroup: os.Getenv("FANOTIFY_TEST_CGROUP"), noCache: os.Getenv("FANOTIFY_TEST_CACHE") == "off"})
	if err != nil {
		fmt.Println(err)
		return
	}
	postures := hostpolicy.Postures{File: os.Getenv("FANOTIFY_TEST_FILE_POSTURE")}
	if _, err := e.Apply(hostpolicy.Compile(ps, hostpolicy.Options{Host: "h", Postures: postures})); err != nil {
		fmt.Println(err)
		return
	}
	var mu sync.Mutex
	fmt.Println("ready")
	_ = e.Run(context.Background(), func(ev event.Event) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("event verdict=%d rule=%d op=%s resource=%s\n", ev.Verdict, ev.RuleID, ev.Operation, ev.Resource)
	})
}

// childEnforcer is the tier running in a child process, as the agent runs
// beside the programs it confines. Tests that exec from their own process
// must use it: Go's fork holds a scheduler slot until the child has exec'd,
// so a stop-the-world at that moment would keep the enforcer in the same
// process from ever answering that exec's permission event.
type childEnforcer struct {
	cmd    *exec.Cmd
	lines  chan string
	killed bool
}

func startChild(t *testing.T, policyDoc, cgroup string, env ...string) *childEnforcer {
	t.Helper()
	pol := writeFile(t, filepath.Join(t.TempDir(), "p.yaml"), policyDoc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FANOTIFY_TEST_CHILD=enforce", "FANOTIFY_TEST_POLICY="+pol, "FANOTIFY_TEST_CGROUP="+cgroup)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childEnforcer{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(c.kill)
	if got := <-c.lines; got != "ready" {
		t.Fatalf("child enforcer: %q", got)
	}
	return c
}

func (c *childEnforcer) kill() {
	if c.killed {
		return
	}
	c.killed = true
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// waitEvent returns the first event line of the child that contains want.
func (c *childEnforcer) waitEvent(t *testing.T, want string) string {
	t.Helper()
	limit := time.After(10 * time.Second) // a missing event fails instead of hanging
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child ended without an event with %q", want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-limit:
			t.Fatalf("no event with %q", want)
		}
	}
}

// run starts a program through /bin/sh, so that the exec a rule decides is
// made by sh and never by this process (see childEnforcer). It returns
// whether it was denied and the output.
func run(t *testing.T, argv ...string) (denied bool, out string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `exec "$@"`, "sh"}, argv...)...)
	b, err := cmd.CombinedOutput()
	out = string(b)
	denied = strings.Contains(out, "not permitted")
	if err == nil && denied {
		t.Fatalf("%v: succeeded but says %q", argv, out)
	}
	if err != nil && !denied {
		t.Fatalf("%v: %v %q", argv, err, out)
	}
	return denied, out
}

// tcpLate makes a TCP socket, says so, waits for a line on stdin, then
// connects with it.
func tcpLate(addr string) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Println("socket:", err)
		return
	}
	fmt.Println("socket")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	fmt.Println("ok")
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func udpSocket() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func tcpConnect(addr string) error {
	var ip [4]byte
	var port int
	if _, err := fmt.Sscanf(addr, "%d.%d.%d.%d:%d", &ip[0], &ip[1], &ip[2], &ip[3], &port); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ip, Port: port}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}

// tcpBindConnect binds a TCP socket to a port of its own, then connects.
func tcpBindConnect(addr string) error {
	var ip [4]byte
	var port int
	if _, err := fmt.Sscanf(addr, "%d.%d.%d.%d:%d", &ip[0], &ip[1], &ip[2], &ip[3], &port); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ip, Port: port}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}

// needRoot skips a test that needs root and fanotify permission events.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := Supported(); err != nil {
		t.Skipf("fanotify tier unsupported: %v", err)
	}
}

// scratchFS mounts a tmpfs of its own, so that the filesystem marks of a
// test touch nothing else on the host.
func scratchFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// testCgroup makes a cgroup2 group of its own for the socket programs, so
// that a test's network rules apply only to processes started in it.
func testCgroup(t *testing.T) (path string, fd int) {
	t.Helper()
	root, err := cgroup2Root()
	if err != nil {
		t.Skipf("no cgroup2: %v", err)
	}
	path, err = os.MkdirTemp(root, "fanotify-test-")
	if err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(path) })
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return path, fd
}

// inCgroup runs this test binary in a child mode inside the cgroup.
func inCgroup(t *testing.T, cgfd int, mode string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "FANOTIFY_TEST_CHILD="+mode)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v: %s", mode, err, out)
	}
	return strings.TrimSpace(string(out))
}

func copyFile(t *testing.T, from, to string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return to
}

func writeFile(t *testing.T, p, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var policy = hostpolicytest.HostPolicy

func compile(t testing.TB, postures hostpolicy.Postures, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, docs...)
}

var ruleID = hostpolicytest.RuleID

// eventWait bounds the wait for an event. Events are emitted before the
// operation they decide returns, so a wait only lasts until the Run
// goroutine hands the event over; the bound turns a missing event into a
// failure instead of a hang.
const eventWait = 10 * time.Second

// start opens the tier, applies rs and runs it until the test ends.
func start(t *testing.T, opts Options, rs *hostpolicy.RuleSet) (*Enforcer, *eventtest.Collector, map[uint32]string) {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	unenforced, err := e.Apply(rs)
	if err != nil {
		_ = e.Close()
		t.Fatal(err)
	}
	c := eventtest.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, c.Add) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e, c, unenforced
}

func isEPERM(err error) bool {
	return errors.Is(err, unix.EPERM)
}

// readLine reads one line from r, or fails the test.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read child: %v (%q)", err, line)
	}
	return strings.TrimSpace(line)
}
