package fanotify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// The allow cache. Without it every open and exec on a marked filesystem
// waits for a round trip through the agent, even of a file no rule names.
// As fapolicyd does, a file no rule concerns is asked about once: its
// inode gets an ignore mask in the permission group (FAN_MARK_IGNORED_MASK
// on an inode mark), and the kernel answers the next opens itself.
//
// What may be cached, and why that cannot loosen enforcement:
//   - Only the fast path's answer (Table.Concerns false): no rule of the
//     category (exact path, exec name, directory, pattern, of any source,
//     with any qualifier; any allow-list makes every file concerned) could
//     decide this name, whatever program asks. The tier decides every
//     process alike, host or container (container rules are the BPF-LSM
//     tier's), so the answer depends on the name alone. Opens
//     (FAN_OPEN_PERM) and execs (FAN_OPEN_EXEC_PERM) are cached apart, each
//     by its own category's answer. Nor is an inode an exact-path rule
//     names, whatever name it is opened under (inodes.go).
//   - Only regular files with one name (i_nlink == 1), on a filesystem the
//     name watcher below covers: the name decided is then the inode's only
//     name. Link count and name are read again once the mark is in place,
//     and the mark taken back if either changed (recheck): a link or rename
//     made while the answer was being cached is never served from it.
//   - Only inodes of a filesystem the agent's mount table shows exactly
//     once, whole (mount root "/"), opened through that very mount: a
//     filesystem mounted twice, or a directory of it bind-mounted
//     elsewhere, gives its inodes a second path that no link count shows
//     and no name event reports, and a mount made before the agent started
//     is no change the mount watch could see. A mount of another mount
//     namespace (any user can bind-mount a protected directory elsewhere
//     in a user namespace of their own) or overlayfs's private mount of a
//     layer is in no table the agent can watch, so an answer for a name
//     under it is never cached (onMount). The set is read at start and
//     again on every change of the mount table, after the flush, under
//     the cache lock.
//   - A name that lands later where a rule could match it (rename, link) is
//     reported by the name watcher, a second fanotify group
//     (FAN_REPORT_DFID_NAME, FAN_CREATE and FAN_MOVED_TO on the same
//     filesystems), which removes that inode's ignore mark; a directory
//     moved to where a rule could match below it, a change of the agent's
//     mount table (a bind mount over a protected path), a lost watcher
//     event (queue overflow) or a watcher error flush the whole cache
//     (FAN_MARK_FLUSH).
//   - Every Apply flushes the whole cache before the new rules are used.
//     Each flush or removal bumps a generation; an answer decided before it
//     is not cached.
//   - A write after the mark clears it (no FAN_MARK_IGNORED_SURV_MODIFY;
//     the writer's own open may be cached after its write), and marks
//     are evictable where the kernel allows (5.19), so the cache never pins
//     inodes in memory; elsewhere it is flushed after maxCached insertions.
//
// Cost: the name watcher gets an event for every file created or moved on
// the marked filesystems (asynchronous: nobody waits for it); the agent
// resolves its directory only to test the name against the rules.
//
// Residual window: the name watcher is asynchronous (fanotify has no
// permission event for rename or link). Between a rename or link of an
// inode already cached to a protected name and the watcher's removal of its
// mark (microseconds to a scheduling delay), an open through the new name is
// answered from the cache. It gives nothing the old name did not: the
// cached answer was "no rule concerns this inode, for every program", and
// whoever can rename or link it could have opened it under the old name.

// maxCached bounds the marks of a cache without evictable marks: past it
// the cache is flushed, so that it cannot pin unbounded kernel memory.
const maxCached = 1 << 16

const cacheBits = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM

// Flush reasons, as counted.
const (
	flushPolicy   = "policy change"
	flushName     = "directory moved into a protected path"
	flushMount    = "mount table changed"
	flushOverflow = "name watcher lost events"
	flushError    = "name watcher error"
	flushLimit    = "mark limit"
)

