// Package fanotify is the enforcement tier for kernels with neither BPF-LSM
// nor AppArmor: fanotify permission events decide execs and opens in user
// space, and cgroup socket BPF programs at the cgroup2 root decide network
// protocol rules in the kernel.
//
// Safety: the agent must never hang or brick the host.
//   - Only the filesystems the rules touch are marked, and only with the
//     events the rules need; pseudo filesystems (procfs, sysfs, ...) never.
//   - Every permission event is answered within Options.Deadline: a decision
//     that takes longer is answered FAN_ALLOW (fail open) and reported.
//   - The agent's own process is never denied.
//   - Files no rule concerns are asked about once: the answer is cached in
//     the kernel (cache.go), and never where it could depend on the program
//     or on another name of the file: a second link, or a second path
//     through the mount table (a filesystem mounted twice or in part).
//   - Nothing outlives the process: fanotify marks and pending events go away
//     when its fd closes (the kernel allows what is pending), and the cgroup
//     programs are attached with links that are never pinned.
//   - The permission reader survives every transient read error (reader.go):
//     out of descriptors, out of memory, a file that cannot be opened. If it
//     stops for good it closes the fanotify group, which releases every
//     pending event with FAN_ALLOW and removes every mark, and Run returns
//     the error so that the agent exits non-zero and is restarted.
//
// Limits: a stopped (SIGSTOP) or frozen agent stalls the opens on marked
// filesystems until it runs again or dies; the kernel has no response
// timeout for permission events. Paths are those of the agent's mount
// namespace. Network rules cannot be restricted to a program (fromSource).
// A permission event the kernel cannot open a descriptor for (the agent at
// its RLIMIT_NOFILE, say) is denied by the kernel itself before the agent
// sees it: the reader keeps descriptors in reserve so that this stays rare,
// and counts each one.
package fanotify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
	"github.com/armorhost/kubearmor/kernelfs"
	"github.com/armorhost/kubearmor/monitor"
)

// Enforcer strings: the agent's tier, and the mechanisms that decided.
const (
	Name             = "Fanotify"
	EnforcerFanotify = "Fanotify"
)

// DefaultDeadline is how long a permission event may wait for a decision.
const DefaultDeadline = 500 * time.Millisecond

// Options configure the tier.
type Options struct {
	// Deadline bounds each exec/open decision; past it the operation is
	// allowed and reported. Zero means DefaultDeadline.
	Deadline time.Duration
	// NoNetwork leaves the cgroup socket programs out.
	NoNetwork bool
	Log       *slog.Logger

	// stall, when set (tests), runs before each decision.
	stall func()
	// legacyFDErrors (tests) leaves FAN_REPORT_FD_ERROR off, as on
	// kernels before 6.13.
	legacyFDErrors bool
	// cgroup, when set (tests), is where the socket programs attach
	// instead of the cgroup2 root.
	cgroup string
	// noCache (tests, the benchmark) leaves the allow cache off.
	noCache bool
	// cacheHooks (tests) act inside the allow cache's races.
	cacheHooks cacheHooks
}

// Enforcer is the fanotify/cgroup-BPF tier.
type Enforcer struct {
	opts   Options
	fan    *os.File
	fanFD  int
	sock   *sockTier
	sockEr error // why network rules are not enforced, when sock is nil
	self   uint32

	table   atomic.Pointer[decide.Table]
	inodes  atomic.Pointer[protectedInodes] // the files rules name, by identity (inodes.go)
	events  chan event.Event
	dropped atomic.Uint64
	queued  atomic.Uint64 // verdicts offered to Run's queue (stages.go)
	late    atomic.Uint64 // decisions past the deadline, allowed (fail open)

	mu      sync.Mutex // Apply, Close, the reader's death
	marks   map[uint64]fsMark
	closed  bool
	done    chan struct{} // the permission reader has stopped
	fanOnce sync.Once     // the fanotify fd is closed once, by Close or the reader's death
	fanErr  error

	cache   *cache // the kernel-side cache of "allowed" answers (cache.go)
	health  health // the reader's survived errors and its death (reader.go)
	reserve []int  // descriptors held for events at the fd limit; the reader's own
}

