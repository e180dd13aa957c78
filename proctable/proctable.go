// Package proctable keeps what the agent knows about each process on the
// host (executable, command line, cwd, tty, parent) so that an event, which
// carries only pids, can be attributed the way upstream KubeArmor prints it
// (ProcessName, ParentProcessName, Source, Cwd, TTY).
//
// The table is seeded from /proc and then kept current by exec, fork and
// exit events. Exited processes stay for a short while, because events of a
// process can arrive after its exit. The table is bounded: when full it
// drops exited entries first, then arbitrary live ones (a later lookup of
// an evicted live process reads /proc again).
package proctable

import (
	"strings"
	"sync"
	"time"

	"github.com/armorhost/kubearmor/event"
)

// Process is one process as the table knows it.
type Process struct {
	HostPID, HostPPID uint32 // in the initial pid namespace
	PID, PPID         uint32 // in the process's own pid namespace
	UID               uint32
	Exe               string   // executable path
	Args              []string // argv[1:]
	Cwd               string   // working directory at exec time, no trailing slash
	TTY               string   // e.g. "pts0"; "" without a controlling terminal
	// ParentExe is the parent's executable when this process was created or
	// exec'd: the parent may be gone when a late event is attributed.
	ParentExe string
	// CmdLine is what CommandLine returns: Exe and Args joined by spaces. A
	// producer that has that text at hand (in the buffer Exe and Args are
	// slices of) sets it to spare the table the join; the table checks it
	// and joins Exe and Args itself when it is empty or anything else.
	CmdLine string
}

// CommandLine is the process's exe path followed by its arguments, upstream's
// Source for non-exec events. A CmdLine is taken as it is: the table checked
// it when the process was stored, and this is on every event's path.
func (p *Process) CommandLine() string {
	if p.CmdLine == "" {
		p.CmdLine = commandLine(p.Exe, p.Args)
	}
	return p.CmdLine
}

// fillCmdLine makes p.CmdLine the join of p.Exe and p.Args.
func (p *Process) fillCmdLine() {
	if !isCommandLine(p.CmdLine, p.Exe, p.Args) {
		p.CmdLine = commandLine(p.Exe, p.Args)
	}
}

func commandLine(exe string, args []string) string {
	if len(args) == 0 {
		return exe
	}
	return exe + " " + strings.Join(args, " ")
}

// isCommandLine reports whether s is commandLine(exe, args), without
// building it.
func isCommandLine(s, exe string, args []string) bool {
	rest, ok := strings.CutPrefix(s, exe)
	if !ok {
		return false
	}
	for _, a := range args {
		if len(rest) <= len(a) || rest[0] != ' ' || rest[1:1+len(a)] != a {
			return false
		}
		rest = rest[1+len(a):]
	}
	return rest == ""
}

// Options bound and tune a Table. Zero values take the defaults.
type Options struct {
	MaxEntries int           // default 65536
	ExitedTTL  time.Duration // how long exited processes still resolve; default 5s
	ProcRoot   string        // default "/proc"
	// ReadProcOnMiss makes Lookup read /proc for a pid the table does not
	// know (seeding raced with a fork, or the entry was evicted).
	ReadProcOnMiss bool
	Now            func() time.Time // default time.Now; tests inject a clock
}

// Stats are the table's counters since New.
type Stats struct {
	Entries   int
	Evicted   uint64 // live entries dropped to respect MaxEntries
	Expired   uint64 // exited entries removed after ExitedTTL (or early, when full)
	ProcReads uint64 // lookups answered from /proc
	Misses    uint64 // lookups that found nothing
}

type entry struct {
	p        Process
	exitedAt time.Time // zero while alive
}

// maxFree bounds the entries kept for reuse: a host that starts and ends
// processes steadily frees one entry (its exited TTL over) for each one it
// forks, and reusing it spares the allocation and the garbage. Entries
// expire in bursts (a pause of the agent makes many due at once): the
// bound is a few thousand, some 600 KiB at most.
const maxFree = 4096

// Table is safe for concurrent use. Lookups take a read lock only.
type Table struct {
	opts Options

	mu     sync.RWMutex
	procs  map[uint32]*entry
	exited []*entry // exit order; entries here may have been replaced since
	// exitedArr is exited's whole array: exited is a window sliding
	// through it (expiry takes from the front, Exit appends).
	exitedArr []*entry
	free      []*entry // entries no longer in procs nor exited, for reuse
	stats     Stats
}

// New returns an empty table; call SeedFromProc to fill it.
func New(opts Options) *Table {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 65536
	}
	if opts.ExitedTTL <= 0 {
		opts.ExitedTTL = 5 * time.Second
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Table{opts: opts, procs: make(map[uint32]*entry, 1024)}
}