type cache struct {
	fan int // the permission group

	gen atomic.Uint64 // bumped by every flush and removal

	mu        sync.Mutex // marks and unmarks; the watched set
	on        bool
	evictable bool
	count     int               // insertions since the last flush (non-evictable)
	watched   map[uint64]bool   // st_dev the name watcher covers
	mountFDs  map[[8]byte]int   // fsid -> a descriptor on that filesystem
	marks     map[uint64]string // st_dev -> marked path, in the name watcher
	once      map[uint64]uint64 // st_dev mounted exactly once, whole -> that mount's ID (singleMounts)
	protect   atomic.Pointer[protection]

	notify int // the name watcher group, -1 when none
	mounts int // /proc/self/mountinfo, polled for changes
	stop   [2]int
	done   chan struct{}
	err    error // why the cache is off

	misses, inserted, notCached, unmarked atomic.Uint64
	multiMount                            atomic.Uint64 // of notCached: filesystem mounted more than once
	flushMu                               sync.Mutex
	flushes                               map[string]uint64
	lost                                  atomic.Uint64 // watcher queue overflows

	hooks cacheHooks
}

// cacheHooks let a test act inside the cache's races (Options.cacheHooks).
type cacheHooks struct {
	// beforeMark runs in insert, under mu, just before the mark is added.
	beforeMark func(fd int32)
	// beforeLanded runs in the name watcher before it handles a name.
	beforeLanded func(name string)
}

// protection is what the name watcher tests each new name against.
type protection struct {
	t *decide.Table
	// anchors are the paths every process and file rule is about (a path,
	// a directory, a pattern's literal prefix); a directory moved to an
	// ancestor of one, or below a directory one, flushes everything.
	anchors []string
	// names: an exec-name rule matches a base name anywhere, so a
	// directory moved anywhere may bring a protected name.
	names bool
}

func newProtection(t *decide.Table, rs *hostpolicy.RuleSet, skip func(*hostpolicy.Rule) bool) *protection {
	p := &protection{t: t}
	if rs == nil {
		return p
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if skip(r) || (r.Category != hostpolicy.CategoryProcess && r.Category != hostpolicy.CategoryFile) {
			continue
		}
		switch r.Match {
		case hostpolicy.MatchExecName:
			p.names = true
		case hostpolicy.MatchPattern:
			p.anchors = append(p.anchors, decide.LiteralPrefix(r.Value))
		default:
			p.anchors = append(p.anchors, r.Value)
		}
	}
	return p
}

// fileConcerned: a file at p could be decided by some rule.
func (p *protection) fileConcerned(path string) bool {
	return p.t.Concerns(hostpolicy.CategoryFile, path, false) || p.t.Concerns(hostpolicy.CategoryProcess, path, false)
}

// dirConcerned: a directory moved to dir could hold a name some rule
// decides.
func (p *protection) dirConcerned(dir string) bool {
	if p.names || p.fileConcerned(dir) {
		return true
	}
	d := strings.TrimSuffix(dir, "/") + "/"
	for _, a := range p.anchors {
		if strings.HasPrefix(a, d) || strings.HasPrefix(d, a) {
			return true
		}
	}
	return false
}

// openCache starts the name watcher. When it cannot (an old kernel without
// FAN_REPORT_DFID_NAME, 5.9), nothing is cached and every open asks.
func openCache(fan int, hooks cacheHooks) *cache {
	c := &cache{fan: fan, hooks: hooks, notify: -1, mounts: -1, stop: [2]int{-1, -1}, watched: map[uint64]bool{},
		mountFDs: map[[8]byte]int{}, marks: map[uint64]string{}, flushes: map[string]uint64{}, evictable: true}
	c.protect.Store(&protection{t: decide.New(nil, nil)})
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY)
	if err != nil {
		c.err = fmt.Errorf("name watcher (FAN_REPORT_DFID_NAME) unavailable: %w", err)
		return c
	}
	c.notify = fd
	// Opened before it is read: a change after the open wakes the watcher.
	if c.mounts, err = unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		c.close()
		c.err = fmt.Errorf("mount table: %w", err)
		return c
	}
	mounts, err := readMounts()
	if err != nil {
		c.close()
		c.err = fmt.Errorf("mount table: %w", err)
		return c
	}
	c.once = singleMounts(mounts)
	if err := unix.Pipe2(c.stop[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		c.close()
		c.err = fmt.Errorf("pipe: %w", err)
		return c
	}
	c.on = true
	c.done = make(chan struct{})
	go c.watch()
	return c
}

