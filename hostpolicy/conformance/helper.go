package conformance

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	execpkg "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// Kernel tiers run the table's operations as real processes: copies of the
// tier's own test binary at the table's program paths (Install), started in
// helper mode (StartHelper), performing one operation per request. A tier's
// test binary calls HelperMain first thing (from init), so that a copy
// started as a helper or as an exec target never runs the tests. The binary
// should be static (CGO_ENABLED=0): under a file allow-list no library or
// loader is readable.

// helperEnv selects the mode of a copy of the test binary.
const helperEnv = "KUBEARMOR_CONFORMANCE_HELPER"

// HelperMain serves operations on stdin when this process is a helper, and
// exits at once when it is an exec target; otherwise it returns.
func HelperMain() {
	switch os.Getenv(helperEnv) {
	case "serve":
		serve(os.Stdin, os.Stdout)
		os.Exit(0)
	case "exit":
		os.Exit(0)
	}
}

// Install copies the running test binary to path (mode 0755, directories
// created) unless a file is there already.
func Install(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// HelperOptions are the subject a helper runs as.
type HelperOptions struct {
	UID      uint32   // uid and gid
	TTY      *os.File // the terminal side of a pty to make its controlling terminal, or nil
	CgroupFD int      // a cgroup2 directory to start it in, or -1
}

// Helper is a running helper process.
type Helper struct {
	Pid int
	cmd *execpkg.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// StartHelper starts program (see Install) as a helper; it is stopped when
// the test ends, or by Stop.
func StartHelper(t testing.TB, program string, o HelperOptions) *Helper {
	t.Helper()
	cmd := execpkg.Command(program, "-test.run=^$")
	cmd.Env = []string{helperEnv + "=serve"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.UID, Gid: o.UID}}
	if o.CgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, o.CgroupFD
	}
	if o.TTY != nil {
		cmd.ExtraFiles = []*os.File{o.TTY}
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 3
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("helper %s: %v", program, err)
	}
	h := &Helper{Pid: cmd.Process.Pid, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(h.Stop)
	return h
}

// Stop ends the helper and waits for it.
func (h *Helper) Stop() {
	if h.in != nil {
		_ = h.in.Close()
		_ = h.cmd.Wait()
		h.in = nil
	}
}

// Result is what an operation returned: 0 for success, else the errno.
type Result = syscall.Errno

// Do performs op (its paths under the tier's root) in the helper. For a
// Capability op it makes a raw ICMP socket, which needs CAP_NET_RAW (the
// only capability the table uses).
func (h *Helper) Do(t testing.TB, op Op) Result {
	t.Helper()
	var line string
	switch op.Kind {
	case Open:
		mode := "r"
		switch {
		case op.Dir:
			mode = "d"
		case op.Write:
			mode = "w"
		}
		line = "open " + mode + " " + op.Object
	case Exec:
		line = "exec " + op.Object
	case Socket:
		line = "socket " + op.SockType + " " + op.Proto
	case Capability:
		if op.Object != "net_raw" {
			t.Fatalf("the helper uses no capability %q", op.Object)
		}
		line = "socket raw icmp"
	default:
		t.Fatalf("no %v operation in the helper", op.Kind)
	}
	return h.Line(t, line)
}

// Line sends one request line ("open r|w|d PATH", "exec PATH",
// "socket TYPE [PROTO]") and returns its result.
func (h *Helper) Line(t testing.TB, line string) Result {
	t.Helper()
	if strings.ContainsAny(line, "\n") {
		t.Fatalf("request %q has a newline", line)
	}
	if _, err := fmt.Fprintln(h.in, line); err != nil {
		t.Fatalf("helper %d: %v", h.Pid, err)
	}
	reply, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper %d: %q: no reply: %v", h.Pid, line, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(reply))
	if err != nil {
		t.Fatalf("helper %d: %q: %s", h.Pid, line, reply)
	}
	return Result(n)
}

// serve is the helper's side: one request a line, one errno a line (0 for
// success, -1 for a bad request). It uses raw system calls only, so that
// nothing but the operation opens a file (os/exec would open /dev/null).
func serve(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var err error
		switch {
		case len(f) == 3 && f[0] == "open":
			flags := unix.O_RDONLY
			switch f[1] {
			case "w":
				flags = unix.O_WRONLY
			case "d":
				flags |= unix.O_DIRECTORY
			}
			fd, e := unix.Open(f[2], flags|unix.O_CLOEXEC, 0)
			if err = e; e == nil {
				unix.Close(fd)
			}
		case len(f) == 2 && f[0] == "exec":
			err = run(f[1])
		case (len(f) == 2 || len(f) == 3) && f[0] == "socket":
			proto := ""
			if len(f) == 3 {
				proto = f[2]
			}
			typ, _ := hostpolicy.SocketTypeNamed(f[1])
			ip, _ := hostpolicy.IPProtocolNamed(proto) // "": protocol 0
			fd, e := unix.Socket(unix.AF_INET, int(typ.Number), int(ip.Number))
			if err = e; e == nil {
				unix.Close(fd)
			}
		default:
			fmt.Fprintln(w, -1)
			continue
		}
		var errno syscall.Errno
		if err != nil && !errors.As(err, &errno) {
			errno = 0xffff
		}
		fmt.Fprintln(w, int(errno))
	}
}