// fsMark is one filesystem mark: a path on the filesystem and the events.
type fsMark struct {
	path string
	mask uint64
}

// Supported says why this kernel cannot run the tier, or nil.
//
// It never marks anything in a permission group: a group with a mark and
// no reader holds every marked open or exec on the host until its last
// descriptor closes, and a child this process forks in that instant keeps a
// copy of the descriptor until its own exec, which the mark then holds:
// every exec on the root filesystem would wait forever. So the permission
// class is probed without marks, and filesystem marks with exec events in
// a notification group, whose events never wait (FAN_OPEN_EXEC came with
// FAN_OPEN_EXEC_PERM in Linux 5.0, filesystem marks in 4.20).
func Supported() error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("fanotify permission events unavailable: %w", err)
	}
	unix.Close(fd)
	fd, err = unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY)
	if err != nil {
		return fmt.Errorf("fanotify notification group unavailable: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC, unix.AT_FDCWD, "/"); err != nil {
		return fmt.Errorf("fanotify filesystem marks with exec events (FAN_OPEN_EXEC_PERM) unavailable: %w", err)
	}
	return nil
}

// New starts the tier with no rules: nothing is marked until Apply.
func New(opts Options) (*Enforcer, error) {
	if opts.Deadline <= 0 {
		opts.Deadline = DefaultDeadline
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	flags := uint(unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_REPORT_TID)
	evFlags := uint(unix.O_RDONLY | unix.O_LARGEFILE | unix.O_CLOEXEC)
	// FAN_REPORT_FD_ERROR (Linux 6.13) hands over an event whose descriptor
	// could not be opened, with the error in place of the fd, instead of
	// failing the read: each such event (which the kernel denies) is then
	// seen and counted. Older kernels refuse the flag with EINVAL.
	fd, err := -1, error(unix.EINVAL)
	if !opts.legacyFDErrors {
		fd, err = unix.FanotifyInit(flags|unix.FAN_REPORT_FD_ERROR, evFlags)
	}
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.FanotifyInit(flags, evFlags)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	e := &Enforcer{
		opts:   opts,
		fan:    os.NewFile(uintptr(fd), "fanotify"),
		fanFD:  fd,
		self:   uint32(os.Getpid()),
		events: make(chan event.Event, 4096),
		marks:  map[uint64]fsMark{},
		done:   make(chan struct{}),
	}
	e.table.Store(decide.New(nil, nil))
	e.inodes.Store(&protectedInodes{})
	if opts.noCache {
		e.cache = offCache(errors.New("turned off"))
	} else if e.cache = openCache(fd, opts.cacheHooks); e.cache.err != nil {
		opts.Log.Warn("fanotify tier: every open and exec on a marked filesystem waits for the agent", "err", e.cache.err)
	}
	e.health.init(opts.Log)
	if why := unseenMounts(kernelfs.Release(), kernelfs.Sysctl("kernel/unprivileged_userns_clone"), kernelfs.Sysctl("user/max_user_namespaces")); why != "" {
		opts.Log.Warn("fanotify tier: " + why)
	}
	e.fillReserve()
	if !opts.NoNetwork {
		e.sock, e.sockEr = openSockTier(opts.cgroup)
		if e.sockEr != nil {
			opts.Log.Warn("fanotify tier: network rules are not enforced", "err", e.sockEr)
		}
	} else {
		e.sockEr = errors.New("network enforcement is off")
	}
	go e.readPermissions()
	return e, nil
}

// Name is the tier's Enforcer string.
func (e *Enforcer) Name() string { return Name }

// Lifecycle is the tier's answer to what becomes of enforcement when the
// agent goes: it cannot outlive the process (see the package comment).
const Lifecycle = "enforcement ends with this process: once the fanotify listener is gone the kernel allows every open and exec (and the cgroup socket programs detach), so a restart, an upgrade or a crash is a gap until the next agent is ready"

// Adoption says, in status and the log, that nothing of this tier can be
// kept for the next agent.
func (e *Enforcer) Adoption() string { return Lifecycle }

// unrefusedFileOps are the file operations fanotify has no permission event
// for: only opens (FAN_OPEN_PERM) and execs (FAN_OPEN_EXEC_PERM) are
// answered, so a Block or readOnly file rule cannot refuse these. An
// O_CREAT open is refused, but the file it created stays.
var unrefusedFileOps = []string{"truncate", "unlink", "rmdir", "mkdir", "mknod", "symlink", "link", "rename", "chmod", "chown"}

// UnrefusedFileOps lists the file operations this tier cannot refuse; the
// agent reports them and has the monitor's telemetry decide them.
func (e *Enforcer) UnrefusedFileOps() []string { return slices.Clone(unrefusedFileOps) }

// unenforced says why this tier cannot enforce r, or "" when it can.
func (e *Enforcer) unenforced(r *hostpolicy.Rule, mounts []mount) string {
	switch r.Category {
	case hostpolicy.CategorySyscall:
		return "" // the monitor's
	case hostpolicy.CategoryProcess, hostpolicy.CategoryFile:
		if len(r.AllowedArgs) > 0 {
			return "allowedArgs is not enforced by the fanotify tier"
		}
		if r.SourceIsDir {
			return "a fromSource directory is not enforced by the fanotify tier"
		}
		if r.Match == hostpolicy.MatchExecName {
			return ""
		}
		prefix := r.Value
		if r.Match == hostpolicy.MatchPattern {
			prefix = decide.LiteralPrefix(r.Value)
		}
		m := mountOf(mounts, prefix)
		if why := unmarkable(m); why != "" {
			return fmt.Sprintf("%s is on %s (%s), %s", r.Value, m.point, m.fstype, why)
		}
		return ""
	case hostpolicy.CategoryNetwork:
		if e.sock == nil {
			return "network rules are not enforced: " + e.sockEr.Error()
		}
		return netUnenforced(r)
	}
	return fmt.Sprintf("%s rules are not enforced by the fanotify tier", r.Category)
}

// Apply replaces the rules in force. Marks for newly touched filesystems are
// added before the new rules are used, stale ones removed after.
func (e *Enforcer) Apply(rs *hostpolicy.RuleSet) (map[uint32]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("fanotify: enforcer is closed")
	}
	if err := e.health.deadErr(); err != nil {
		return nil, fmt.Errorf("fanotify: the permission reader has stopped, nothing is enforced: %w", err)
	}
	mounts, err := readMounts()
	if err != nil {
		return nil, fmt.Errorf("fanotify: mount table: %w", err)
	}
	unenforced := map[uint32]string{}
	if rs != nil {
		for i := range rs.Rules {
			r := &rs.Rules[i]
			if why := e.unenforced(r, mounts); why != "" {
				unenforced[r.ID] = why
			}
		}
	}
	skip := func(r *hostpolicy.Rule) bool { _, ok := unenforced[r.ID]; return ok }

	want, failed := e.wantedMarks(rs, skip, mounts)
	for id, why := range failed {
		unenforced[id] = why
	}
	added := map[uint64]uint64{} // bits newly added, to undo on error
	for dev, m := range want {
		cur := e.marks[dev]
		if add := m.mask &^ cur.mask; add != 0 {
			if err := unix.FanotifyMark(e.fanFD, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, add, unix.AT_FDCWD, m.path); err != nil {
				e.undoMarks(want, added)
				return nil, fmt.Errorf("fanotify: mark %s: %w", m.path, err)
			}
			added[dev] = add
		}
	}
	if e.sock != nil {
		if err := e.sock.apply(translateNet(rs, skip)); err != nil {
			e.undoMarks(want, added)
			return nil, fmt.Errorf("fanotify: %w", err)
		}
	}
	// The cache is flushed before the new table is used, and answers of
	// the old one are not cached after.
	t := decide.New(rs, skip)
	inodes := protect(rs, skip)
	e.cache.apply(func() { e.inodes.Store(&inodes); e.table.Store(t) }, newProtection(t, rs, skip), want)

	for dev, cur := range e.marks {
		drop := cur.mask &^ want[dev].mask
		if drop == 0 {
			continue
		}
		if err := unix.FanotifyMark(e.fanFD, unix.FAN_MARK_REMOVE|unix.FAN_MARK_FILESYSTEM, drop, unix.AT_FDCWD, cur.path); err != nil {
			// The filesystem may be gone; its mark went with it.
			e.opts.Log.Debug("fanotify: remove mark", "path", cur.path, "err", err)
		}
	}
	e.marks = want
	return unenforced, nil
}

