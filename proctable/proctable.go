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

	source string // Exe and Args joined, built once
}

// CommandLine is the process's exe path followed by its arguments, upstream's
// Source for non-exec events.
func (p *Process) CommandLine() string {
	if p.source == "" {
		p.source = commandLine(p.Exe, p.Args)
	}
	return p.source
}

func commandLine(exe string, args []string) string {
	if len(args) == 0 {
		return exe
	}
	return exe + " " + strings.Join(args, " ")
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

// Table is safe for concurrent use. Lookups take a read lock only.
type Table struct {
	opts Options

	mu     sync.RWMutex
	procs  map[uint32]*entry
	exited []*entry // exit order; entries here may have been replaced since
	stats  Stats
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
	p.source = commandLine(p.Exe, p.Args)
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.ParentExe == "" {
		if parent, ok := t.procs[p.HostPPID]; ok {
			p.ParentExe = parent.p.Exe
		}
	}
	t.insertLocked(&entry{p: p})
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
		child.source = parent.p.source
	}
	t.insertLocked(&entry{p: child})
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
		t.insertLocked(&entry{p: p})
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

// insertLocked adds or replaces an entry, keeping the size bound.
func (t *Table) insertLocked(e *entry) {
	if e.p.source == "" {
		e.p.source = commandLine(e.p.Exe, e.p.Args)
	}
	if len(t.exited) > 0 {
		t.expireLocked(t.opts.Now())
	}
	if _, replacing := t.procs[e.p.HostPID]; !replacing && len(t.procs) >= t.opts.MaxEntries {
		t.makeRoomLocked()
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
	}
	if len(t.procs) < before {
		return
	}
	for pid := range t.procs { // map order is arbitrary enough
		delete(t.procs, pid)
		t.stats.Evicted++
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