// run starts path as an exec target (it exits at once) and waits for it;
// the error is the execve's.
func run(path string) error {
	pid, err := syscall.ForkExec(path, []string{path}, &syscall.ProcAttr{
		Env: []string{helperEnv + "=exit"}, Files: []uintptr{2, 2, 2}})
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return syscall.ECHILD // started, but did not exit cleanly
	}
	return nil
}

// MakeObject makes op's object, owned by op's uid when op.Owner says so and
// by another uid otherwise: a directory (op.Dir), a copy of the test binary
// for an Exec, else a file anyone may read and write.
func MakeObject(t testing.TB, op Op) {
	t.Helper()
	switch {
	case op.Dir:
		if err := os.MkdirAll(op.Object, 0o755); err != nil {
			t.Fatal(err)
		}
	case op.Kind == Exec:
		Install(t, op.Object)
	default:
		if err := os.MkdirAll(filepath.Dir(op.Object), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(op.Object, []byte("x"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(op.Object, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	uid := int(op.UID) + 1
	if op.Owner {
		uid = int(op.UID)
	}
	if err := os.Chown(op.Object, uid, 0); err != nil {
		t.Fatal(err)
	}
}

// OpenPTS opens a new pseudo-terminal and returns its terminal side
// (closed when the test ends); it skips when there are none.
func OpenPTS(t testing.TB) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Reachable makes every directory above path (up to /) searchable by
// every uid, so that helpers of other uids reach the tier's root.
func Reachable(t testing.TB, path string) {
	t.Helper()
	for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// WithSentinel returns a copy of rs with one more host rule, an Audit rule
// on opens of path, and that rule's ID. A tier's events keep order, so
// once the event of an open of path after an operation is in, every event
// of that operation is: an operation that raised none is told from one
// whose event is late.
func WithSentinel(t testing.TB, rs *hostpolicy.RuleSet, path string) (*hostpolicy.RuleSet, uint32) {
	t.Helper()
	s := hostpolicytest.Compile(t, hostpolicy.Options{Host: "h"},
		hostpolicytest.HostPolicy("zz-sentinel", "  file:\n    matchPaths:\n    - path: "+path+"\n  action: Audit\n"))
	r := s.Rules[0]
	if _, taken := rs.Rule(r.ID); taken {
		t.Fatalf("sentinel rule ID %d is taken", r.ID)
	}
	cp := *rs
	cp.Rules = append(append([]hostpolicy.Rule(nil), rs.Rules...), r)
	return &cp, r.ID
}
