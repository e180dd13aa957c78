package proctable

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
)

// clock is a manual clock for TTL tests.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestExecForkExitLifecycle(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	tab := New(Options{ExitedTTL: 5 * time.Second, Now: clk.Now})

	tab.Exec(Process{HostPID: 10, HostPPID: 1, PID: 10, PPID: 1, Exe: "/usr/bin/bash", Args: []string{"-l"}, Cwd: "/root", TTY: "pts0"})
	tab.Fork(Process{HostPID: 11, HostPPID: 10, PID: 11, PPID: 10})

	child, ok := tab.Lookup(11)
	if !ok || child.Exe != "/usr/bin/bash" || child.Cwd != "/root" || child.TTY != "pts0" || child.ParentExe != "/usr/bin/bash" {
		t.Fatalf("forked child = %+v, %v", child, ok)
	}
	if child.CommandLine() != "/usr/bin/bash -l" {
		t.Errorf("forked child's command line = %q", child.CommandLine())
	}

	tab.Exec(Process{HostPID: 11, HostPPID: 10, PID: 11, PPID: 10, Exe: "/usr/bin/cat", Args: []string{"/etc/hosts"}, Cwd: "/root"})
	child, _ = tab.Lookup(11)
	if child.Exe != "/usr/bin/cat" || child.ParentExe != "/usr/bin/bash" || child.CommandLine() != "/usr/bin/cat /etc/hosts" {
		t.Errorf("after exec = %+v", child)
	}

	tab.Exit(11)
	clk.now = clk.now.Add(4 * time.Second)
	tab.Exit(10) // any mutation expires what is due
	if _, ok := tab.Lookup(11); !ok {
		t.Errorf("exited process gone before its TTL")
	}
	clk.now = clk.now.Add(2 * time.Second)
	tab.Fork(Process{HostPID: 12, HostPPID: 1})
	if _, ok := tab.Lookup(11); ok {
		t.Errorf("exited process still there after its TTL")
	}
	if _, ok := tab.Lookup(10); !ok {
		t.Errorf("process 10 expired early")
	}
	if s := tab.Stats(); s.Expired != 1 || s.Entries != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A pid reused by a new process must not be removed by the old one's expiry.
func TestPidReuseSurvivesOldExpiry(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	tab := New(Options{ExitedTTL: time.Second, Now: clk.Now})
	tab.Exec(Process{HostPID: 5, Exe: "/old"})
	tab.Exit(5)
	tab.Exec(Process{HostPID: 5, Exe: "/new"})
	clk.now = clk.now.Add(2 * time.Second)
	tab.Exit(99)
	if p, ok := tab.Lookup(5); !ok || p.Exe != "/new" {
		t.Errorf("reused pid: %+v %v", p, ok)
	}
}

