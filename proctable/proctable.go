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
	"unsafe"

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
	// CwdSlash is Cwd with a trailing slash, as upstream prints it (the
	// Cwd of Describe). Like CmdLine, a producer with that text at hand
	// sets it, and the table checks it or makes it: once per process,
	// not once per event attributed.
	CwdSlash string
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

// fill makes p.CmdLine the join of p.Exe and p.Args, and p.CwdSlash
// p.Cwd with a trailing slash.
func (p *Process) fill() {
	if !isCommandLine(p.CmdLine, p.Exe, p.Args) {
		p.CmdLine = commandLine(p.Exe, p.Args)
	}
	if !isSlashTerminated(p.CwdSlash, p.Cwd) {
		p.CwdSlash = slashTerminated(p.Cwd)
	}
}

func commandLine(exe string, args []string) string {
	if len(args) == 0 {
		return exe
	}
	return exe + " " + strings.Join(args, " ")
}

// isCommandLine reports whether s is commandLine(exe, args), without
// building it. When exe and args are parts of s (a producer's one text,
// as the monitor's), a part where it belongs is equal without a look at
// its bytes.
func isCommandLine(s, exe string, args []string) bool {
	if len(s) < len(exe) || (unsafe.StringData(s) != unsafe.StringData(exe) && s[:len(exe)] != exe) {
		return false
	}
	i := len(exe)
	for _, a := range args {
		if len(s)-i <= len(a) || s[i] != ' ' {
			return false
		}
		i++
		if unsafe.StringData(a) != unsafe.StringData(s[i:]) && s[i:i+len(a)] != a {
			return false
		}
		i += len(a)
	}
	return i == len(s)
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
	exited   bool
	exitedAt time.Duration // since the table's epoch, when exited
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
	procs  pidMap
	exited []*entry // exit order; entries here may have been replaced since
	// exitedArr is exited's whole array: exited is a window sliding
	// through it (expiry takes from the front, Exit appends).
	exitedArr []*entry
	free      []*entry // entries no longer in procs nor exited, for reuse
	batch     Batch    // the one Begin hands out
	// epoch is when the table was made: exit times are durations since,
	// compared without time.Time's methods.
	epoch     time.Time
	monotonic bool // the clock is time.Now
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
	t := &Table{opts: opts, procs: newPidMap(1024)}
	if opts.Now == nil {
		t.opts.Now = time.Now
		t.monotonic = true
	}
	t.epoch = t.opts.Now()
	return t
}

// Exec records that p.HostPID now runs a new program. If p.ParentExe is
// empty it is taken from the parent's entry.
func (t *Table) Exec(p Process) {
	p.fill() // checked, or made, outside the lock
	b := t.Begin()
	b.change()
	t.execLocked(&p)
	b.End()
}

// Fork records a new process. It inherits what the parent had (exe,
// arguments, cwd, tty) until it execs; ids come from child.
func (t *Table) Fork(child Process) {
	b := t.Begin()
	b.Fork(child)
	b.End()
}

// Exit marks a process as exited; it still resolves for ExitedTTL.
func (t *Table) Exit(hostPID uint32) {
	b := t.Begin()
	b.Exit(hostPID)
	b.End()
}

// Batch makes changes of the process lifecycle (Fork, Exec, Exit) under
// one hold of the table's write lock and one read of the clock: a
// producer that decodes records in batches (the monitor's ring-buffer
// reader) pays once per batch what the single calls pay per record. The
// lock is let go and taken again every batchChunk changes, so lookups
// (every event's attribution) never wait long. Between Begin and End the
// table is the Batch's: any other call of the Table from that goroutine
// waits for End forever.
//
// A fork waits in the Batch until the next change: when that is the
// child's exec (a fork+exec, adjacent in the kernel's stream), the exec
// makes the child's entry, and the fork's copy of the parent's strings,
// overwritten at once, is never made.
type Batch struct {
	t       *Table
	n       int           // changes in this hold of the lock
	clocked bool          // now is read
	now     time.Duration // the clock when first needed in this hold
	forking bool          // fork holds a fork not yet in the table
	fork    pendingFork
}

