package policystore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
)

// The watcher uses inotify directly: fsnotify has no close-after-write
// event, and a policy must be read when its writer is done (IN_CLOSE_WRITE,
// or a rename into place), never on a bare write (IN_MODIFY), which may be
// half of one.
const (
	dirMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
		unix.IN_CREATE | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
		unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK
	// The parent is watched for the directory's own removal, rename and
	// re-creation, and for chmod/chown of it.
	parentMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
		unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	// retryEvery is how often a missing directory (or parent) is looked for
	// when no event can announce it.
	retryEvery = time.Second
)

type inotifyEvent struct {
	wd   int32
	mask uint32
	name string
}

type inotify struct {
	fd int
	f  *os.File
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// A non-blocking descriptor joins the runtime's poller: Read waits
	// without a thread, and Close wakes it.
	return &inotify{fd: fd, f: os.NewFile(uintptr(fd), "inotify")}, nil
}

func (in *inotify) add(path string, mask uint32) (int32, error) {
	wd, err := unix.InotifyAddWatch(in.fd, path, mask)
	return int32(wd), err
}

func (in *inotify) rm(wd int32) { unix.InotifyRmWatch(in.fd, uint32(wd)) }

func (in *inotify) Close() error { return in.f.Close() }

// read sends batches of events until the descriptor is closed.
func (in *inotify) read(out chan<- []inotifyEvent, errc chan<- error, done <-chan struct{}) {
	buf := make([]byte, 64<<10)
	for {
		n, err := in.f.Read(buf)
		if err != nil {
			select {
			case errc <- err:
			case <-done:
			}
			return
		}
		var evs []inotifyEvent
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + unix.SizeofInotifyEvent + int(raw.Len)
			if end > n {
				break
			}
			name := string(buf[off+unix.SizeofInotifyEvent : end])
			evs = append(evs, inotifyEvent{wd: raw.Wd, mask: raw.Mask, name: strings.TrimRight(name, "\x00")})
			off = end
		}
		select {
		case out <- evs:
		case <-done:
			return
		}
	}
}

// watches are the two watch descriptors; -1 while not watched.
type watches struct {
	dir, parent int32
}