func TestBoundEvictsExitedFirst(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	tab := New(Options{MaxEntries: 3, ExitedTTL: time.Hour, Now: clk.Now})
	tab.Exec(Process{HostPID: 1, Exe: "/a"})
	tab.Exec(Process{HostPID: 2, Exe: "/b"})
	tab.Exec(Process{HostPID: 3, Exe: "/c"})
	tab.Exit(2)
	tab.Exec(Process{HostPID: 4, Exe: "/d"})
	if _, ok := tab.Lookup(2); ok {
		t.Errorf("exited entry kept while a live one had to go")
	}
	for _, pid := range []uint32{1, 3, 4} {
		if _, ok := tab.Lookup(pid); !ok {
			t.Errorf("live pid %d evicted", pid)
		}
	}
	tab.Exec(Process{HostPID: 5, Exe: "/e"})
	if n := tab.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	if s := tab.Stats(); s.Evicted != 1 || s.Expired != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestDescribe(t *testing.T) {
	tab := New(Options{})
	tab.Exec(Process{HostPID: 100, HostPPID: 1, Exe: "/usr/bin/bash"})
	tab.Exec(Process{HostPID: 101, HostPPID: 100, Exe: "/usr/bin/sudo", Args: []string{"-u", "nobody", "id"}, Cwd: "/home/u", TTY: "pts1"})

	setuid := event.Event{HostPID: 101, HostPPID: 100, PID: 101, UID: 0, Operation: event.OpSyscall, Syscall: "SYS_SETUID"}
	a := tab.Describe(&setuid)
	want := Attribution{
		ProcessName: "/usr/bin/sudo", ParentProcessName: "/usr/bin/bash", Source: "/usr/bin/sudo -u nobody id",
		Cwd: "/home/u/", TTY: "pts1", HostPID: 101, HostPPID: 100, PID: 101,
	}
	if a != want {
		t.Errorf("setuid:\n got %+v\nwant %+v", a, want)
	}

	exec := event.Event{HostPID: 101, HostPPID: 100, Operation: event.OpProcess, Syscall: "SYS_EXECVE", Exe: "/usr/bin/sudo"}
	if a := tab.Describe(&exec); a.Source != "/usr/bin/bash" || a.ProcessName != "/usr/bin/sudo" {
		t.Errorf("exec: %+v", a)
	}

	unknown := event.Event{HostPID: 4242, HostPPID: 100, Operation: event.OpFile}
	if a := tab.Describe(&unknown); a.ProcessName != "" || a.ParentProcessName != "/usr/bin/bash" || a.Source != "" {
		t.Errorf("unknown pid: %+v", a)
	}

	root := event.Event{HostPID: 101, HostPPID: 100, Cwd: "/"}
	if a := tab.Describe(&root); a.Cwd != "/" {
		t.Errorf("root cwd printed as %q", a.Cwd)
	}
}

func TestEnrich(t *testing.T) {
	tab := New(Options{})
	tab.Exec(Process{HostPID: 1, Exe: "/sbin/init"})
	tab.Exec(Process{HostPID: 2, HostPPID: 1, Exe: "/usr/bin/x", Cwd: "/w", TTY: "tty1"})
	ev := event.Event{HostPID: 2, HostPPID: 1}
	tab.Enrich(&ev)
	if ev.Exe != "/usr/bin/x" || ev.ParentExe != "/sbin/init" || ev.Cwd != "/w" || ev.TTY != "tty1" {
		t.Errorf("Enrich: %+v", ev)
	}
	ev = event.Event{HostPID: 2, HostPPID: 1, Exe: "/set/by/producer"}
	tab.Enrich(&ev)
	if ev.Exe != "/set/by/producer" {
		t.Errorf("Enrich overwrote the producer's Exe: %q", ev.Exe)
	}
}

// Seeding reads real processes: a sleeping child shows up with its exe,
// arguments, cwd and parent.
func TestSeedFromProcFindsChild(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	sleepExe, _ := filepath.EvalSymlinks(sleep)
	dir := t.TempDir()
	cmd := exec.Command(sleep, "30")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := uint32(cmd.Process.Pid)

	// exe and cmdline change at exec; wait until the child has exec'd.
	for {
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe"); exe == sleepExe {
			break
		}
		time.Sleep(time.Millisecond)
	}

	tab := New(Options{})
	n, err := tab.SeedFromProc()
	if err != nil || n < 2 {
		t.Fatalf("seed: %d, %v", n, err)
	}
	p, ok := tab.Lookup(pid)
	if !ok {
		t.Fatalf("child %d not seeded", pid)
	}
	self, _ := os.Executable()
	selfExe, _ := filepath.EvalSymlinks(self)
	if p.Exe != sleepExe || !slices.Equal(p.Args, []string{"30"}) || p.Cwd != dir ||
		p.HostPPID != uint32(os.Getpid()) || p.ParentExe != selfExe || p.UID != uint32(os.Getuid()) || p.PID != pid {
		t.Errorf("seeded child = %+v", p)
	}
}

