package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The permission reader. Every exec and open on a marked filesystem waits
// for it, so it must never stop while the tier is in force: a reader that
// returned left those callers hanging until the agent was killed.
//
// What the kernel does (fs/notify/fanotify/fanotify_user.c, fanotify_read
// and copy_event_to_user, 6.1 to 6.18): for each event it opens the file for
// us (create_fd). When that fails (EMFILE or ENFILE at a descriptor limit,
// ENOMEM, or an error from opening that file), the kernel answers the
// permission event FAN_DENY itself, before we see it, and read returns the
// error (or, when events were read before it, their bytes; the error is
// then lost). With FAN_REPORT_FD_ERROR (6.13) the event is handed over with
// -errno in place of the fd instead, and is still denied. So such an event
// can neither hang nor be allowed by us; what the reader can do is keep
// descriptors in reserve, so that the agent at its RLIMIT_NOFILE (idle
// connections held open by a local user, say) does not turn every open into
// a denial, count each denial, and go on reading.
//
// Read errors that mean the reader itself is broken (EBADF, EINVAL: an
// event larger than the buffer stays queued, EFAULT) end it after a few
// tries: it then closes the group (the kernel allows every pending event and
// removes every mark, so nothing hangs) and Run returns the error, so that
// the agent exits non-zero and systemd restarts it.

const (
	// reserveFDs are held open (on /dev/null) while the process has
	// descriptors to spare, and closed when an event could not get one.
	reserveFDs = 32
	// refillEvery bounds how often a short reserve is topped up.
	refillEvery = 250 * time.Millisecond
	// fatalTries consecutive fatal read errors end the reader.
	fatalTries = 3
	// maxBackoff bounds the pause after a failed read: events wait in the
	// kernel's queue meanwhile, which gives descriptors time to come back.
	maxBackoff = 100 * time.Millisecond
	// logEvery rate-limits the log line of each kind of survived error.
	logEvery = 10 * time.Second
)

func (e *Enforcer) readPermissions() {
	defer close(e.done)
	defer e.releaseReserve()
	buf := make([]byte, 64<<10)
	var backoff time.Duration
	fatal := 0
	lastFill := time.Now()
	for {
		n, err := e.fan.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return // Close
			}
			var errno unix.Errno
			if !errors.As(err, &errno) {
				errno = unix.EIO // an *os.PathError always wraps an Errno; be safe
			}
			switch errno {
			case unix.EINTR, unix.EAGAIN:
				continue
			case unix.EBADF, unix.EINVAL, unix.EFAULT:
				e.health.readError(errno, "the reader cannot read events")
				if fatal++; fatal >= fatalTries {
					e.die(fmt.Errorf("fanotify: read: %w (%d times in a row)", err, fatal))
					return
				}
			case unix.EMFILE, unix.ENFILE:
				e.health.readError(errno, "a permission event was denied by the kernel: no descriptor for the agent")
				if e.releaseReserve() > 0 {
					continue // room made: read at once
				}
			default:
				e.health.readError(errno, "a permission event was denied by the kernel: it could not open the file for the agent")
			}
			backoff = min(max(2*backoff, time.Millisecond), maxBackoff)
			time.Sleep(backoff)
			continue
		}
		fatal = 0
		if e.handleEvents(buf[:n]) {
			backoff = min(max(2*backoff, time.Millisecond), maxBackoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if len(e.reserve) < reserveFDs && time.Since(lastFill) >= refillEvery {
			e.fillReserve()
			lastFill = time.Now()
		}
	}
}