// Exec records that p.HostPID now runs a new program. If p.ParentExe is
// empty it is taken from the parent's entry.
func (t *Table) Exec(p Process) {
	p.fillCmdLine()
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.ParentExe == "" {
		if parent, ok := t.procs[p.HostPPID]; ok {
			p.ParentExe = parent.p.Exe
		}
	}
	if e, ok := t.procs[p.HostPID]; ok && e.exitedAt.IsZero() {
		// The process's own entry, replaced in place: a live entry is in
		// no exit list, and the table does not grow.
		e.p = p
		return
	}
	t.insertLocked(t.newEntryLocked(p))
}

// Fork records a new process. It inherits what the parent had (exe,
// arguments, cwd, tty) until it execs; ids come from child.
func (t *Table) Fork(child Process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if parent, ok := t.procs[child.HostPPID]; ok {
		child.Exe = parent.p.Exe
		child.Args = parent.p.Args
		child.Cwd = parent.p.Cwd
		child.TTY = parent.p.TTY
		child.ParentExe = parent.p.Exe
		child.CmdLine = parent.p.CmdLine
	}
	t.insertLocked(t.newEntryLocked(child))
}

// Exit marks a process as exited; it still resolves for ExitedTTL.
func (t *Table) Exit(hostPID uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	t.expireLocked(now)
	e, ok := t.procs[hostPID]
	if !ok || !e.exitedAt.IsZero() {
		return
	}
	e.exitedAt = now
	t.pushExitedLocked(e)
}

// pushExitedLocked appends e to the exit list. When the window reaches the
// end of its array it moves back to the start, into an array twice its
// length (the same one when it is at most half full): a steady stream of
// exits and expiries reuses one array.
func (t *Table) pushExitedLocked(e *entry) {
	if len(t.exited) == cap(t.exited) {
		arr := t.exitedArr
		if 2*len(t.exited) > len(arr) {
			arr = make([]*entry, max(64, 2*len(t.exited)))
		}
		n := copy(arr, t.exited)
		clear(arr[n:])
		t.exited, t.exitedArr = arr[:n], arr
	}
	t.exited = append(t.exited, e)
}

// Lookup returns what the table knows about hostPID.
func (t *Table) Lookup(hostPID uint32) (Process, bool) {
	t.mu.RLock()
	e, ok := t.procs[hostPID]
	var p Process
	if ok {
		p = e.p
	}
	t.mu.RUnlock()
	if ok {
		return p, true
	}
	if !t.opts.ReadProcOnMiss || hostPID == 0 {
		t.countMiss()
		return Process{}, false
	}
	p, err := readProc(t.opts.ProcRoot, hostPID)
	if err != nil {
		t.countMiss()
		return Process{}, false
	}
	t.mu.Lock()
	t.stats.ProcReads++
	if cur, ok := t.procs[hostPID]; ok { // an event filled it meanwhile
		p = cur.p
	} else {
		if parent, ok := t.procs[p.HostPPID]; ok {
			p.ParentExe = parent.p.Exe
		}
		t.insertLocked(t.newEntryLocked(p))
	}
	t.mu.Unlock()
	return p, true
}

func (t *Table) countMiss() {
	t.mu.Lock()
	t.stats.Misses++
	t.mu.Unlock()
}

// Len is the number of entries, exited ones included.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.procs)
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.stats
	s.Entries = len(t.procs)
	return s
}

// newEntryLocked is a live entry for p, reused when one is free.
func (t *Table) newEntryLocked(p Process) *entry {
	n := len(t.free)
	if n == 0 {
		return &entry{p: p}
	}
	e := t.free[n-1]
	t.free[n-1] = nil
	t.free = t.free[:n-1]
	*e = entry{p: p}
	return e
}

// freeLocked keeps e, which nothing refers to any more, for reuse.
func (t *Table) freeLocked(e *entry) {
	if len(t.free) < maxFree {
		*e = entry{} // its strings are garbage now
		t.free = append(t.free, e)
	}
}

// insertLocked adds or replaces an entry, keeping the size bound.
func (t *Table) insertLocked(e *entry) {
	e.p.fillCmdLine()
	if len(t.exited) > 0 {
		t.expireLocked(t.opts.Now())
	}
	if len(t.procs) >= t.opts.MaxEntries {
		if _, replacing := t.procs[e.p.HostPID]; !replacing {
			t.makeRoomLocked()
		}
	}
	t.procs[e.p.HostPID] = e
}