// offCache is a cache that caches nothing, for why.
func offCache(why error) *cache {
	c := &cache{fan: -1, notify: -1, mounts: -1, stop: [2]int{-1, -1}, err: why, flushes: map[string]uint64{}}
	c.protect.Store(&protection{t: decide.New(nil, nil)})
	return c
}

// CacheStats returns the allow cache's counters.
func (e *Enforcer) CacheStats() CacheStats { return e.cache.stats() }

// generation is read before a decision; insert caches its answer only if no
// flush or removal came in between.
func (c *cache) generation() uint64 { return c.gen.Load() }

// miss counts a fast-path answer. The reader counts it before it releases
// the opener, so that an open that has returned is on the books: a test (or
// a reader of the stages) that sees no new miss knows that the kernel
// answered the open itself. Its outcome, inserted or not cached, is counted
// by insert after the response; in between it is pending.
func (c *cache) miss() { c.misses.Add(1) }

// insert caches "allowed" for the inode of fd, for the event bit of the
// category that was decided. st is the fd's fstat, name the name decided
// ("" when none matters).
func (c *cache) insert(fd int32, mask uint64, gen uint64, st *unix.Stat_t, name string) {
	bit := uint64(unix.FAN_OPEN_PERM)
	if mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		bit = unix.FAN_OPEN_EXEC_PERM
	}
	if st == nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		c.notCached.Add(1)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || !c.watched[st.Dev] || c.gen.Load() != gen {
		c.notCached.Add(1)
		return
	}
	if id, ok := c.once[st.Dev]; !ok || !onMount(fd, id) {
		c.notCached.Add(1)
		c.multiMount.Add(1)
		return
	}
	if c.hooks.beforeMark != nil {
		c.hooks.beforeMark(fd)
	}
	flags := uint(unix.FAN_MARK_ADD | unix.FAN_MARK_IGNORED_MASK)
	if c.evictable {
		err := unix.FanotifyMark(c.fan, flags|unix.FAN_MARK_EVICTABLE, bit, int(fd), "")
		if err == nil {
			c.recheck(fd, name)
			return
		}
		if !errors.Is(err, unix.EINVAL) {
			c.markFailed(err)
			return
		}
		c.evictable = false // before 5.19; the count below bounds the cache
	}
	if c.count >= maxCached {
		c.flushLocked(flushLimit)
		c.notCached.Add(1)
		return
	}
	if err := unix.FanotifyMark(c.fan, flags, bit, int(fd), ""); err != nil {
		c.markFailed(err)
		return
	}
	c.count++
	c.recheck(fd, name)
}

// onMount: fd was opened through the mount with ID id. The opener's mount
// may be one the agent's table does not show: a bind mount in another
// mount namespace (any user can make one in a user namespace of their
// own), or the private mount through which overlayfs opens a layer's file.
// The name decided is then the name under that mount, which says nothing of
// the inode's name in the agent's table, so it is not cached.
func onMount(fd int32, id uint64) bool {
	var stx unix.Statx_t
	if unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx) != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return false
	}
	return stx.Mnt_id == id
}

