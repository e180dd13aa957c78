package fanotify

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
)

// fanotifyTier runs the conformance table against this tier on the host
// kernel: real opens, execs and sockets by real processes (copies of this
// test binary at the table's program paths, in a cgroup of their own, as
// the case's uid and with a terminal when it says so) of real files on a
// marked tmpfs.
type fanotifyTier struct {
	t       *testing.T
	root    string
	cgroup  string
	cgfd    int
	e       *Enforcer
	events  *collector
	rs      *hostpolicy.RuleSet
	helpers map[string]*helper
}

func (*fanotifyTier) Name() string       { return "fanotify" }
func (*fanotifyTier) Enforces() bool     { return true }
func (*fanotifyTier) DenyResult() string { return "Operation not permitted" }

func (f *fanotifyTier) Apply(t *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	t.Helper()
	for _, r := range rs.Rules {
		if r.Action == hostpolicy.ActionAllow && r.Source == "" && r.Category != hostpolicy.CategoryNetwork {
			// Marks cover every filesystem then: every program on this
			// shared host would be in allow-list mode while it runs.
			t.Skip("runner: an allow-list for every program would confine the whole host; per-source allow-lists and network (the test's cgroup) are run")
		}
	}
	f.rs = rs
	got, err := f.e.Apply(rs)
	if err != nil {
		t.Fatal(err)
	}
	// The agent, not the tier, reports container policies' rules
	// (agent/containers.go): this tier cannot scope rules to containers.
	for _, r := range rs.ContainerRules {
		got[r.ID] = conformance.ContainersBPFLSMOnly + Name
	}
	return got
}

func (f *fanotifyTier) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	t.Helper()
	// op.Container: this tier decides every process alike, so an
	// operation in a container is the same operation on the host.
	h := f.helper(t, op.Program, op.UID, op.TTY)
	var cmd string
	switch op.Kind {
	case conformance.Open:
		f.object(t, op, "")
		mode := "r"
		if op.Write {
			mode = "w"
		}
		cmd = "open " + mode + " " + op.Object
	case conformance.Exec:
		f.object(t, op, "/bin/true")
		cmd = "exec " + op.Object
	case conformance.Socket:
		cmd = "socket " + op.SockType + " " + op.Proto
	default:
		t.Fatalf("no %v operation here", op.Kind)
	}
	f.events.reset()
	res := h.do(t, cmd)
	out := conformance.Outcome{Denied: res != "ok"}
	if out.Denied && !strings.Contains(res, "operation not permitted") {
		t.Fatalf("%s: %s", cmd, res)
	}
	// A decision's event is emitted before the operation returns; one
	// that allowed silently emits none, which a short wait confirms.
	wait := 200 * time.Millisecond
	if out.Denied {
		wait = 10 * time.Second
	}
	if ev, ok := f.events.first(wait); ok {
		out.Verdict, out.RuleID = ev.Verdict, ev.RuleID
		if out.Denied != (ev.Retval < 0) {
			t.Errorf("event %+v, but the operation said %q", ev, res)
		}
	}
	return out
}

// object makes op's object: a directory, a copy of program, or a file,
// owned by op's uid or by another as the case says.
func (f *fanotifyTier) object(t *testing.T, op conformance.Op, program string) {
	t.Helper()
	switch {
	case op.Dir:
		if err := os.MkdirAll(op.Object, 0o755); err != nil {
			t.Fatal(err)
		}
	case program != "":
		if _, err := os.Stat(op.Object); err != nil {
			copyFile(t, program, op.Object)
		}
	default:
		writeFile(t, op.Object, "x")
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

// helper is a long-lived process at a program path: started before the
// case's rules are in force (its own exec is not the operation under
// test), it performs one operation per line of stdin.
type helper struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (f *fanotifyTier) helper(t *testing.T, program string, uid uint32, tty bool) *helper {
	t.Helper()
	k := fmt.Sprintf("%s %d %v", program, uid, tty)
	if h := f.helpers[k]; h != nil {
		return h
	}
	// Start it with no rules in force, then put the case's back.
	if _, err := f.e.Apply(&hostpolicy.RuleSet{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := f.e.Apply(f.rs); err != nil {
			t.Fatal(err)
		}
	}()
	if _, err := os.Stat(program); err != nil {
		copyFile(f.t, os.Args[0], program)
	}
	cmd := exec.Command(program, "-test.run=^$")
	cmd.Env = append(os.Environ(), "FANOTIFY_TEST_CHILD=conformance")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: f.cgfd,
		Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if tty {
		pts := conformance.OpenPTS(f.t)
		cmd.ExtraFiles = []*os.File{pts}
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
	h := &helper{cmd: cmd, in: in, out: bufio.NewReader(out)}
	f.t.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	f.helpers[k] = h
	return h
}

func (h *helper) do(t *testing.T, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(h.in, line); err != nil {
		t.Fatal(err)
	}
	return readLine(t, h.out)
}

// conformanceHelper is the helper's side: one operation per line.
func conformanceHelper() {
	protos := map[string]int{"": 0, "tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": unix.IPPROTO_ICMP}
	types := map[string]int{"stream": unix.SOCK_STREAM, "dgram": unix.SOCK_DGRAM, "raw": unix.SOCK_RAW}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var err error
		switch {
		case len(f) == 3 && f[0] == "open":
			flags := os.O_RDONLY
			if f[1] == "w" {
				flags = os.O_WRONLY
			}
			var file *os.File
			if file, err = os.OpenFile(f[2], flags, 0); err == nil {
				file.Close()
			}
		case len(f) == 2 && f[0] == "exec":
			var out []byte
			if out, err = exec.Command(f[1]).CombinedOutput(); err != nil {
				err = fmt.Errorf("%w %s", err, out)
			}
		case len(f) >= 2 && f[0] == "socket":
			proto := ""
			if len(f) == 3 {
				proto = f[2]
			}
			var fd int
			if fd, err = unix.Socket(unix.AF_INET, types[f[1]], protos[proto]); err == nil {
				unix.Close(fd)
			}
		default:
			err = fmt.Errorf("bad command %q", sc.Text())
		}
		if err != nil {
			fmt.Println(strings.ToLower(err.Error()))
		} else {
			fmt.Println("ok")
		}
	}
}

func TestConformance(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	// The helpers of other uids must reach the tmpfs.
	for d := filepath.Dir(fs); strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cg, cgfd := testCgroup(t)
	e, events, _ := start(t, Options{cgroup: cg}, &hostpolicy.RuleSet{})
	conformance.Run(t, fs, &fanotifyTier{t: t, root: fs, cgroup: cg, cgfd: cgfd, e: e, events: events, helpers: map[string]*helper{}})
}

// reset forgets the events so far.
func (c *collector) reset() {
	c.mu.Lock()
	c.evs = nil
	c.mu.Unlock()
}

// first waits up to d for the first event since the last reset.
func (c *collector) first(d time.Duration) (event.Event, bool) {
	limit := time.After(d)
	for {
		c.mu.Lock()
		if len(c.evs) > 0 {
			ev := c.evs[0]
			c.mu.Unlock()
			return ev, true
		}
		c.mu.Unlock()
		select {
		case <-c.new:
		case <-limit:
			return event.Event{}, false
		}
	}
}