// Run watches the directory, and its parent for the directory's removal and
// re-creation, until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	in, err := newInotify()
	if err != nil {
		return fmt.Errorf("watch %s: %w", event.ValidText(s.dir), err)
	}
	defer in.Close()
	done := make(chan struct{})
	defer close(done)
	batches := make(chan []inotifyEvent)
	errc := make(chan error, 1)
	go in.read(batches, errc, done)

	w := watches{dir: -1, parent: -1}
	s.attach(in, &w)

	pending := map[string]bool{}
	attrs := map[string]bool{}
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	emptyTimer := time.NewTimer(time.Hour)
	emptyTimer.Stop()
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	base := filepath.Base(s.dir)

	// armEmpty sets the timer for the earliest empty settle still running.
	armEmpty := func() {
		s.mu.Lock()
		at, _ := s.nextEmptyCheck()
		s.mu.Unlock()
		emptyTimer.Stop()
		if !at.IsZero() {
			emptyTimer.Reset(max(time.Until(at), time.Millisecond))
		}
	}
	schedule := func(name string, set map[string]bool) {
		if len(pending) == 0 && len(attrs) == 0 {
			flush.Reset(settle)
		}
		set[name] = true
	}

	for {
		// The retry ticker is selected only while a watch is missing: a
		// ticker nobody waits on never wakes the process (Go 1.23 timers).
		var retryC <-chan time.Time
		if w.dir < 0 || w.parent < 0 {
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("policy watcher: %w", err)
		case <-retryC:
			if w.dir < 0 || w.parent < 0 {
				s.attach(in, &w)
			}
		case <-s.kick:
			armEmpty()
		case <-emptyTimer.C:
			s.mu.Lock()
			now := time.Now()
			_, names := s.nextEmptyCheck()
			changed := false
			for _, n := range names {
				if s.checkEmpty(n, now) {
					changed = true
				}
			}
			if changed {
				s.commit("stayed empty: " + strings.Join(names, ", "))
			}
			s.mu.Unlock()
			armEmpty()
		case evs := <-batches:
			for _, ev := range evs {
				switch {
				case ev.mask&unix.IN_Q_OVERFLOW != 0:
					// Events were lost: read everything again.
					s.log.Warn("policy watcher queue overflowed; rescanning", "dir", event.ValidText(s.dir))
					s.Rescan()
				case ev.wd == w.parent && ev.wd >= 0:
					switch {
					case ev.mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
						in.rm(w.parent)
						w.parent = -1
					case ev.name != base:
					case ev.mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
						s.lostDir(in, &w)
					case ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
						s.attach(in, &w)
					case ev.mask&unix.IN_ATTRIB != 0:
						s.mu.Lock()
						if s.checkDir() {
							s.commit("policy directory permissions changed")
						}
						s.mu.Unlock()
					}
				case ev.wd == w.dir && ev.wd >= 0:
					if ev.mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
						s.lostDir(in, &w)
						continue
					}
					if ev.name == "" {
						if ev.mask&unix.IN_ATTRIB != 0 {
							s.mu.Lock()
							if s.checkDir() {
								s.commit("policy directory permissions changed")
							}
							s.mu.Unlock()
						}
						continue
					}
					if !isPolicyFile(ev.name) {
						continue
					}
					switch {
					case ev.mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE) != 0:
						schedule(ev.name, pending)
					case ev.mask&unix.IN_CREATE != 0:
						// A regular file just created is being written: its
						// close loads it. Anything else (symlink, FIFO, a
						// hard link to a finished file) gets no close.
						if !beingWritten(filepath.Join(s.dir, ev.name)) {
							schedule(ev.name, pending)
						}
					case ev.mask&unix.IN_ATTRIB != 0:
						schedule(ev.name, attrs)
					}
				}
			}
		case <-flush.C:
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			sort.Strings(names)
			s.mu.Lock()
			changed := s.reload(names, time.Now())
			for n := range attrs {
				if !pending[n] && s.refreshPerm(n) {
					changed = true
				}
			}
			if changed {
				change := "changed: " + strings.Join(names, ", ")
				if len(names) == 0 {
					change = "policy file permissions changed"
				}
				s.commit(change)
			}
			s.mu.Unlock()
			pending, attrs = map[string]bool{}, map[string]bool{}
			armEmpty()
		}
	}
}

// beingWritten: a regular file with one link, just created, is being
// written by whoever created it.
func beingWritten(path string) bool {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1
}

// attach watches the parent and the directory, whichever is not watched
// yet. A directory watched anew is read whole: it may be new, or files may
// have changed while it was not watched.
func (s *Store) attach(in *inotify, w *watches) {
	if w.parent < 0 {
		if wd, err := in.add(filepath.Dir(s.dir), parentMask); err == nil {
			w.parent = wd
		}
	}
	if w.dir >= 0 {
		return
	}
	wd, err := in.add(s.dir, dirMask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			s.mu.Lock()
			if s.dirGone() {
				s.commit("policy directory removed")
			}
			s.mu.Unlock()
		} else {
			s.log.Error("cannot watch the policy directory; retrying", "dir", event.ValidText(s.dir), "err", err)
		}
		return
	}
	w.dir = wd
	s.mu.Lock()
	if s.rescan() {
		s.commit("rescan")
	}
	s.mu.Unlock()
}

// lostDir handles the directory's removal or rename: the watch (which would
// follow a renamed directory) is dropped and its policies removed; a
// directory that is already back is watched again.
func (s *Store) lostDir(in *inotify, w *watches) {
	if w.dir >= 0 {
		in.rm(w.dir)
		w.dir = -1
	}
	s.attach(in, w)
}