func (e *Enforcer) undoMarks(want map[uint64]fsMark, added map[uint64]uint64) {
	for dev, bits := range added {
		_ = unix.FanotifyMark(e.fanFD, unix.FAN_MARK_REMOVE|unix.FAN_MARK_FILESYSTEM, bits, unix.AT_FDCWD, want[dev].path)
	}
}

// wantedMarks lists the filesystems the rules touch and the events each
// needs. A rule whose own filesystem cannot be found is reported.
func (e *Enforcer) wantedMarks(rs *hostpolicy.RuleSet, skip func(*hostpolicy.Rule) bool, mounts []mount) (map[uint64]fsMark, map[uint32]string) {
	want := map[uint64]fsMark{}
	failed := map[uint32]string{}
	if rs == nil {
		return want, failed
	}
	add := func(point string, mask uint64) error {
		var st unix.Stat_t
		if err := unix.Stat(point, &st); err != nil {
			return err
		}
		m := want[st.Dev]
		if m.path == "" {
			m.path = point
		}
		m.mask |= mask
		want[st.Dev] = m
		return nil
	}
	// below marks every real filesystem mounted at or under dir, but never
	// a stacked one (see stacked).
	below := func(dir string, mask uint64) {
		for _, m := range mounts {
			if unmarkable(m) == "" && under(m.point, dir) {
				_ = add(m.point, mask)
			}
		}
	}
	allowList := map[hostpolicy.Category]bool{}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if skip(r) || (r.Category != hostpolicy.CategoryProcess && r.Category != hostpolicy.CategoryFile) {
			continue
		}
		// The exec's open of a program raises FAN_OPEN_PERM as well as
		// FAN_OPEN_EXEC_PERM (5.0 to 6.18), so file rules decide it as the
		// read it is (decide.Exec) with opens alone marked.
		mask := uint64(unix.FAN_OPEN_EXEC_PERM)
		if r.Category == hostpolicy.CategoryFile {
			mask = unix.FAN_OPEN_PERM
		}
		if r.Action == hostpolicy.ActionAllow {
			allowList[r.Category] = true
		}
		switch r.Match {
		case hostpolicy.MatchExecName:
			below("/", mask)
		case hostpolicy.MatchPath:
			if err := add(mountOf(mounts, r.Value).point, mask); err != nil {
				failed[r.ID] = "cannot mark the filesystem of " + r.Value + ": " + err.Error()
			}
		case hostpolicy.MatchDirectory, hostpolicy.MatchPattern:
			prefix := r.Value
			if r.Match == hostpolicy.MatchPattern {
				prefix = decide.LiteralPrefix(r.Value)
			}
			if err := add(mountOf(mounts, prefix).point, mask); err != nil {
				failed[r.ID] = "cannot mark the filesystem of " + prefix + ": " + err.Error()
				continue
			}
			if r.Recursive || r.Match == hostpolicy.MatchPattern {
				below(prefix, mask)
			}
		}
	}
	// In allow-list mode everything not allowed gets the posture: every
	// filesystem is concerned.
	for c := range allowList {
		mask := uint64(unix.FAN_OPEN_EXEC_PERM)
		if c == hostpolicy.CategoryFile {
			mask = unix.FAN_OPEN_PERM
		}
		below("/", mask)
	}
	return want, failed
}