// makeRoomLocked frees one slot: expired entries first, then the oldest
// exited entry, then any live one.
func (t *Table) makeRoomLocked() {
	before := len(t.procs)
	t.expireLocked(t.opts.Now())
	for len(t.procs) >= before && len(t.exited) > 0 {
		e := t.exited[0]
		t.exited[0] = nil
		t.exited = t.exited[1:]
		if t.procs[e.p.HostPID] == e {
			delete(t.procs, e.p.HostPID)
			t.stats.Expired++
		}
		t.freeLocked(e)
	}
	if len(t.procs) < before {
		return
	}
	for pid, e := range t.procs { // map order is arbitrary enough
		delete(t.procs, pid)
		t.stats.Evicted++
		if e.exitedAt.IsZero() { // an exited one is freed when its exit list slot is
			t.freeLocked(e)
		}
		return
	}
}

// expireLocked removes exited entries older than ExitedTTL.
func (t *Table) expireLocked(now time.Time) {
	n := 0
	for n < len(t.exited) && now.Sub(t.exited[n].exitedAt) >= t.opts.ExitedTTL {
		e := t.exited[n]
		t.exited[n] = nil
		if t.procs[e.p.HostPID] == e {
			delete(t.procs, e.p.HostPID)
			t.stats.Expired++
		}
		t.freeLocked(e)
		n++
	}
	if n > 0 {
		t.exited = t.exited[n:]
	}
}

// Attribution is what an alert or log says about the acting process.
type Attribution struct {
	ProcessName       string
	ParentProcessName string
	Source            string
	Cwd               string // with a trailing slash, as upstream prints it
	TTY               string
	UID               uint32
	HostPID, HostPPID uint32
	PID, PPID         uint32
}

// Describe attributes ev to its process. Fields the producer already set
// (ev.Exe, ev.ParentExe, ev.Cwd, ev.TTY) win over the table: they were
// true when the event happened. For exec events Source is the parent's
// executable (upstream's convention), for all others the command line.
func (t *Table) Describe(ev *event.Event) Attribution {
	a := Attribution{
		ProcessName:       ev.Exe,
		ParentProcessName: ev.ParentExe,
		Cwd:               ev.Cwd,
		TTY:               ev.TTY,
		UID:               ev.UID,
		HostPID:           ev.HostPID,
		HostPPID:          ev.HostPPID,
		PID:               ev.PID,
		PPID:              ev.PPID,
	}
	p, ok := t.Lookup(ev.HostPID)
	if ok {
		if a.ProcessName == "" {
			a.ProcessName = p.Exe
		}
		if a.Cwd == "" {
			a.Cwd = p.Cwd
		}
		if a.TTY == "" {
			a.TTY = p.TTY
		}
	}
	if a.ParentProcessName == "" {
		if ok && p.ParentExe != "" && p.HostPPID == ev.HostPPID {
			a.ParentProcessName = p.ParentExe
		} else if parent, pok := t.Lookup(ev.HostPPID); pok {
			a.ParentProcessName = parent.Exe
		}
	}
	switch {
	case IsExec(ev):
		a.Source = a.ParentProcessName
	case ok && (ev.Exe == "" || ev.Exe == p.Exe):
		a.Source = p.CommandLine()
	default:
		a.Source = a.ProcessName
	}
	a.Cwd = slashTerminated(a.Cwd)
	return a
}

// IsExec reports whether ev is a process execution.
func IsExec(ev *event.Event) bool {
	return ev.Operation == event.OpProcess && (ev.Syscall == "SYS_EXECVE" || ev.Syscall == "SYS_EXECVEAT")
}

func slashTerminated(dir string) string {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return dir
	}
	return dir + "/"
}

// Enrich fills ev.Exe, ev.ParentExe, ev.Cwd and ev.TTY from the table where
// the producer left them empty. Producers call it when the event is decoded,
// so that a later exec of the same pid cannot change the attribution.
func (t *Table) Enrich(ev *event.Event) {
	t.mu.RLock()
	e, ok := t.procs[ev.HostPID]
	var p Process
	if ok {
		p = e.p
	}
	var parentExe string
	parent, pok := t.procs[ev.HostPPID]
	if pok {
		parentExe = parent.p.Exe
	}
	t.mu.RUnlock()
	if !ok {
		p, ok = t.Lookup(ev.HostPID)
	}
	if ok {
		if ev.Exe == "" {
			ev.Exe = p.Exe
		}
		if ev.Cwd == "" {
			ev.Cwd = p.Cwd
		}
		if ev.TTY == "" {
			ev.TTY = p.TTY
		}
	}
	if ev.ParentExe == "" {
		switch {
		case pok:
			ev.ParentExe = parentExe
		case ok && p.HostPPID == ev.HostPPID:
			ev.ParentExe = p.ParentExe
		}
	}
}
