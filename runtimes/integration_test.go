package runtimes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/monitor"
	"github.com/armorhost/kubearmor/runtimes"
	"github.com/armorhost/kubearmor/runtimes/runtimetest"
)

// These tests run real dockerd and containerd (runtimetest) as root and
// check attribution with the keys the kernel reports: first computed from
// /proc as the BPF side reads them, then from real monitor events.

var shared struct {
	once   sync.Once
	unlock func() // runtimetest.HostLock, held while the lab runs
	lab    *runtimetest.Lab
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.lab != nil {
		if err := shared.lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "runtimetest cleanup:", err)
			code = 1
		}
	}
	if shared.unlock != nil {
		shared.unlock()
	}
	os.Exit(code)
}

func theLab(t *testing.T) *runtimetest.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("starts dockerd and containerd; not in -short")
	}
	shared.once.Do(func() {
		// Taken here, not in TestMain: the fuzz workers run TestMain too,
		// and would wait on their coordinator's lock.
		if shared.unlock, shared.err = runtimetest.HostLock(); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.lab, shared.err = runtimetest.Start(ctx)
	})
	if errors.Is(shared.err, runtimetest.ErrUnavailable) {
		t.Skipf("skipping: %v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("start container runtimes: %v", shared.err)
	}
	return shared.lab
}

// changes counts cache changes, so tests wait on the Resolver's own
// notifications rather than on time.
type changes struct{ c chan struct{} }

func (c changes) notify() {
	select {
	case c.c <- struct{}{}:
	default:
	}
}

// until waits for cond, re-checking on every cache change; the deadline
// only guards against a hang.
func (c changes) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !cond() {
		select {
		case <-c.c:
		case <-time.After(50 * time.Millisecond): // status changes do not notify
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startResolver(t *testing.T, opts runtimes.Options) (*runtimes.Resolver, changes) {
	t.Helper()
	ch := changes{make(chan struct{}, 1)}
	opts.OnChange = ch.notify
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	}
	r, err := runtimes.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r, ch
}

func labResolver(t *testing.T, l *runtimetest.Lab) (*runtimes.Resolver, changes) {
	r, ch := startResolver(t, runtimes.Options{DockerSocket: l.DockerSock, ContainerdSocket: "unix://" + l.ContainerdSock})
	ch.until(t, "both runtimes connected", func() bool { return connected(r, runtimes.Docker) && connected(r, runtimes.Containerd) })
	return r, ch
}

func connected(r *runtimes.Resolver, rt string) bool {
	for _, s := range r.Status() {
		if s.Runtime == rt {
			return s.State == runtimes.StateConnected
		}
	}
	return false
}

// kernelKeys are the keys a BPF program reads for a task: the cgroup2 id
// (inode of its cgroup2 directory) and its pid/mnt namespace inodes.
func kernelKeys(t *testing.T, pid int) (uint64, uint32, uint32) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	path, ok := runtimes.UnifiedPath(string(b))
	if !ok {
		t.Skip("no cgroup2 hierarchy on this host")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(runtimes.Cgroup2Mount(string(mi)), path), &st); err != nil {
		t.Fatal(err)
	}
	ns := func(kind string) uint32 {
		var s unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &s); err != nil {
			t.Fatal(err)
		}
		return uint32(s.Ino)
	}
	return st.Ino, ns("pid"), ns("mnt")
}

func dockerPid(t *testing.T, l *runtimetest.Lab, id string) int {
	t.Helper()
	out, err := l.Docker(context.Background(), "inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("docker pid %q: %v", out, err)
	}
	return pid
}

func checkContainer(t *testing.T, what string, got runtimes.Container, ok bool, want runtimes.Container) {
	t.Helper()
	if !ok {
		t.Fatalf("%s: not attributed to a container, want %s", what, want.ID)
	}
	if got.ID != want.ID || got.Name != want.Name || got.Image != want.Image || got.Labels != want.Labels ||
		got.NamespaceName != want.NamespaceName || got.PodName != want.Name || got.Runtime != want.Runtime {
		t.Fatalf("%s: got %+v\nwant ID %s Name %s Image %s Labels %q NamespaceName %s Runtime %s",
			what, got, want.ID, want.Name, want.Image, want.Labels, want.NamespaceName, want.Runtime)
	}
}