// Run hands verdicts to emit until ctx ends. If the permission reader stops
// for good, Run returns why: the tier then enforces nothing (see die).
func (e *Enforcer) Run(ctx context.Context, emit func(event.Event)) error {
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if e.sock != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.sock.run(ctx, emit); err != nil {
				errc <- err
			}
		}()
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.done:
			return e.health.deadErr()
		case err := <-errc:
			return err
		case ev := <-e.events:
			emit(ev)
		}
	}
}

// emit queues a verdict for Run; it never blocks a decision.
func (e *Enforcer) emit(ev event.Event) {
	e.queued.Add(1)
	select {
	case e.events <- ev:
	default:
		e.dropped.Add(1)
	}
}

// Dropped counts verdicts lost because nobody read them fast enough.
func (e *Enforcer) Dropped() uint64 { return e.dropped.Load() }

// Close removes every mark (pending events are allowed by the kernel when
// the fd closes) and detaches the cgroup programs.
func (e *Enforcer) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	var errs []error
	// Closing the fanotify fd wakes the reader and releases every pending
	// permission event with FAN_ALLOW. A reader that died closed it already.
	e.cache.close()
	e.cache.disable()
	errs = append(errs, e.closeFan())
	<-e.done
	if e.sock != nil {
		errs = append(errs, e.sock.close())
	}
	return errors.Join(errs...)
}

