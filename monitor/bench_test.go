package monitor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/proctable"
)

// benchLoop is the workload of TestOverhead, run in a child process so the
// monitor (which ignores its own process) sees it. It prints the loop's
// wall time in ns.
func benchLoop(args []string) int {
	if len(args) < 2 {
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return 2
	}
	path := ""
	if len(args) > 2 {
		path = args[2]
	}
	if args[0] == "openloop-rel" { // the same file by a relative path
		if err := os.Chdir(filepath.Dir(path)); err != nil {
			return 1
		}
		path = filepath.Base(path)
	}
	start := time.Now()
	switch args[0] {
	case "openloop", "openloop-rel":
		for i := 0; i < n; i++ {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return 1
			}
			unix.Close(fd)
		}
	case "sendloop-udp", "sendloop-tcp": // sends the DNS program checks and passes over
		fd, err := sendSocket(args[0] == "sendloop-tcp")
		if err != nil {
			return 1
		}
		msg := []byte("x")
		for i := 0; i < n; i++ {
			if err := unix.Sendto(fd, msg, 0, nil); err != nil {
				return 1
			}
		}
	case "getpidloop": // a syscall nothing reports
		for i := 0; i < n; i++ {
			unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
		}
	case "setuidloop": // setuid(0) as root: reported only with capabilities visible
		for i := 0; i < n; i++ {
			unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
		}
	case "forkexec":
		for i := 0; i < n; i++ {
			if err := exec.Command(args[2]).Run(); err != nil {
				return 1
			}
		}
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return 0
}

// sample is one workload run: wall time of the loop, CPU time of the whole
// child (its rusage includes the children it reaped).
type sample struct{ wall, cpu time.Duration }

func runLoop(t *testing.T, args ...string) sample {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%v: output %q", args, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return sample{wall: time.Duration(ns), cpu: cpu}
}

// floorLinks attaches empty programs to the tracepoints the monitor uses
// for scope.
// floorLinks attaches syscallProg to the syscall tracepoints of scope and
// empty programs to the process lifecycle ones.
func floorLinks(t *testing.T, objs *floorBPFObjects, scope Scope, syscallProg *ebpf.Program) []link.Link {
	t.Helper()
	var links []link.Link
	add := func(l link.Link, err error) {
		if err != nil {
			t.Fatalf("attach floor program: %v", err)
		}
		links = append(links, l)
	}
	add(link.Tracepoint("sched", "sched_process_exec", objs.FloorTp, nil))
	add(link.AttachTracing(link.TracingOptions{Program: objs.FloorFork}))
	add(link.AttachTracing(link.TracingOptions{Program: objs.FloorExit}))
	traceExec := scope&ScopeProcess != 0 && scope&^ScopeProcess != 0
	for _, s := range tracedSyscalls {
		if s.scope&scope == 0 || s.exit == exitExec && !traceExec {
			continue
		}
		dirs := []string{"exit"}
		if s.exit == exitExec {
			dirs = append(dirs, "enter")
		}
		for _, dir := range dirs {
			l, err := link.Tracepoint("syscalls", "sys_"+dir+"_"+s.kernelName(), syscallProg, nil)
			if err == nil {
				links = append(links, l)
			}
		}
	}
	return links
}

type overheadCase struct {
	name  string
	scope Scope
	args  []string
	// want is how many events of resource the workload causes; every one
	// must be emitted or counted as lost or dropped.
	resource string
	want     uint64
}