// pendingFork is a fork whose parent is known: its ids and the parent's
// entry, valid while the fork waits (nothing else changes the table then:
// the Batch holds the lock and settles the fork before it lets it go).
type pendingFork struct {
	hostPID, hostPPID, pid, ppid, uid uint32
	parent                            *entry
}

// batchChunk bounds the changes made in one hold of the write lock: a few
// dozen microseconds of decoding at most.
const batchChunk = 32

// Begin takes the table's write lock for a Batch; End lets it go.
func (t *Table) Begin() *Batch {
	t.mu.Lock()
	b := &t.batch
	b.t, b.n, b.clocked = t, 0, false
	return b
}

// End ends the batch b began: the table is free again.
func (b *Batch) End() {
	b.settle()
	b.t.mu.Unlock()
}

// change counts a change and, past batchChunk of them, lets lookups
// waiting for the lock in before it goes on. What expires is what was due
// when the hold began, and exits in one hold share their stamp.
func (b *Batch) change() {
	if b.n == batchChunk {
		b.settle()
		b.t.mu.Unlock()
		b.t.mu.Lock()
		b.n, b.clocked = 0, false
	}
	b.n++
	if b.n == 1 && len(b.t.exited) > 0 {
		b.clock()
		b.t.expireLocked(b.now)
	}
}

func (b *Batch) clock() {
	if !b.clocked {
		b.now, b.clocked = b.t.now(), true
	}
}

// settle puts the fork waiting in b into the table.
func (b *Batch) settle() {
	if !b.forking {
		return
	}
	b.forking = false
	f, parent := &b.fork, b.fork.parent
	b.t.insertLocked(b.t.newEntryLocked(&Process{
		HostPID: f.hostPID, HostPPID: f.hostPPID, PID: f.pid, PPID: f.ppid, UID: f.uid,
		// The parent's: its command line was checked when it was stored.
		Exe: parent.p.Exe, Args: parent.p.Args, Cwd: parent.p.Cwd, TTY: parent.p.TTY,
		ParentExe: parent.p.Exe, CmdLine: parent.p.CmdLine, CwdSlash: parent.p.CwdSlash,
	}))
}

// Fork is Table.Fork in the batch.
func (b *Batch) Fork(child Process) {
	b.settle()
	b.change()
	parent := b.t.procs.get(child.HostPPID)
	if parent == nil {
		// Nothing to inherit: the child is what the producer says.
		child.fill()
		b.t.insertLocked(b.t.newEntryLocked(&child))
		return
	}
	b.forking = true
	b.fork = pendingFork{hostPID: child.HostPID, hostPPID: child.HostPPID, pid: child.PID, ppid: child.PPID, uid: child.UID, parent: parent}
}

// Exec is Table.Exec in the batch. It returns the process's ParentExe as
// stored: p's own or the parent's executable.
func (b *Batch) Exec(p Process) (parentExe string) {
	b.change()
	p.fill()
	if f := &b.fork; b.forking && f.hostPID == p.HostPID && f.hostPPID == p.HostPPID {
		// Its own fork's child: the entry the fork would have made and
		// the exec replaced at once.
		b.forking = false
		if p.ParentExe == "" {
			p.ParentExe = f.parent.p.Exe
		}
		b.t.insertLocked(b.t.newEntryLocked(&p))
		return p.ParentExe
	}
	b.settle()
	b.t.execLocked(&p)
	return p.ParentExe
}

// Exit is Table.Exit in the batch.
func (b *Batch) Exit(hostPID uint32) {
	b.settle()
	b.change()
	b.clock()
	b.t.exitLocked(hostPID, b.now)
}

// execLocked stores p, whose CmdLine is checked, filling in its ParentExe.
func (t *Table) execLocked(p *Process) {
	if p.ParentExe == "" {
		if parent := t.procs.get(p.HostPPID); parent != nil {
			p.ParentExe = parent.p.Exe
		}
	}
	if own := t.procs.get(p.HostPID); own != nil && !own.exited {
		// The process's own entry, replaced in place: a live entry is in
		// no exit list, and the table does not grow.
		own.p = *p
		return
	}
	t.insertLocked(t.newEntryLocked(p))
}

func (t *Table) exitLocked(hostPID uint32, now time.Duration) {
	e := t.procs.get(hostPID)
	if e == nil || e.exited {
		return
	}
	e.exited, e.exitedAt = true, now
	t.pushExitedLocked(e)
}