// ---- permission events ------------------------------------------------------

const metadataLen = 24 // sizeof(struct fanotify_event_metadata)

// answer decides one permission event and responds exactly once: with the
// decision, or with FAN_ALLOW when the deadline passes first.
func (e *Enforcer) answer(fd int32, tid int32, mask uint64) {
	defer unix.Close(int(fd))
	var answered atomic.Bool
	respond := func(allow bool) bool {
		if !answered.CompareAndSwap(false, true) {
			return false
		}
		e.respond(fd, allow)
		return true
	}
	timer := time.AfterFunc(e.opts.Deadline, func() {
		if respond(true) {
			e.health.failedOpen(fmt.Sprintf("no decision within %s", e.opts.Deadline))
			e.emit(e.failOpen(fd, tid, mask))
		}
	})
	ev, deny := e.decide(fd, tid, mask)
	timer.Stop()
	if respond(!deny) && ev != nil {
		e.emit(*ev)
	}
}

// respond answers one permission event.
func (e *Enforcer) respond(fd int32, allow bool) {
	var b [8]byte // struct fanotify_response
	binary.NativeEndian.PutUint32(b[0:], uint32(fd))
	binary.NativeEndian.PutUint32(b[4:], unix.FAN_ALLOW)
	if !allow {
		binary.NativeEndian.PutUint32(b[4:], unix.FAN_DENY)
	}
	// Through the os.File: after Close this fails instead of writing to
	// whatever reuses the descriptor number.
	if _, err := e.fan.Write(b[:]); err != nil && !errors.Is(err, os.ErrClosed) {
		e.opts.Log.Debug("fanotify: response", "err", err)
	}
}

// unconcerned is the reader's fast check: no rule could decide this event,
// whatever program made it. It costs one fstat and one readlink of our own
// fd. st is the fstat, for the cache (nil when it failed); name is the
// name decided, for the cache's recheck ("" when the category has no rule,
// so that no name matters).
func (e *Enforcer) unconcerned(fd int32, mask uint64) (ok bool, st *unix.Stat_t, name string) {
	cat := categoryOf(mask)
	t := e.table.Load()
	s, id, isFile, err := statID(int(fd))
	if err == nil {
		st = &s
	}
	if !t.Has(cat) {
		return true, st, ""
	}
	if isFile && len(e.inodes.Load().names(id, cat)) > 0 {
		return false, nil, "" // a file a rule names, under any name
	}
	subject, err := fdPath(fd)
	if err != nil || !strings.HasPrefix(subject, "/") {
		// Allowed as before, but never cached: the name is unknown.
		return true, nil, ""
	}
	isDir := cat == hostpolicy.CategoryFile && st != nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
	return !t.Concerns(cat, subject, isDir), st, subject
}

// fdPath is the current name of our descriptor fd.
func fdPath(fd int32) (string, error) {
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
}

func categoryOf(mask uint64) hostpolicy.Category {
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		return hostpolicy.CategoryProcess
	}
	return hostpolicy.CategoryFile
}