// recheck reads the inode's link count and the descriptor's name again now
// that the mark is in place, and takes the mark back if the inode got a
// second name or the name decided was renamed since the decision. A link(2)
// raises i_nlink, and a rename(2) moves the dentry, before either queues its
// event for the name watcher, so one that completed before this check is
// seen here and its new name is never served from the cache, however late
// the watcher reads the event; one after it finds the mark in place for the
// watcher to remove (the residual window above). Without it, a name made
// between the decision and the mark was answered by the kernel until the
// watcher caught up, which under load is a scheduling delay.
func (c *cache) recheck(fd int32, name string) {
	if oneName(fd, name) {
		c.inserted.Add(1)
		return
	}
	c.notCached.Add(1)
	err := unix.FanotifyMark(c.fan, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, cacheBits, int(fd), "")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		// Nothing else would take this mark back before the watcher: the
		// whole cache goes.
		c.flushLocked(flushError)
	}
}

// oneName: fd's inode is a regular file with a single name, name (any
// name when name is "").
func oneName(fd int32, name string) bool {
	var st unix.Stat_t
	if unix.Fstat(int(fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return false
	}
	if name == "" {
		return true
	}
	now, err := fdPath(fd)
	return err == nil && now == name
}

// markFailed: EEXIST is a mark of the other kind on the inode (evictable
// or not), ENOSPC the group's mark limit, which a flush makes room under.
func (c *cache) markFailed(err error) {
	c.notCached.Add(1)
	if errors.Is(err, unix.ENOSPC) {
		c.flushLocked(flushLimit)
	}
}

// flush empties the cache; in-flight answers are not cached.
func (c *cache) flush(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(reason)
}

func (c *cache) flushLocked(reason string) {
	c.gen.Add(1)
	c.count = 0
	c.flushMu.Lock()
	c.flushes[reason]++
	c.flushMu.Unlock()
	if c.fan < 0 {
		return // the permission group is closed, and its marks with it
	}
	// FAN_MARK_FLUSH without a type flag removes the inode marks, which are
	// all the cache's; the filesystem marks stay.
	if err := unix.FanotifyMark(c.fan, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		// Nothing else can clear the marks: stop caching rather than keep
		// answers that may be stale.
		c.on = false
		c.err = fmt.Errorf("flush failed, cache off: %w", err)
	}
}

// disable stops caching before the permission group is closed, so that no
// mark is ever made through a descriptor number that was reused.
func (c *cache) disable() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on, c.fan = false, -1
	c.gen.Add(1)
}

// apply switches to new rules: under the cache lock, so that no answer of
// the old rules is cached after the flush, the cache is flushed, then the
// table is stored (by store), then the watched filesystems are updated.
func (c *cache) apply(store func(), p *protection, want map[uint64]fsMark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(flushPolicy)
	store()
	c.protect.Store(p)
	c.gen.Add(1) // answers decided between the flush and the store
	if c.notify < 0 {
		return
	}
	for dev, path := range c.marks {
		if _, ok := want[dev]; !ok {
			_ = unix.FanotifyMark(c.notify, unix.FAN_MARK_REMOVE|unix.FAN_MARK_FILESYSTEM, unix.FAN_CREATE|unix.FAN_MOVED_TO|unix.FAN_ONDIR, unix.AT_FDCWD, path)
			delete(c.marks, dev)
			delete(c.watched, dev)
		}
	}
	for dev, m := range want {
		if c.watched[dev] {
			continue
		}
		if err := c.watchFS(dev, m.path); err != nil {
			// Not watched, so not cached: every open there still asks.
			c.err = fmt.Errorf("%s not cached: %w", m.path, err)
		}
	}
}

func (c *cache) watchFS(dev uint64, path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.FanotifyMark(c.notify, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_CREATE|unix.FAN_MOVED_TO|unix.FAN_ONDIR, unix.AT_FDCWD, path); err != nil {
		unix.Close(fd)
		return fmt.Errorf("name watcher: %w", err)
	}
	var fsid [8]byte
	binary.NativeEndian.PutUint32(fsid[0:], uint32(sfs.Fsid.Val[0]))
	binary.NativeEndian.PutUint32(fsid[4:], uint32(sfs.Fsid.Val[1]))
	if old, ok := c.mountFDs[fsid]; ok {
		unix.Close(old)
	}
	c.mountFDs[fsid] = fd
	c.marks[dev] = path
	c.watched[dev] = true
	return nil
}