// handleEvents answers the events of one read and reports whether one of
// them came without a descriptor (FAN_REPORT_FD_ERROR).
func (e *Enforcer) handleEvents(b []byte) (fdTrouble bool) {
	for off := 0; off+metadataLen <= len(b); {
		ev := b[off:]
		evLen := binary.NativeEndian.Uint32(ev[0:])
		if evLen < metadataLen || off+int(evLen) > len(b) {
			break
		}
		off += int(evLen)
		vers, mask := ev[4], binary.NativeEndian.Uint64(ev[8:])
		fd, pid := int32(binary.NativeEndian.Uint32(ev[16:])), int32(binary.NativeEndian.Uint32(ev[20:]))
		if vers != unix.FANOTIFY_METADATA_VERSION {
			continue
		}
		if fd < 0 {
			// FAN_REPORT_FD_ERROR: the kernel could not open the file for
			// us and has denied the event.
			errno := unix.Errno(-fd)
			e.health.kernelDenied(errno, pid)
			fdTrouble = true
			if errno == unix.EMFILE || errno == unix.ENFILE {
				e.releaseReserve()
			}
			continue
		}
		if e.opts.stall == nil {
			// The generation before the table is read: an answer of rules
			// replaced meanwhile is not cached.
			gen := e.cache.generation()
			if ok, st, name := e.unconcerned(fd, mask); ok {
				// The common case, answered at once: no rule is about this
				// file. The kernel answers its next opens itself.
				e.cache.miss()
				e.respond(fd, true)
				e.cache.insert(fd, mask, gen, st, name)
				unix.Close(int(fd))
				continue
			}
		}
		go e.answer(fd, pid, mask)
	}
	return fdTrouble
}

// fillReserve tops the reserve up, but only while the process has as many
// descriptors again to spare: at the limit, a reserve taken back from the
// few free descriptors would only turn the next events into denials.
func (e *Enforcer) fillReserve() {
	need := reserveFDs - len(e.reserve)
	var got []int
	for len(got) < 2*need {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		got = append(got, fd)
	}
	keep := 0
	if len(got) == 2*need {
		keep = need
		e.reserve = append(e.reserve, got[:need]...)
	}
	for _, fd := range got[keep:] {
		unix.Close(fd)
	}
	e.health.reserve.Store(int64(len(e.reserve)))
}

// releaseReserve closes the reserve, making room for the next events'
// descriptors, and returns how many it closed.
func (e *Enforcer) releaseReserve() int {
	n := len(e.reserve)
	for _, fd := range e.reserve {
		unix.Close(fd)
	}
	e.reserve = e.reserve[:0]
	e.health.reserve.Store(0)
	return n
}

// die ends the tier after the reader stopped for good: closing the group
// allows every pending event and removes every mark, so nothing waits on a
// reader that is gone. Run then returns err.
func (e *Enforcer) die(err error) {
	e.health.setDead(err)
	e.opts.Log.Error("fanotify: the permission reader stopped for good; the fanotify group is closed, so pending and future opens and execs are allowed: the tier enforces no file or process rule now", "err", err)
	e.mu.Lock()
	defer e.mu.Unlock()
	// Under mu: Apply never marks through a descriptor number that was
	// closed (and maybe reused); nor does the cache.
	e.cache.disable()
	_ = e.closeFan()
}

// closeFan closes the fanotify descriptor once, for Close or die, after
// removing every mark: a child forked at that moment holds a copy of the
// descriptor until its exec, and the group lives as long as any copy. With
// its marks left, that child's own exec (and every other marked open and
// exec on the host) would wait on a group nobody reads any more, forever.
func (e *Enforcer) closeFan() error {
	e.fanOnce.Do(func() {
		for _, which := range []uint{unix.FAN_MARK_FILESYSTEM, unix.FAN_MARK_MOUNT, 0} {
			_ = unix.FanotifyMark(e.fanFD, unix.FAN_MARK_FLUSH|which, 0, unix.AT_FDCWD, "")
		}
		e.fanErr = e.fan.Close()
	})
	return e.fanErr
}

// health is what the reader survived, for the log and `kubearmor status`.
type health struct {
	log     *slog.Logger
	reserve atomic.Int64

	mu         sync.Mutex
	readErrors map[string]uint64 // errno name -> read errors survived
	denied     map[string]uint64 // errno name -> events the kernel denied (FAN_REPORT_FD_ERROR)
	failOpen   map[string]uint64 // reason -> events allowed without a decision
	logged     map[string]time.Time
	unlogged   map[string]uint64 // occurrences since the last log line, by key
	dead       error
}

func (h *health) init(log *slog.Logger) {
	h.log = log
	h.readErrors, h.denied, h.failOpen = map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	h.logged, h.unlogged = map[string]time.Time{}, map[string]uint64{}
}