func isDirFD(fd int32) bool {
	var st unix.Stat_t
	return unix.Fstat(int(fd), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

func opName(mask uint64) string {
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		return "FAN_OPEN_EXEC_PERM"
	}
	return "FAN_OPEN_PERM"
}

// decide returns the verdict event (nil when nothing is reported) and
// whether to deny.
func (e *Enforcer) decide(fd int32, tid int32, mask uint64) (*event.Event, bool) {
	if e.opts.stall != nil {
		e.opts.stall()
	}
	subject, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	if err != nil || !strings.HasPrefix(subject, "/") {
		return nil, false
	}
	cat := categoryOf(mask)
	t := e.table.Load()
	if !t.Has(cat) {
		return nil, false
	}
	source := exeOf(tid)
	isDir := cat == hostpolicy.CategoryFile && isDirFD(fd)
	facts := newFacts(tid, int(fd))
	d := t.Path(cat, subject, source, isDir, facts)
	if !isDir {
		d = e.inodes.Load().byIdentity(d, t, int(fd), cat, subject, source, facts)
	}
	if d.Verdict == event.VerdictNone {
		return nil, false
	}
	if cat == hostpolicy.CategoryProcess && d.Rule == nil && isLoader(subject) {
		// The ELF interpreter of an exec that was already decided.
		return nil, false
	}
	st := readStatus(tid)
	if st.ok && st.tgid == e.self || uint32(tid) == e.self {
		return nil, false // never the agent itself
	}
	ev := &event.Event{
		Time:      time.Now(),
		HostPID:   st.tgid,
		PID:       st.tgid,
		UID:       st.uid,
		Comm:      st.name,
		Resource:  subject,
		Verdict:   d.Verdict,
		RuleID:    d.RuleID(),
		Enforcer:  EnforcerFanotify,
		Operation: event.OpFile,
	}
	// The alert reads as the monitor's event of the same syscall (reference
	// §2.10): the thread still waits in it, so its arguments are known.
	c := facts.call()
	if cat == hostpolicy.CategoryProcess {
		// ProcessName is the program being started, its parent the one
		// starting it (as for the monitor's exec events); Resource its
		// command line.
		ev.Operation, ev.Exe, ev.ParentExe = event.OpProcess, subject, source
		ev.Args = c.execArgs()
		ev.Resource = commandLine(subject, ev.Args)
		ev.Data = c.execData()
		ev.Syscall = "SYS_EXECVE"
		if c.ok && c.nr == sysExecveat {
			ev.Syscall = "SYS_EXECVEAT"
		}
	} else {
		ev.Exe, ev.Path = source, subject
		ev.File = c.file()
		ev.File.Dir = isDir
		ev.Data = c.openData()
		if c.ok {
			ev.Syscall = monitor.SyscallName(uint32(c.nr))
		}
	}
	if d.Deny {
		ev.Retval = -int64(unix.EPERM)
	}
	if !st.ok {
		ev.HostPID, ev.PID = uint32(tid), uint32(tid)
	}
	fillProc(ev)
	return ev, d.Deny
}

// failOpen is the report of an event allowed because its decision was late.
func (e *Enforcer) failOpen(fd int32, tid int32, mask uint64) event.Event {
	e.late.Add(1)
	st := readStatus(tid)
	c := readCall(tid)
	subject, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	ev := event.Event{
		Time:      time.Now(),
		HostPID:   st.tgid,
		PID:       st.tgid,
		UID:       st.uid,
		Comm:      st.name,
		Operation: event.OpFile,
		Resource:  subject,
		Data:      fmt.Sprintf("%s no decision within %s: allowed (fail open)", failOpenData(c, mask), e.opts.Deadline),
		Verdict:   event.VerdictPostureAudit,
		Enforcer:  EnforcerFanotify,
	}
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		ev.Operation = event.OpProcess
	} else {
		ev.Path, ev.File = subject, c.file()
	}
	fillProc(&ev)
	return ev
}

// failOpenData is the syscall part of a fail-open report's Data.
func failOpenData(c call, mask uint64) string {
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		return c.execData()
	}
	if d := c.openData(); d != "" {
		return d
	}
	return "fanotify=" + opName(mask)
}

// isLoader: the dynamic loader, which an exec opens with exec permission
// after the program itself was decided.
func isLoader(p string) bool {
	base := p[strings.LastIndexByte(p, '/')+1:]
	return strings.HasPrefix(base, "ld-linux") || strings.HasPrefix(base, "ld-musl") ||
		strings.HasPrefix(base, "ld64.so") || (strings.HasPrefix(base, "ld-") && strings.Contains(base, ".so"))
}