// now is the table's clock: the time since its epoch. With time.Now,
// time.Since reads the monotonic clock alone, half of what Now reads.
func (t *Table) now() time.Duration {
	if t.monotonic {
		return time.Since(t.epoch)
	}
	return t.opts.Now().Sub(t.epoch)
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
	e := t.procs.get(hostPID)
	ok := e != nil
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
	if cur := t.procs.get(hostPID); cur != nil { // an event filled it meanwhile
		p = cur.p
	} else {
		if parent := t.procs.get(p.HostPPID); parent != nil {
			p.ParentExe = parent.p.Exe
		}
		t.addLocked(p)
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
	return t.procs.count()
}

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.stats
	s.Entries = t.procs.count()
	return s
}

// newEntryLocked is a live entry for p, reused when one is free.
func (t *Table) newEntryLocked(p *Process) *entry {
	n := len(t.free)
	if n == 0 {
		return &entry{p: *p}
	}
	e := t.free[n-1]
	t.free[n-1] = nil
	t.free = t.free[:n-1]
	*e = entry{p: *p}
	return e
}

// freeLocked keeps e, which nothing refers to any more, for reuse.
func (t *Table) freeLocked(e *entry) {
	if len(t.free) < maxFree {
		*e = entry{} // its strings are garbage now
		t.free = append(t.free, e)
	}
}

// addLocked adds p, read from /proc, expiring what is due first as any
// change of the table does.
func (t *Table) addLocked(p Process) {
	p.fill()
	if len(t.exited) > 0 {
		t.expireLocked(t.now())
	}
	t.insertLocked(t.newEntryLocked(&p))
}

// insertLocked adds or replaces an entry, whose CmdLine is checked,
// keeping the size bound.
func (t *Table) insertLocked(e *entry) {
	if t.procs.count() >= t.opts.MaxEntries && t.procs.get(e.p.HostPID) == nil {
		t.makeRoomLocked()
	}
	t.procs.set(e.p.HostPID, e)
}

// makeRoomLocked frees one slot: expired entries first, then the oldest
// exited entry, then any live one.
func (t *Table) makeRoomLocked() {
	before := t.procs.count()
	t.expireLocked(t.now())
	for t.procs.count() >= before && len(t.exited) > 0 {
		e := t.exited[0]
		t.exited[0] = nil
		t.exited = t.exited[1:]
		if t.procs.delete(e.p.HostPID, e) {
			t.stats.Expired++
		}
		t.freeLocked(e)
	}
	if t.procs.count() < before {
		return
	}
	if pid, e := t.procs.anyEntry(); e != nil { // the next one along the slots: arbitrary enough
		t.procs.delete(pid, e)
		t.stats.Evicted++
		if !e.exited { // an exited one is freed when its exit list slot is
			t.freeLocked(e)
		}
	}
}

// expireLocked removes exited entries older than ExitedTTL.
func (t *Table) expireLocked(now time.Duration) {
	n := 0
	for n < len(t.exited) && now-t.exited[n].exitedAt >= t.opts.ExitedTTL {
		e := t.exited[n]
		t.exited[n] = nil
		if t.procs.delete(e.p.HostPID, e) {
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
	if ok && a.Cwd == p.Cwd {
		a.Cwd = p.CwdSlash // made when the process was stored
	} else {
		a.Cwd = slashTerminated(a.Cwd)
	}
	return a
}

// IsExec reports whether ev is a process execution.
func IsExec(ev *event.Event) bool {
	return ev.Operation == event.OpProcess && (ev.Syscall == "SYS_EXECVE" || ev.Syscall == "SYS_EXECVEAT")
}

// isSlashTerminated reports whether s is slashTerminated(dir), without
// building it.
func isSlashTerminated(s, dir string) bool {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return s == dir
	}
	return len(s) == len(dir)+1 && s[len(dir)] == '/' && s[:len(dir)] == dir
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
	e := t.procs.get(ev.HostPID)
	ok := e != nil
	var p Process
	if ok {
		p = e.p
	}
	var parentExe string
	parent := t.procs.get(ev.HostPPID)
	pok := parent != nil
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
