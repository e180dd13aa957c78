package proctable

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
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