// watch reads the name watcher and the mount table until close.
func (c *cache) watch() {
	defer close(c.done)
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(c.notify), Events: unix.POLLIN}, {Fd: int32(c.mounts), Events: unix.POLLPRI}, {Fd: int32(c.stop[0]), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.fail(fmt.Errorf("poll: %w", err))
			return
		}
		if fds[2].Revents != 0 {
			return
		}
		if fds[1].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			// The poll itself takes note of the change (mounts_poll); one
			// after it wakes the next poll.
			c.remount()
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			for {
				n, err := unix.Read(c.notify, buf)
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil || n <= 0 {
					c.fail(fmt.Errorf("name watcher read: %v", err))
					return
				}
				c.names(buf[:n])
			}
		}
	}
}

// remount flushes the cache and reads which filesystems are mounted once,
// under the lock: nothing is cached between the flush and the new set.
func (c *cache) remount() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(flushMount)
	mounts, err := readMounts()
	if err != nil {
		// Not knowing the mounts, trust none of them.
		c.once = map[uint64]uint64{}
		return
	}
	c.once = singleMounts(mounts)
}

// fail turns the cache off for good: flushed, nothing cached again.
func (c *cache) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked(flushError)
	c.on = false
	c.err = err
}

// names handles the name watcher's events of one read.
func (c *cache) names(b []byte) {
	p := c.protect.Load()
	for off := 0; off+metadataLen <= len(b); {
		ev := b[off:]
		evLen := int(binary.NativeEndian.Uint32(ev[0:]))
		if evLen < metadataLen || off+evLen > len(b) {
			break
		}
		off += evLen
		mask := binary.NativeEndian.Uint64(ev[8:])
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			c.lost.Add(1)
			c.flush(flushOverflow)
			continue
		}
		ondir := mask&unix.FAN_ONDIR != 0
		if ondir && mask&unix.FAN_MOVED_TO == 0 {
			continue // a new directory is empty
		}
		fsid, handle, name, ok := parseDFIDName(ev[metadataLen:evLen])
		if !ok {
			c.flush(flushError)
			continue
		}
		if c.hooks.beforeLanded != nil {
			c.hooks.beforeLanded(name)
		}
		c.landed(p, fsid, handle, name, ondir)
	}
}

// landed handles one name created in or moved to a directory.
func (c *cache) landed(p *protection, fsid [8]byte, handle unix.FileHandle, name string, ondir bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	mfd, ok := c.mountFDs[fsid]
	if !ok {
		return // a filesystem no longer watched: nothing cached there survives a flush
	}
	dfd, err := unix.OpenByHandleAt(mfd, handle, unix.O_PATH|unix.O_CLOEXEC)
	if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
		return // the directory is gone, and the name with it
	}
	if err != nil {
		c.flushLocked(flushError)
		return
	}
	defer unix.Close(dfd)
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(dfd))
	if err != nil || !strings.HasPrefix(dir, "/") {
		c.flushLocked(flushError)
		return
	}
	full := strings.TrimSuffix(dir, "/") + "/" + name
	if ondir {
		if p.dirConcerned(full) {
			c.flushLocked(flushName)
		}
		return
	}
	if !p.fileConcerned(full) {
		return
	}
	// The inode now at that name loses its mark. Whatever lands there next
	// comes with its own event.
	c.gen.Add(1)
	c.unmarked.Add(1)
	if c.fan < 0 {
		return
	}
	err = unix.FanotifyMark(c.fan, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_DONT_FOLLOW, cacheBits, dfd, name)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		// ENOENT: no mark on it, or the name went away again.
	default:
		c.flushLocked(flushError)
	}
}