// note counts one occurrence under key and says whether to log it now, and
// how many occurrences the line stands for: the first at once, then at most
// one line per key every logEvery.
func (h *health) note(key string) (bool, uint64) {
	h.unlogged[key]++
	if last, ok := h.logged[key]; ok && time.Since(last) < logEvery {
		return false, 0
	}
	n := h.unlogged[key]
	h.logged[key], h.unlogged[key] = time.Now(), 0
	return true, n
}

// record counts one occurrence of key in counts and logs msg with attrs,
// at most once per logEvery for each kind, with what went unlogged since.
func (h *health) record(counts map[string]uint64, kind, key, msg string, attrs ...any) {
	h.mu.Lock()
	counts[key]++
	total := counts[key]
	log, n := h.note(kind + " " + key)
	h.mu.Unlock()
	if log {
		h.log.Warn(msg, append(attrs, "since_last_line", n, "total", total)...)
	}
}

func (h *health) readError(errno unix.Errno, what string) {
	name := unix.ErrnoName(errno)
	h.record(h.readErrors, "read", name, "fanotify: read failed; retrying", "err", errno.Error(), "errno", name, "meaning", what)
}

func (h *health) kernelDenied(errno unix.Errno, pid int32) {
	name := unix.ErrnoName(errno)
	h.record(h.denied, "denied", name, "fanotify: the kernel denied a permission event: it could not open the file for the agent", "err", errno.Error(), "errno", name, "pid", pid)
}

// failedOpen counts an event allowed without a decision; the event itself
// is reported on the alert stream.
func (h *health) failedOpen(reason string) {
	h.record(h.failOpen, "failopen", reason, "fanotify: permission event allowed without a decision (fail open)", "reason", reason)
}

func (h *health) setDead(err error) {
	h.mu.Lock()
	h.dead = err
	h.mu.Unlock()
}

func (h *health) deadErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead
}

// Health is the permission reader's state.
type Health struct {
	// ReadErrors counts failed reads the reader survived, by errno name
	// ("EMFILE"). Each one but EBADF, EINVAL and EFAULT is a permission
	// event the kernel denied because it could not open the file for us.
	ReadErrors map[string]uint64
	// KernelDenied counts the permission events the kernel handed over
	// without a descriptor, and denied, by errno name (FAN_REPORT_FD_ERROR,
	// Linux 6.13 and later; before, they show up in ReadErrors).
	KernelDenied map[string]uint64
	// FailOpen counts the events allowed without a decision, by reason.
	FailOpen map[string]uint64
	// Reserve is how many descriptors are held in reserve (of reserveFDs).
	Reserve int
	// Dead is why the reader stopped for good; nil while it runs.
	Dead error
}

// Health returns the permission reader's counters and whether it runs.
func (e *Enforcer) Health() Health {
	h := &e.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return Health{
		ReadErrors:   maps.Clone(h.readErrors),
		KernelDenied: maps.Clone(h.denied),
		FailOpen:     maps.Clone(h.failOpen),
		Reserve:      int(h.reserve.Load()),
		Dead:         h.dead,
	}
}

// Warnings are the lines `kubearmor status` shows about the reader: empty
// while nothing went wrong.
func (e *Enforcer) Warnings() []string {
	h := e.Health()
	var out []string
	if h.Dead != nil {
		out = append(out, fmt.Sprintf("fanotify permission reader stopped for good: %v; file and process rules are not enforced and the agent is exiting", h.Dead))
	}
	if s, n := countList(h.ReadErrors); n > 0 {
		out = append(out, fmt.Sprintf("fanotify: %d failed reads survived (%s); each but EBADF/EINVAL/EFAULT is an open or exec the kernel denied because it could not open the file for the agent", n, s))
	}
	if s, n := countList(h.KernelDenied); n > 0 {
		out = append(out, fmt.Sprintf("fanotify: %d opens or execs denied by the kernel: it could not open the file for the agent (%s)", n, s))
	}
	if s, n := countList(h.FailOpen); n > 0 {
		out = append(out, fmt.Sprintf("fanotify: %d opens or execs allowed without a decision (%s)", n, s))
	}
	return out
}

// countList renders counts as "EMFILE 3, ENOMEM 1" and sums them.
func countList(m map[string]uint64) (string, uint64) {
	var parts []string
	var total uint64
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		total += m[k]
	}
	return strings.Join(parts, ", "), total
}