// Containers running before the Resolver starts are found by the initial
// listing, with the right metadata, under the keys the kernel reports.
func TestContainersRunningBeforeStart(t *testing.T) {
	l := theLab(t)
	ctx := context.Background()
	did, err := l.DockerRun(ctx, "ka-pre", map[string]string{"tier": "front", "app": "web"}, "/bin/sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Docker(ctx, "rm", "-f", did)
	cpid, err := l.CtrRun(ctx, "kabox-pre", "ka-pre-c", map[string]string{runtimes.LabelContainerName: "friendly", "team": "x"}, "/bin/sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	defer l.CtrRemove(ctx, "kabox-pre", "ka-pre-c")

	r, _ := labResolver(t, l)

	cg, pidns, mntns := kernelKeys(t, dockerPid(t, l, did))
	wantD := runtimes.Container{ID: did, Name: "ka-pre", Image: runtimetest.DockerImage, Labels: "app=web,tier=front",
		NamespaceName: runtimes.DefaultNamespace, Runtime: runtimes.Docker}
	c, ok := r.Lookup(cg, pidns, mntns)
	checkContainer(t, "docker by cgroup id", c, ok, wantD)
	c, ok = r.Lookup(1, pidns, 0)
	checkContainer(t, "docker by pid ns alone (v1-only hosts)", c, ok, wantD)
	c, ok = r.Lookup(1, 0, mntns)
	checkContainer(t, "docker by mnt ns alone", c, ok, wantD)
	if c.CgroupID != cg {
		t.Errorf("docker CgroupID = %d, want %d", c.CgroupID, cg)
	}

	cg, pidns, mntns = kernelKeys(t, cpid)
	wantC := runtimes.Container{ID: "ka-pre-c", Name: "friendly", Image: runtimetest.ContainerdImage,
		Labels: "io.containerd.image.config.stop-signal=SIGTERM," + runtimes.LabelContainerName + "=friendly,team=x", NamespaceName: runtimes.DefaultNamespace, Runtime: runtimes.Containerd}
	c, ok = r.Lookup(cg, pidns, mntns)
	checkContainer(t, "containerd by cgroup id", c, ok, wantC)
	if c.RuntimeNamespace != "kabox-pre" || c.CgroupPath != "/kabox-pre/ka-pre-c" {
		t.Errorf("containerd namespace %q, cgroup path %q; want kabox-pre, /kabox-pre/ka-pre-c", c.RuntimeNamespace, c.CgroupPath)
	}

	// This test process is on the host.
	cg, pidns, mntns = kernelKeys(t, os.Getpid())
	if c, ok := r.Lookup(cg, pidns, mntns); ok {
		t.Errorf("host process attributed to %+v", c)
	}
	if c, ok := r.Wait(ctx, cg, pidns, mntns); ok {
		t.Errorf("host process attributed by Wait to %+v", c)
	}

	// Docker's container also exists in containerd's "moby" namespace;
	// while dockerd is connected it is listed once, as docker's.
	n := 0
	for _, c := range r.Containers() {
		if c.ID == did {
			n++
			if c.Runtime != runtimes.Docker {
				t.Errorf("container %s listed as %s's", did, c.Runtime)
			}
		}
	}
	if n != 1 {
		t.Errorf("docker container listed %d times", n)
	}
}

// markEvents runs the real system monitor and keeps the events whose
// resource or arguments carry marker.
func markEvents(t *testing.T, marker string) <-chan event.Event {
	t.Helper()
	m, err := monitor.Open(monitor.Options{Visibility: monitor.ScopeProcess | monitor.ScopeFile})
	if err != nil {
		t.Skipf("system monitor unavailable: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan event.Event, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, func(ev event.Event) {
			if strings.Contains(ev.Resource, marker) || strings.Contains(strings.Join(ev.Args, " "), marker) {
				select {
				case out <- ev:
				default:
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
	return out
}

// next returns the first event of a cat whose resource or args contain s
// (the docker and ctr commands that start it carry s too).
func next(t *testing.T, evs <-chan event.Event, s string) event.Event {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev := <-evs:
			if ev.Comm == "cat" && (strings.Contains(ev.Resource, s) || strings.Contains(strings.Join(ev.Args, " "), s)) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event mentioning %s", s)
		}
	}
}

// Real kernel events from inside containers started while the Resolver
// runs resolve to them, including the very first exec, which the kernel
// reports before the runtime does; a host event at the same time does not.
func TestKernelEventsAttributed(t *testing.T) {
	l := theLab(t)
	ctx := context.Background()
	marker := fmt.Sprintf("kamark%d", os.Getpid())
	evs := markEvents(t, marker)
	r, ch := labResolver(t, l)
	defer func() { t.Logf("resolver stats: %+v", r.Stats()) }()

	t.Run("docker", func(t *testing.T) {
		did, err := l.DockerRun(ctx, "ka-live", map[string]string{"kubearmor.io/namespace": "shop", "x": "1"},
			"/bin/sh", "-c", "cat /"+marker+"-d-start; exec sleep 600")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Docker(ctx, "rm", "-f", did)
		want := runtimes.Container{ID: did, Name: "ka-live", Image: runtimetest.DockerImage,
			Labels: "kubearmor.io/namespace=shop,x=1", NamespaceName: "shop", Runtime: runtimes.Docker}
		first := next(t, evs, marker+"-d-start")
		c, ok := r.Wait(ctx, first.CgroupID, first.PidNS, first.MntNS)
		checkContainer(t, "first exec (races the start)", c, ok, want)

		l.Docker(ctx, "exec", "ka-live", "/bin/cat", "/"+marker+"-d-exec") // fails: no such file
		for _, op := range []string{event.OpProcess, event.OpFile} {
			ev := nextOp(t, evs, marker+"-d-exec", op)
			c, ok := r.Lookup(ev.CgroupID, ev.PidNS, ev.MntNS)
			checkContainer(t, "docker exec: "+op, c, ok, want)
		}
		hostEvent(t, r, evs, marker+"-d-host")

		if _, err := l.Docker(ctx, "rm", "-f", did); err != nil {
			t.Fatal(err)
		}
		ch.until(t, "removed docker container to leave the cache", func() bool {
			_, ok := r.Lookup(first.CgroupID, 0, 0)
			return !ok
		})
	})

	t.Run("containerd", func(t *testing.T) {
		const ns = "kabox-live"
		if _, err := l.CtrRun(ctx, ns, "ka-live-c", map[string]string{"io.kubernetes.pod.namespace": "k8sns"},
			"/bin/sh", "-c", "cat /"+marker+"-c-start; exec sleep 600"); err != nil {
			t.Fatal(err)
		}
		defer l.CtrRemove(ctx, ns, "ka-live-c")
		want := runtimes.Container{ID: "ka-live-c", Name: "ka-live-c", Image: runtimetest.ContainerdImage,
			Labels: "io.containerd.image.config.stop-signal=SIGTERM,io.kubernetes.pod.namespace=k8sns", NamespaceName: "k8sns", Runtime: runtimes.Containerd}
		first := next(t, evs, marker+"-c-start")
		c, ok := r.Wait(ctx, first.CgroupID, first.PidNS, first.MntNS)
		checkContainer(t, "first exec (races the start)", c, ok, want)

		l.Ctr(ctx, ns, "task", "exec", "--exec-id", "e1", "ka-live-c", "/bin/cat", "/"+marker+"-c-exec") // fails: no such file
		for _, op := range []string{event.OpProcess, event.OpFile} {
			ev := nextOp(t, evs, marker+"-c-exec", op)
			c, ok := r.Lookup(ev.CgroupID, ev.PidNS, ev.MntNS)
			checkContainer(t, "ctr task exec: "+op, c, ok, want)
		}
		hostEvent(t, r, evs, marker+"-c-host")

		if err := l.CtrRemove(ctx, ns, "ka-live-c"); err != nil {
			t.Fatal(err)
		}
		ch.until(t, "deleted containerd container to leave the cache", func() bool {
			_, ok := r.Lookup(first.CgroupID, 0, 0)
			return !ok
		})
	})
}

func nextOp(t *testing.T, evs <-chan event.Event, s, op string) event.Event {
	t.Helper()
	for {
		if ev := next(t, evs, s); ev.Operation == op {
			return ev
		}
	}
}

// hostEvent execs a marked command on the host and checks its events are
// attributed to no container.
func hostEvent(t *testing.T, r *runtimes.Resolver, evs <-chan event.Event, mark string) {
	t.Helper()
	exec.Command("/bin/cat", "/"+mark).Run() // a child: the monitor leaves out its own process
	ev := nextOp(t, evs, mark, event.OpFile)
	if c, ok := r.Lookup(ev.CgroupID, ev.PidNS, ev.MntNS); ok {
		t.Errorf("host event attributed to %+v", c)
	}
	if c, ok := r.Wait(context.Background(), ev.CgroupID, ev.PidNS, ev.MntNS); ok {
		t.Errorf("host event attributed by Wait to %+v", c)
	}
}

// A runtime that is absent at start is reported and picked up when its
// socket appears; one that goes away is reported and followed again when
// it comes back.
func TestRuntimeComesAndGoes(t *testing.T) {
	l := theLab(t)
	ctx := context.Background()
	late := filepath.Join(t.TempDir(), "late.sock")
	r, ch := startResolver(t, runtimes.Options{DockerSocket: late, ContainerdSocket: "none"})
	ch.until(t, "docker reported absent", func() bool { return state(r, runtimes.Docker) == runtimes.StateAbsent })
	if s := state(r, runtimes.Containerd); s != runtimes.StateDisabled {
		t.Errorf("containerd state %q, want %q", s, runtimes.StateDisabled)
	}
	if err := os.Symlink(l.DockerSock, late); err != nil {
		t.Fatal(err)
	}
	ch.until(t, "docker connected once its socket exists", func() bool { return connected(r, runtimes.Docker) })

	l.StopDocker()
	ch.until(t, "docker reported gone", func() bool {
		s := state(r, runtimes.Docker)
		return s == runtimes.StateDisconnected || s == runtimes.StateAbsent
	})
	if err := l.StartDocker(ctx); err != nil {
		t.Fatal(err)
	}
	ch.until(t, "docker connected again", func() bool { return connected(r, runtimes.Docker) })
	did, err := l.DockerRun(ctx, "ka-after", nil, "/bin/sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Docker(ctx, "rm", "-f", did)
	cg, pidns, mntns := kernelKeys(t, dockerPid(t, l, did))
	ch.until(t, "container started after the reconnect", func() bool { _, ok := r.Lookup(cg, pidns, mntns); return ok })
	t.Logf("status: %v", r.Status())
}

func state(r *runtimes.Resolver, rt string) string {
	for _, s := range r.Status() {
		if s.Runtime == rt {
			return s.State
		}
	}
	return ""
}