// parseDFIDName reads a FAN_EVENT_INFO_TYPE_DFID_NAME record: header,
// fsid, file handle, name.
func parseDFIDName(b []byte) (fsid [8]byte, h unix.FileHandle, name string, ok bool) {
	for len(b) >= 4 {
		typ, l := b[0], int(binary.NativeEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return fsid, h, "", false
		}
		rec := b[4:l]
		b = b[l:]
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME || len(rec) < 16 {
			continue
		}
		copy(fsid[:], rec[:8])
		hb := int(binary.NativeEndian.Uint32(rec[8:]))
		ht := int32(binary.NativeEndian.Uint32(rec[12:]))
		if 16+hb > len(rec) {
			return fsid, h, "", false
		}
		n := rec[16+hb:]
		if i := bytes.IndexByte(n, 0); i >= 0 {
			n = n[:i]
		}
		return fsid, unix.NewFileHandle(ht, rec[16:16+hb]), string(n), len(n) > 0
	}
	return fsid, h, "", false
}

func (c *cache) close() {
	if c.stop[1] >= 0 {
		_, _ = unix.Write(c.stop[1], []byte{0})
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	for _, fd := range append([]int{c.notify, c.mounts, c.stop[0], c.stop[1]}, mapValues(c.mountFDs)...) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	c.notify, c.mounts, c.stop = -1, -1, [2]int{-1, -1}
	c.mountFDs = map[[8]byte]int{}
}

func mapValues(m map[[8]byte]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// CacheStats are the allow cache's counters. Hits are answered by the
// kernel without an event, so they cannot be counted here: Misses are the
// opens and execs of files no rule concerns that did come to the agent,
// counted before the opener is released; Misses - Inserted - NotCached are
// those whose insertion is still under way. MultiMount are those of
// NotCached on a filesystem mounted more than once or in part, or opened
// through a mount the agent's table does not show (another mount
// namespace's, an overlayfs layer's).
type CacheStats struct {
	Misses, Inserted, NotCached, Unmarked uint64
	MultiMount                            uint64
	Flushes                               map[string]uint64
	Off                                   string // why nothing is cached, or ""
}

func (c *cache) stats() CacheStats {
	// Outcomes before misses: each outcome's miss was counted before it,
	// so Misses >= Inserted + NotCached, the difference being in flight.
	s := CacheStats{Inserted: c.inserted.Load(), MultiMount: c.multiMount.Load(), NotCached: c.notCached.Load()}
	s.Misses, s.Unmarked, s.Flushes = c.misses.Load(), c.unmarked.Load(), map[string]uint64{}
	c.flushMu.Lock()
	for k, v := range c.flushes {
		s.Flushes[k] = v
	}
	c.flushMu.Unlock()
	c.mu.Lock()
	if !c.on && c.err != nil {
		s.Off = c.err.Error()
	}
	c.mu.Unlock()
	return s
}

// stages are the cache's part of the accounting: misses received, cached
// (passed) or not (filtered); flushes of the whole cache passed, removals
// of one inode's mark filtered.
func (c *cache) stages() []event.Stage {
	s := c.stats()
	var flushes uint64
	for _, n := range s.Flushes {
		flushes += n
	}
	miss := event.Stage{Name: "fanotify cache", Received: s.Misses, Passed: s.Inserted, Filtered: s.NotCached, Pending: s.Misses - s.Inserted - s.NotCached}
	if s.Off != "" {
		miss.State = "not caching: " + s.Off
	}
	fl := event.Stage{Name: "fanotify cache flushes", Received: flushes + s.Unmarked, Passed: flushes, Filtered: s.Unmarked}
	if n := c.lost.Load(); n > 0 {
		fl.State = fmt.Sprintf("name watcher queue overflowed %d times (whole cache flushed)", n)
	}
	return []event.Stage{miss, fl}
}