// TestOverhead measures what the monitor costs a workload: the workload
// runs alternately with nothing attached, with empty programs on the same
// tracepoints (the floor), with programs that only write an empty record
// per event (the record floor: what reporting every event costs before it
// reports anything), and with the monitor (events decoded, attributed
// and JSON-encoded). It reports medians and ratios; it asserts nothing
// about them, because the machine it runs on is shared. Set
// MONITOR_BENCH=1 to run it (MONITOR_BENCH_ROUNDS, default 9).
func TestOverhead(t *testing.T) {
	if os.Getenv("MONITOR_BENCH") == "" {
		t.Skip("set MONITOR_BENCH=1 to measure overhead")
	}
	requireKernel(t)
	rounds := 9
	if v, err := strconv.Atoi(os.Getenv("MONITOR_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary")
	}
	file := filepath.Join(t.TempDir(), "bench-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []overheadCase{
		{"open/close x100000, file visibility", ScopeFile, []string{"openloop", "100000", file}, file, 100000},
		{"fork+exec x150, process visibility", ScopeProcess, []string{"forkexec", "150", truePath}, "", 0},
	}

	spec, err := loadFloorBPF()
	if err != nil {
		t.Fatal(err)
	}
	var floor floorBPFObjects
	if err := spec.LoadAndAssign(&floor, nil); err != nil {
		t.Fatal(err)
	}
	defer floor.Close()
	drain, err := newRing(floor.FloorEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer drain.close()
	stopDrain := make(chan struct{})
	defer close(stopDrain)
	go func() { // keeps the record floor's ring buffer from filling up
		for {
			select {
			case <-stopDrain:
				return
			case <-time.After(10 * time.Millisecond):
				drain.drain(func([]byte) {})
			}
		}
	}()

	only := os.Getenv("MONITOR_BENCH_CASE")
	for _, c := range cases {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		samples := map[string][]sample{}
		var events, lost, dropped uint64
		for r := 0; r < rounds; r++ {
			samples["off"] = append(samples["off"], runLoop(t, c.args...))

			for _, f := range []struct {
				mode string
				prog *ebpf.Program
			}{{"floor", floor.FloorTp}, {"record floor", floor.FloorRecord}} {
				links := floorLinks(t, &floor, c.scope, f.prog)
				samples[f.mode] = append(samples[f.mode], runLoop(t, c.args...))
				for _, l := range links {
					l.Close()
				}
			}

			for _, mode := range []string{"decode only", "monitor"} {
				st, n := runMonitored(t, c, mode == "monitor", &samples)
				if mode == "monitor" {
					events += n
				}
				lost += st.Lost
				dropped += st.Dropped
			}
		}
		report(t, c.name, samples)
		t.Logf("%s: %d events emitted over %d monitored rounds, %d lost in kernel, %d dropped in user space",
			c.name, events, rounds, lost, dropped)
	}
}

// runMonitored runs the workload under a monitor; full adds what the agent
// does per event (attribution and JSON encoding), otherwise events are only
// decoded. Samples go to "monitor" or "decode only".
func runMonitored(t *testing.T, c overheadCase, full bool, samples *map[string][]sample) (Stats, uint64) {
	t.Helper()
	m, err := Open(Options{Visibility: c.scope})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var n, ofResource atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	enc := json.NewEncoder(io.Discard)
	go func() {
		m.Run(ctx, func(ev event.Event) {
			n.Add(1)
			if c.resource != "" && ev.Resource == c.resource {
				ofResource.Add(1)
			}
			if !full {
				return
			}
			a := m.Table().Describe(&ev)
			enc.Encode(struct {
				E *event.Event
				A *proctable.Attribution
			}{&ev, &a})
		})
		close(done)
	}()
	mode := "decode only"
	if full {
		mode = "monitor"
	}
	(*samples)[mode] = append((*samples)[mode], runLoop(t, c.args...))
	settleQueue(m)
	cancel()
	<-done
	st := m.Stats()
	if got := ofResource.Load(); c.want > 0 && got+st.Lost+st.Dropped+st.StashFull < c.want {
		t.Errorf("%s (%s): %d events of %s + %d lost + %d dropped < %d caused: some went missing uncounted",
			c.name, mode, got, c.resource, st.Lost, st.Dropped, c.want)
	}
	return st, n.Load()
}

// settleQueue waits until the monitor has read what the ring buffer holds.
func settleQueue(m *Monitor) {
	for m.ring.available() > 0 {
		time.Sleep(time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func report(t *testing.T, name string, samples map[string][]sample) {
	t.Helper()
	med := func(mode string, cpu bool) time.Duration {
		var ds []time.Duration
		for _, s := range samples[mode] {
			if cpu {
				ds = append(ds, s.cpu)
			} else {
				ds = append(ds, s.wall)
			}
		}
		return median(ds)
	}
	for _, kind := range []struct {
		label string
		cpu   bool
	}{{"wall", false}, {"cpu", true}} {
		off, floor, rec := med("off", kind.cpu), med("floor", kind.cpu), med("record floor", kind.cpu)
		dec, on := med("decode only", kind.cpu), med("monitor", kind.cpu)
		pct := func(d time.Duration) float64 { return float64(d-off) / float64(off) * 100 }
		t.Logf("%s [%s, median of %d]: off %v | floor %v (%+.1f%%) | record floor %v (%+.1f%%, %.2fx floor) | decode only %v (%+.1f%%, %.2fx floor) | monitor %v (%+.1f%%, %.2fx floor)",
			name, kind.label, len(samples["off"]), off, floor, pct(floor), rec, pct(rec), pct(rec)/pct(floor),
			dec, pct(dec), pct(dec)/pct(floor), on, pct(on), pct(on)/pct(floor))
	}
}

// BenchmarkDecodePipeline is the user-space cost per event: parse a
// record, keep the process table, attribute the event and JSON-encode it,
// over a synthetic stream (opens, connects, setuids, and a process's
// fork/exec/exit every 50 records). Run with -cpu 1 for one core.
func BenchmarkDecodePipeline(b *testing.B) {
	b.Run("decode+table", func(b *testing.B) { benchPipeline(b, false) })
	b.Run("decode+table+json", func(b *testing.B) { benchPipeline(b, true) })
}

func benchPipeline(b *testing.B, encode bool) {
	d := &decoder{
		table:      proctable.New(proctable.Options{}),
		visibility: ScopeAll,
	}
	for pid := uint32(1000); pid < 1100; pid++ {
		d.table.Exec(proctable.Process{HostPID: pid, HostPPID: 1, Exe: "/usr/bin/app", Args: []string{"--serve"}, Cwd: "/srv"})
	}
	var stream [][]byte
	for i := 0; i < 50; i++ {
		pid := uint32(1000 + i)
		switch i % 5 {
		case 0, 1, 2:
			stream = append(stream, rawRecord{kind: recSyscall, nr: sysOpenat, retval: 3, hostPID: pid, hostPPID: 1, comm: "app",
				args: [6]uint64{uint64(uint32(0xffffff9c)), 0, unix.O_RDONLY | unix.O_CLOEXEC}, fields: []string{"/srv/data/file-" + strconv.Itoa(i)}}.bytes())
		case 3:
			stream = append(stream, rawRecord{kind: recSyscall, nr: sysConnect, hostPID: pid, hostPPID: 1, comm: "app",
				args: [6]uint64{3}, fields: []string{string(sockaddrIn(443, [4]byte{10, 0, 0, 1}))}}.bytes())
		case 4:
			stream = append(stream, rawRecord{kind: recSyscall, nr: sysSetuid, retval: -1, hostPID: pid, hostPPID: 1, comm: "app"}.bytes())
		}
	}
	stream = append(stream,
		rawRecord{kind: recFork, hostPID: 5000, hostPPID: 1000}.bytes(),
		rawRecord{kind: recExec, nr: sysExecve, hostPID: 5000, hostPPID: 1000, comm: "ls",
			fields: []string{"ls\x00bin\x00usr\x00", "/bin/ls", "ls\x00-la\x00", "srv\x00", ""}}.bytes(),
		rawRecord{kind: recExit, hostPID: 5000, hostPPID: 1000}.bytes(),
	)
	enc := json.NewEncoder(io.Discard)
	var ev event.Event
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		emit, err := d.decode(stream[i%len(stream)], &ev)
		if err != nil {
			b.Fatal(err)
		}
		if emit {
			a := d.table.Describe(&ev)
			if !encode {
				i++
				continue
			}
			enc.Encode(struct {
				E *event.Event
				A *proctable.Attribution
			}{&ev, &a})
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// sendSocket is a connected socket for sendloop: UDP to a port that is
// not DNS (9, discard; a listener there takes the datagrams), or TCP.
func sendSocket(tcp bool) (int, error) {
	network := "udp4"
	if tcp {
		network = "tcp4"
	}
	var addr string
	if tcp {
		ln, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			return -1, err
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(io.Discard, c)
			}
		}()
		addr = ln.Addr().String()
	} else {
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			return -1, err
		}
		go func() {
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		addr = pc.LocalAddr().String()
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	typ := unix.SOCK_DGRAM
	if tcp {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return -1, err
	}
	return fd, unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
}

// TestProgramCost reports the kernel's run-time statistics of each monitor
// program during an open/close loop, by an absolute and by a relative path
// (MONITOR_BENCH=1).
func TestProgramCost(t *testing.T) {
	if os.Getenv("MONITOR_BENCH") == "" {
		t.Skip("set MONITOR_BENCH=1 to measure program cost")
	}
	requireKernel(t)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Skipf("BPF run-time stats: %v", err)
	}
	defer stats.Close()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)

	// Syscalls nothing reports, without a monitor and (below) with one.
	// MONITOR_BENCH=quick: a tenth of the iterations (the VM test).
	scale := func(n int) int {
		if os.Getenv("MONITOR_BENCH") == "quick" {
			return n / 10
		}
		return n
	}
	perOp := func(loop string) time.Duration {
		n := scale(1000000)
		s := runLoop(t, loop, strconv.Itoa(n), file)
		return s.wall / time.Duration(n)
	}
	// MONITOR_BENCH_LOOPS=openloop=20000,forkexec=500: only these loops,
	// with these counts (a short guest run under instruction counting).
	only := map[string]int{}
	if v := os.Getenv("MONITOR_BENCH_LOOPS"); v != "" {
		for _, f := range strings.Split(v, ",") {
			name, num, _ := strings.Cut(f, "=")
			n, err := strconv.Atoi(num)
			if err != nil || n <= 0 {
				t.Fatalf("MONITOR_BENCH_LOOPS: %q: want name=count", f)
			}
			only[name] = n
		}
	}
	var offGetpid, offSetuid time.Duration
	if len(only) == 0 {
		offGetpid, offSetuid = perOp("getpidloop"), perOp("setuidloop")
	}

	// The agent's default: process, file and network visible, failed
	// setuid/setgid reported (FailuresOf capabilities); the hooks
	// MONITOR_TEST_HOOKS asks for, to compare the two paths.
	m, err := Open(Options{Visibility: ScopeProcess | ScopeFile | ScopeNetwork, FailuresOf: ScopeCapabilities, Hooks: testHooks()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, func(event.Event) {})
	if len(only) == 0 {
		onGetpid, onSetuid := perOp("getpidloop"), perOp("setuidloop")
		t.Logf("getpid  per call: monitor off %v, on %v", offGetpid, onGetpid)
		t.Logf("setuid(0) per call: monitor off %v, on %v", offSetuid, onSetuid)
	}
	// Programs by name; the fexit path loads one copy per function, summed here.
	progs := map[string][]*ebpf.Program{}
	for _, p := range append([]*ebpf.Program{m.objs.SchedExec, m.objs.SchedFork, m.objs.SchedExit}, m.progs...) {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		progs[info.Name] = append(progs[info.Name], p)
	}
	hooks, note := m.Hooks()
	t.Logf("hooks: %s %s", hooks, note)
	last := map[string]ebpf.ProgramStats{}
	for _, loop := range []struct {
		name string
		n    int
	}{{"openloop", 100000}, {"openloop-rel", 100000}, {"sendloop-udp", 100000}, {"sendloop-tcp", 100000}, {"forkexec", 300}} {
		arg := file
		if loop.name == "forkexec" {
			arg = "/bin/true"
		}
		n := scale(loop.n)
		if len(only) > 0 {
			if n = only[loop.name]; n == 0 {
				continue
			}
		}
		s := runLoop(t, loop.name, strconv.Itoa(n), arg)
		t.Logf("%s: wall %v cpu %v (%v per operation)", loop.name, s.wall, s.cpu, s.cpu/time.Duration(n))
		for name, ps := range progs {
			var sum ebpf.ProgramStats
			for _, p := range ps {
				st, err := p.Stats()
				if err != nil {
					t.Fatal(err)
				}
				sum.RunCount += st.RunCount
				sum.Runtime += st.Runtime
			}
			runs, rt := sum.RunCount-last[name].RunCount, sum.Runtime-last[name].Runtime
			last[name] = sum
			if runs > 0 {
				t.Logf("  %-16s runs %8d  avg %v", name, runs, rt/time.Duration(runs))
			}
		}
	}
	t.Logf("stats %+v", m.Stats())
}

// BenchmarkLifecycle is the user-space cost of one process's life as the
// kernel reports it: a fork, an exec and an exit record, copied into a
// batch as the ring-buffer reader does and decoded by the same code Run
// uses, process table included. "none" is hostVisibility none: nothing is
// emitted, the records only keep the table current. "process" emits the
// exec event and attributes it (Describe), the first step of the agent's
// pipeline (agent's BenchmarkPipeline measures the rest). One op is the
// whole fork+exec+exit; run with -cpu 1.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchLifecycle(b, 0) })
	b.Run("process", func(b *testing.B) { benchLifecycle(b, ScopeProcess) })
}

func benchLifecycle(b *testing.B, vis Scope) {
	// A host running an exec loop like the benchmark's (one every 300 µs)
	// keeps some 17,000 exited processes for their 5 s. At this loop's
	// pace a 20 ms TTL keeps about as many, and the table reaches its
	// steady state (entries expire as fast as processes end) at once.
	tab := proctable.New(proctable.Options{ExitedTTL: 20 * time.Millisecond})
	// A login shell (1000) in a table of a few hundred processes.
	for pid := uint32(2); pid < 500; pid++ {
		tab.Exec(proctable.Process{HostPID: pid, HostPPID: 1, Exe: "/usr/sbin/daemon", Args: []string{"--serve"}, Cwd: "/"})
	}
	tab.Exec(proctable.Process{HostPID: 1000, HostPPID: 999, Exe: "/usr/bin/bash", Cwd: "/home/user", TTY: "pts0"})
	m := &Monitor{table: tab, dec: decoder{table: tab, visibility: vis}}
	// What the kernel writes when the shell runs "ls --color=auto -la /tmp"
	// in /home/user: the exe path leaf first, the file name execve was
	// given, argv, the cwd leaf first, the tty.
	recs := [][]byte{
		rawRecord{kind: recFork, hostPID: 1, hostPPID: 1000, pid: 1, uid: 1000, comm: "bash"}.bytes(),
		rawRecord{kind: recExec, nr: sysExecve, hostPID: 1, hostPPID: 1000, pid: 1, uid: 1000, comm: "ls",
			fields: []string{"ls\x00bin\x00usr\x00", "/usr/bin/ls", "ls\x00--color=auto\x00-la\x00/tmp\x00", "user\x00home\x00", "pts0"}}.bytes(),
		rawRecord{kind: recExit, hostPID: 1, hostPPID: 1000, pid: 1, uid: 1000, comm: "ls"}.bytes(),
	}
	emitted := 0
	emit := func(ev event.Event) {
		tab.Describe(&ev)
		emitted++
	}
	bt := newBatch().(*batch)
	var ev event.Event
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A new pid each time, as the kernel hands them out.
		pid := uint32(2000 + i%30000)
		bt.reset()
		for _, rec := range recs {
			m.received.Add(1)
			bt.add(rec)
			binary.LittleEndian.PutUint32(bt.buf[len(bt.buf)-len(rec)+offHostPID:], pid)
			binary.LittleEndian.PutUint32(bt.buf[len(bt.buf)-len(rec)+offPID:], pid)
		}
		m.decodeBatch(bt, &ev, emit)
	}
	if m.decodeErrors.Load() != 0 || (vis != 0) != (emitted > 0) {
		b.Fatalf("decode errors %d, events %d", m.decodeErrors.Load(), emitted)
	}
}