func TestReadProcOnMiss(t *testing.T) {
	tab := New(Options{ReadProcOnMiss: true})
	p, ok := tab.Lookup(uint32(os.Getpid()))
	self, _ := os.Executable()
	selfExe, _ := filepath.EvalSymlinks(self)
	if !ok || p.Exe != selfExe {
		t.Fatalf("own process from /proc: %+v %v", p, ok)
	}
	if s := tab.Stats(); s.ProcReads != 1 || s.Entries != 1 {
		t.Errorf("stats %+v", s)
	}
	if _, ok := tab.Lookup(1 << 30); ok {
		t.Errorf("found a pid that cannot exist")
	}
}

func TestParsers(t *testing.T) {
	status := []byte("Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t4200\n" +
		"Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nNStgid:\t4242\t7\nNSpid:\t4242\t7\n")
	p, err := parseStatus(status)
	if err != nil || p.HostPPID != 4200 || p.UID != 1000 || p.PID != 7 {
		t.Errorf("parseStatus = %+v, %v", p, err)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Errorf("status without PPid accepted")
	}
	if _, err := parseStatus([]byte("PPid:\tnope\n")); err == nil {
		t.Errorf("bad PPid accepted")
	}

	if got := parseCmdline([]byte("/bin/sh\x00-c\x00echo hi\x00")); !slices.Equal(got, []string{"-c", "echo hi"}) {
		t.Errorf("parseCmdline = %q", got)
	}
	if got := parseCmdline(nil); got != nil {
		t.Errorf("empty cmdline = %q", got)
	}

	stat := []byte("123 (a) b (c)) S 1 123 123 34816 123 4194304 0 0")
	if nr, ok := parseTTYNr(stat); !ok || nr != 34816 {
		t.Errorf("parseTTYNr = %d %v", nr, ok)
	}
	if _, ok := parseTTYNr([]byte("garbage")); ok {
		t.Errorf("garbage stat parsed")
	}

	ttys := []struct {
		nr   uint32
		want string
	}{
		{0, ""}, {34816, "pts0"}, {34817 + 4, "pts5"}, {137 << 8, "pts256"},
		{4<<8 | 1, "tty1"}, {4<<8 | 64, "ttyS0"}, {5<<8 | 1, "console"}, {1<<8 | 3, ""},
		{136<<8 | (300 & 0xff) | (300&^0xff)<<12, "pts300"},
	}
	for _, tt := range ttys {
		if got := TTYName(tt.nr); got != tt.want {
			t.Errorf("TTYName(%d) = %q, want %q", tt.nr, got, tt.want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tab := New(Options{MaxEntries: 512})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				pid := uint32(w*10000 + i%1000)
				switch i % 4 {
				case 0:
					tab.Exec(Process{HostPID: pid, HostPPID: pid - 1, Exe: "/bin/x"})
				case 1:
					tab.Fork(Process{HostPID: pid + 1, HostPPID: pid})
				case 2:
					tab.Exit(pid)
				default:
					ev := event.Event{HostPID: pid, HostPPID: pid - 1}
					tab.Describe(&ev)
				}
			}
		}(w)
	}
	wg.Wait()
	if n := tab.Len(); n > 512 {
		t.Errorf("Len %d over the bound", n)
	}
}

// A producer's CmdLine is kept when it is the join of Exe and Args, and
// replaced by the join when it is anything else.
func TestCmdLineChecked(t *testing.T) {
	tests := []struct {
		name, exe string
		args      []string
		given     string
		want      string
	}{
		{"no arguments", "/bin/true", nil, "/bin/true", "/bin/true"},
		{"arguments", "/bin/ls", []string{"-la", "/tmp"}, "/bin/ls -la /tmp", "/bin/ls -la /tmp"},
		{"empty and spaced arguments", "/bin/sh", []string{"-c", "", "a  b"}, "/bin/sh -c  a  b", "/bin/sh -c  a  b"},
		{"empty: joined", "/bin/ls", []string{"-l"}, "", "/bin/ls -l"},
		{"another exe", "/bin/ls", []string{"-l"}, "/bin/cat -l", "/bin/ls -l"},
		{"an argument short", "/bin/ls", []string{"-l", "x"}, "/bin/ls -l", "/bin/ls -l x"},
		{"an argument more", "/bin/ls", []string{"-l"}, "/bin/ls -l x", "/bin/ls -l"},
		{"no space", "/bin/ls", []string{"-l"}, "/bin/ls\x00-l", "/bin/ls -l"},
		{"empty argument missing", "/bin/ls", []string{""}, "/bin/ls", "/bin/ls "},
	}
	for _, tt := range tests {
		if got := isCommandLine(tt.given, tt.exe, tt.args); got != (tt.given == tt.want) {
			t.Errorf("%s: isCommandLine = %v", tt.name, got)
		}
		tab := New(Options{})
		tab.Exec(Process{HostPID: 7, Exe: tt.exe, Args: tt.args, CmdLine: tt.given})
		p, _ := tab.Lookup(7)
		if got := p.CommandLine(); got != tt.want || got != commandLine(tt.exe, tt.args) {
			t.Errorf("%s: command line %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Exe and Args that are parts of the command line they are checked
// against (the monitor's one text) are where they belong or not.
func TestCmdLineOfParts(t *testing.T) {
	text := "/bin/ls -la /tmp -la"
	exe, la, tmp, la2 := text[:7], text[8:11], text[12:16], text[17:20]
	tests := []struct {
		name  string
		s     string
		exe   string
		args  []string
		equal bool
	}{
		{"in place", text[:16], exe, []string{la, tmp}, true},
		{"in place, the same argument twice", text, exe, []string{la, tmp, la2}, true},
		{"an equal argument from elsewhere", text, exe, []string{la2, tmp, la}, true},
		{"swapped", text[:16], exe, []string{tmp, la}, false},
		{"one missing", text, exe, []string{la, tmp}, false},
		{"one more", text[:16], exe, []string{la, tmp, la}, false},
		{"the exe alone", text[:7], exe, nil, true},
		{"an empty argument at the end", text[:8], exe, []string{text[8:8]}, true},
		{"no exe", text[7:], "", []string{la, tmp, la2}, true},
	}
	for _, tt := range tests {
		if got := isCommandLine(tt.s, tt.exe, tt.args); got != tt.equal || got != (tt.s == commandLine(tt.exe, tt.args)) {
			t.Errorf("%s: isCommandLine(%q, %q, %q) = %v", tt.name, tt.s, tt.exe, tt.args, got)
		}
	}
}

// Entries freed by expiry are reused for new processes, and the exit list
// reuses its array: many lifetimes through a small table leave every live
// process's entry as its own, and memory as it was.
func TestEntriesReused(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	tab := New(Options{ExitedTTL: time.Second, Now: clk.Now})
	tab.Exec(Process{HostPID: 1, Exe: "/sbin/init"})
	const live = 50 // processes alive at any time
	var arrCap int
	for i := 0; i < 20000; i++ {
		pid := uint32(100 + i%3000)
		tab.Fork(Process{HostPID: pid, HostPPID: 1})
		tab.Exec(Process{HostPID: pid, HostPPID: 1, Exe: "/bin/p" + strconv.Itoa(i), Args: []string{strconv.Itoa(i)}})
		if i >= live {
			tab.Exit(uint32(100 + (i-live)%3000))
		}
		clk.now = clk.now.Add(time.Millisecond) // a thousand exited processes kept
		for j := max(0, i-live+1); j <= i; j += 7 {
			p, ok := tab.Lookup(uint32(100 + j%3000))
			if want := "/bin/p" + strconv.Itoa(j) + " " + strconv.Itoa(j); !ok || p.CommandLine() != want || p.ParentExe != "/sbin/init" {
				t.Fatalf("round %d: pid %d = %+v %v, want %q", i, 100+j%3000, p, ok, want)
			}
		}
		if i == 10000 {
			arrCap = len(tab.exitedArr)
		}
	}
	if n := tab.Len(); n < live || n > live+1100 {
		t.Errorf("Len = %d, want the live processes and a second of exited ones", n)
	}
	if len(tab.exitedArr) != arrCap || arrCap > 4*1024 {
		t.Errorf("exit list array %d entries, %d at half time", len(tab.exitedArr), arrCap)
	}
	if len(tab.free) > maxFree {
		t.Errorf("%d free entries", len(tab.free))
	}
	// In that steady state a lifetime allocates nothing in the table.
	args := []string{"-x"}
	i := 0
	allocs := testing.AllocsPerRun(2000, func() {
		pid := uint32(5000 + i%3000)
		tab.Fork(Process{HostPID: pid, HostPPID: 1})
		tab.Exec(Process{HostPID: pid, HostPPID: 1, Exe: "/bin/q", Args: args, CmdLine: "/bin/q -x"})
		tab.Exit(pid)
		clk.now = clk.now.Add(time.Millisecond)
		i++
	})
	if allocs > 0.05 {
		t.Errorf("%.2f allocations per process lifetime, want none", allocs)
	}
}

// lifeOp is one change for the Batch tests: kind 'f' (Fork), 'e' (Exec)
// or 'x' (Exit).
type lifeOp struct {
	kind      byte
	pid, ppid uint32
	exe       string
}

func (o lifeOp) process() Process {
	p := Process{HostPID: o.pid, HostPPID: o.ppid, PID: o.pid, PPID: o.ppid, UID: 1000}
	if o.kind == 'e' {
		p.Exe, p.Args, p.Cwd = o.exe, []string{"-x", o.exe}, "/w/"+o.exe
	}
	return p
}

// A Batch leaves the table as the single calls do, whatever follows a
// fork: its exec (the fork's entry never made), another change, or the
// end of the batch; across the batch's lock cycles too.
func TestBatchAsSingleCalls(t *testing.T) {
	lifetimes := func(from, n int) []lifeOp { // fork, exec, exit each
		var ops []lifeOp
		for pid := uint32(from); pid < uint32(from+n); pid++ {
			ops = append(ops, lifeOp{'f', pid, 10, ""}, lifeOp{'e', pid, 10, "/bin/l" + strconv.Itoa(int(pid))}, lifeOp{'x', pid, 10, ""})
		}
		return ops
	}
	tests := []struct {
		name string
		ops  []lifeOp
	}{
		{"fork, exec, exit", []lifeOp{{'f', 11, 10, ""}, {'e', 11, 10, "/bin/ls"}, {'x', 11, 10, ""}}},
		{"fork at the end", []lifeOp{{'f', 11, 10, ""}}},
		{"fork, exit", []lifeOp{{'f', 11, 10, ""}, {'x', 11, 10, ""}}},
		{"fork, fork of the child", []lifeOp{{'f', 11, 10, ""}, {'f', 12, 11, ""}, {'e', 12, 11, "/bin/ls"}}},
		{"fork, another's exec", []lifeOp{{'f', 11, 10, ""}, {'e', 12, 10, "/bin/ls"}}},
		{"fork, exec with another parent (reparented)", []lifeOp{{'f', 11, 10, ""}, {'e', 11, 1, "/bin/ls"}}},
		{"fork of an unknown parent, exec", []lifeOp{{'f', 11, 77, ""}, {'e', 11, 77, "/bin/ls"}}},
		{"exec of the parent after the fork", []lifeOp{{'f', 11, 10, ""}, {'e', 10, 1, "/bin/zsh"}, {'e', 11, 10, "/bin/ls"}}},
		{"exit of the parent between fork and exec", []lifeOp{{'f', 11, 10, ""}, {'x', 10, 1, ""}, {'e', 11, 10, "/bin/ls"}}},
		{"pid reused while its exited entry stays", []lifeOp{
			{'f', 11, 10, ""}, {'e', 11, 10, "/bin/old"}, {'x', 11, 10, ""}, {'f', 11, 10, ""}, {'e', 11, 10, "/bin/new"}}},
		{"exec without fork, twice", []lifeOp{{'e', 11, 10, "/bin/a"}, {'e', 11, 10, "/bin/b"}}},
		{"exit of an unknown pid, twice", []lifeOp{{'x', 99, 0, ""}, {'x', 99, 0, ""}}},
		{"more changes than a hold of the lock", lifetimes(100, batchChunk)},
		// Changes 31 and 32 fork, 33 (past a hold) execs the second child.
		{"a fork pending at a lock cycle", append(lifetimes(100, (batchChunk-2)/3), lifeOp{'f', 12, 10, ""}, lifeOp{'f', 11, 10, ""}, lifeOp{'e', 11, 10, "/bin/ls"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newTable := func() (*Table, *clock) {
				clk := &clock{now: time.Unix(1000, 0)}
				tab := New(Options{ExitedTTL: time.Hour, Now: clk.Now})
				tab.Exec(Process{HostPID: 10, HostPPID: 1, Exe: "/bin/bash", Args: []string{"-l"}, Cwd: "/root", TTY: "pts0"})
				return tab, clk
			}
			single, _ := newTable()
			batched, _ := newTable()
			pids := map[uint32]bool{1: true, 10: true}
			var wantParents, gotParents []string
			for _, o := range tt.ops {
				pids[o.pid], pids[o.ppid] = true, true
				switch o.kind {
				case 'f':
					single.Fork(o.process())
				case 'e':
					single.Exec(o.process())
					p, _ := single.Lookup(o.pid)
					wantParents = append(wantParents, p.ParentExe)
				case 'x':
					single.Exit(o.pid)
				}
			}
			b := batched.Begin()
			for _, o := range tt.ops {
				switch o.kind {
				case 'f':
					b.Fork(o.process())
				case 'e':
					gotParents = append(gotParents, b.Exec(o.process()))
				case 'x':
					b.Exit(o.pid)
				}
			}
			b.End()
			if !slices.Equal(gotParents, wantParents) {
				t.Errorf("Exec returned %q, the table stored %q", gotParents, wantParents)
			}
			for pid := range pids {
				want, wok := single.Lookup(pid)
				got, gok := batched.Lookup(pid)
				if gok != wok || !reflect.DeepEqual(got, want) {
					t.Errorf("pid %d: batched %+v %v\n                 single %+v %v", pid, got, gok, want, wok)
				}
			}
			if single.Len() != batched.Len() || len(single.exited) != len(batched.exited) {
				t.Errorf("batched: %d entries, %d exited; single: %d, %d", batched.Len(), len(batched.exited), single.Len(), len(single.exited))
			}
		})
	}
}

// Exits in one hold of the lock share one reading of the clock, and what
// expires is what was due when the hold began: any change expires it.
func TestBatchExpiry(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	tab := New(Options{ExitedTTL: time.Second, Now: clk.Now})
	for pid := uint32(11); pid <= 13; pid++ {
		tab.Exec(Process{HostPID: pid, Exe: "/bin/p"})
	}
	b := tab.Begin()
	b.Exit(11)
	clk.now = clk.now.Add(2 * time.Second) // within the hold: not read again
	b.Exit(12)
	b.End()
	if e := tab.procs.get(12); e == nil || e.exitedAt != tab.procs.get(11).exitedAt {
		t.Fatalf("exits in one batch stamped apart")
	}
	for _, tc := range []struct {
		name   string
		change func(b *Batch)
	}{
		{"fork", func(b *Batch) { b.Fork(Process{HostPID: 20, HostPPID: 13}) }},
		{"exec", func(b *Batch) { b.Exec(Process{HostPID: 13, Exe: "/bin/q"}) }},
		{"exit", func(b *Batch) { b.Exit(99) }},
	} {
		clk.now = clk.now.Add(2 * time.Second)
		tab.Exec(Process{HostPID: 11, Exe: "/bin/p"}) // due by the next change
		tab.Exit(11)
		clk.now = clk.now.Add(2 * time.Second)
		b := tab.Begin()
		tc.change(b)
		if tab.procs.get(11) != nil {
			t.Errorf("%s: the exited process due is still there", tc.name)
		}
		b.End()
	}
}

// A long batch lets lookups in every batchChunk changes: a reader waiting
// for the lock gets it before the batch ends.
func TestBatchLetsReadersIn(t *testing.T) {
	tab := New(Options{})
	tab.Exec(Process{HostPID: 1, Exe: "/sbin/init"})
	var read atomic.Bool
	b := tab.Begin()
	go func() {
		tab.Lookup(1)
		read.Store(true)
	}()
	n := 0
	for ; !read.Load() && n < 1_000_000; n++ {
		pid := uint32(2 + n%1000)
		b.Fork(Process{HostPID: pid, HostPPID: 1})
		b.Exit(pid)
		if n%batchChunk == 0 {
			runtime.Gosched() // the reader runs on any number of CPUs
		}
	}
	b.End()
	if !read.Load() {
		t.Fatalf("the reader waited through %d changes", 2*n)
	}
}

// A fork waiting in the batch is in the table before the batch lets
// readers in between two holds of the lock.
func TestBatchSettlesBeforeLettingReadersIn(t *testing.T) {
	tab := New(Options{})
	tab.Exec(Process{HostPID: 1, Exe: "/sbin/init"})
	b := tab.Begin()
	for n := 1; n < batchChunk; n++ {
		b.Exit(uint32(1000 + n))
	}
	b.Fork(Process{HostPID: 500, HostPPID: 1}) // the last change of the hold
	seen := make(chan bool)
	go func() {
		p, ok := tab.Lookup(500)
		seen <- ok && p.Exe == "/sbin/init"
	}()
	time.Sleep(20 * time.Millisecond)            // the reader waits for the lock
	b.Exec(Process{HostPID: 999, Exe: "/bin/x"}) // the next hold: the reader goes first
	select {
	case ok := <-seen:
		if !ok {
			t.Error("the reader let in between two holds did not find the forked child")
		}
	case <-time.After(5 * time.Second): // a miss takes the write lock: held again
		t.Error("the reader let in between two holds missed the forked child")
	}
	b.End()
}

// A producer's CwdSlash is kept when it is Cwd with a trailing slash and
// made otherwise; Describe gives it for the process's own cwd, and
// slash-terminates any other cwd the producer set.
func TestCwdSlash(t *testing.T) {
	tests := []struct {
		name, cwd, given, want string
	}{
		{"given", "/home/user", "/home/user/", "/home/user/"},
		{"empty: made", "/home/user", "", "/home/user/"},
		{"another directory", "/home/user", "/tmp/", "/home/user/"},
		{"no slash", "/home/user", "/home/user", "/home/user/"},
		{"two slashes", "/home/user", "/home/user//", "/home/user/"},
		{"the root", "/", "/", "/"},
		{"the root, empty", "/", "", "/"},
		{"a slash already", "/srv/", "/srv/", "/srv/"},
		{"no cwd", "", "", ""},
		{"no cwd, one given", "", "/", ""},
	}
	for _, tt := range tests {
		if got := isSlashTerminated(tt.given, tt.cwd); got != (tt.given == tt.want) {
			t.Errorf("%s: isSlashTerminated = %v", tt.name, got)
		}
		tab := New(Options{})
		tab.Exec(Process{HostPID: 7, HostPPID: 1, Exe: "/bin/sh", Cwd: tt.cwd, CwdSlash: tt.given})
		tab.Fork(Process{HostPID: 8, HostPPID: 7})
		for _, pid := range []uint32{7, 8} {
			p, _ := tab.Lookup(pid)
			if p.CwdSlash != tt.want || p.CwdSlash != slashTerminated(p.Cwd) {
				t.Errorf("%s: pid %d: CwdSlash %q, want %q", tt.name, pid, p.CwdSlash, tt.want)
			}
			for _, evCwd := range []string{"", tt.cwd, "/else"} { // "": the table's
				ev := event.Event{HostPID: pid, HostPPID: 7, Cwd: evCwd}
				want := slashTerminated(evCwd)
				if evCwd == "" {
					want = tt.want
				}
				if a := tab.Describe(&ev); a.Cwd != want {
					t.Errorf("%s: pid %d, event cwd %q: Describe's Cwd %q, want %q", tt.name, pid, evCwd, a.Cwd, want)
				}
			}
		}
	}
}
