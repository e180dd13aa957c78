package fanotify

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/kernelfs"
	"github.com/armorhost/kubearmor/monitor"
)

// taskStatus is what /proc/<tid>/status says about a thread.
type taskStatus struct {
	tgid, ppid, uid, fsuid uint32
	name                   string
	ok                     bool
}

func readStatus(tid int32) taskStatus {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(tid)) + "/status")
	if err != nil {
		return taskStatus{}
	}
	st := taskStatus{ok: true}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		f := strings.Fields(string(v))
		switch string(k) {
		case "Name":
			st.name = strings.TrimSpace(string(v))
		case "Tgid":
			st.tgid = atou(f, 0)
		case "PPid":
			st.ppid = atou(f, 0)
		case "Uid":
			st.uid, st.fsuid = atou(f, 0), atou(f, 3)
		}
	}
	return st
}

func atou(f []string, i int) uint32 {
	if i >= len(f) {
		return 0
	}
	n, _ := strconv.ParseUint(f[i], 10, 32)
	return uint32(n)
}

func exeOf(pid int32) string {
	p, err := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	if err != nil {
		return ""
	}
	return p
}

// hasTTY: field 7 of /proc/<tid>/stat, after the parenthesised comm.
func hasTTY(tid int32) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(tid)) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 4 && f[4] != "0"
}

// Syscall numbers (x86-64) of the opens and execs whose arguments we read.
const (
	sysOpen           = 2
	sysExecve         = 59
	sysCreat          = 85
	sysOpenat         = 257
	sysOpenByHandleAt = 304
	sysExecveat       = 322
	sysOpenat2        = 437
)

// call is the syscall a thread waits in, from /proc/<tid>/syscall. A
// fanotify permission event carries neither the open flags nor the exec
// arguments, but the thread waits inside the syscall until it is answered,
// so its number and arguments are there. ok is false when the thread is in
// no syscall the file shows (a kernel-internal open, an io_uring worker).
type call struct {
	tid  int32
	nr   int
	args [6]uint64
	ok   bool
}

func readCall(tid int32) call {
	c := call{tid: tid}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(tid)) + "/syscall")
	if err != nil {
		return c
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return c
	}
	if c.nr, err = strconv.Atoi(f[0]); err != nil || c.nr < 0 {
		return c
	}
	for i := range c.args {
		c.args[i], _ = strconv.ParseUint(strings.TrimPrefix(f[i+1], "0x"), 16, 64)
	}
	c.ok = true
	return c
}

// openFlags are the flags of the open the thread waits in; ok is false
// when they cannot be told.
func (c call) openFlags() (flags uint64, ok bool) {
	if !c.ok {
		return 0, false
	}
	switch c.nr {
	case sysOpen:
		return c.args[1], true
	case sysOpenat, sysOpenByHandleAt:
		return c.args[2], true
	case sysCreat:
		return unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, true
	case sysOpenat2:
		// struct open_how starts with the flags
		var buf [8]byte
		if readRemote(c.tid, uintptr(c.args[2]), buf[:]) != 8 {
			return 0, false
		}
		return binary.NativeEndian.Uint64(buf[:]), true
	}
	return 0, false
}

// file is the open the thread waits in as an event's File. When its flags
// cannot be told, the kind is unknown, which File.Write counts as a write:
// readOnly rules then decide as for a write.
func (c call) file() event.File {
	flags, ok := c.openFlags()
	if !ok {
		return event.File{}
	}
	return event.File{Op: event.FileOpen, Flags: uint32(flags)}
}

// openData is the Data of a file event in the monitor's form (reference
// §2.10): "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_TRUNC".
func (c call) openData() string {
	if !c.ok {
		return ""
	}
	s := "syscall=" + monitor.SyscallName(uint32(c.nr))
	flags, ok := c.openFlags()
	switch {
	case !ok:
	case c.nr == sysOpen || c.nr == sysCreat:
		s += " flags=" + monitor.OpenFlags(flags)
	default:
		s += " fd=" + strconv.Itoa(int(int32(uint32(c.args[0])))) + " flags=" + monitor.OpenFlags(flags)
	}
	return s
}

// execData is the Data of an exec event in the monitor's form:
// "syscall=SYS_EXECVE", "syscall=SYS_EXECVEAT fd=3 flag=AT_EMPTY_PATH".
func (c call) execData() string {
	switch {
	case c.ok && c.nr == sysExecve:
		return "syscall=SYS_EXECVE"
	case c.ok && c.nr == sysExecveat:
		return "syscall=SYS_EXECVEAT fd=" + strconv.Itoa(int(int32(uint32(c.args[0])))) + " flag=" + monitor.ExecveatFlags(c.args[4])
	}
	return "syscall=SYS_EXECVE"
}

// argsMax bounds the argv bytes read, as the monitor's kernel copy does
// (ARGS_MAX in monitor.bpf.c); a longer argv ends in "...", as upstream
// shows it.
const argsMax = 1024

// execArgs are argv[1:] of the exec the thread waits in, read from its
// memory: the exec is not past its point of no return, so the old image
// and its argv are still there.
func (c call) execArgs() []string {
	var argv uint64
	switch {
	case c.ok && c.nr == sysExecve:
		argv = c.args[1]
	case c.ok && c.nr == sysExecveat:
		argv = c.args[2]
	default:
		return nil
	}
	if argv == 0 {
		return nil
	}
	var args []string
	budget := argsMax
	for i := 0; ; i++ {
		var ptr [8]byte
		if readRemote(c.tid, uintptr(argv)+uintptr(8*i), ptr[:]) != 8 {
			break
		}
		p := binary.NativeEndian.Uint64(ptr[:])
		if p == 0 {
			break
		}
		if budget <= 0 {
			args = append(args, "...")
			break
		}
		s, whole := readString(c.tid, uintptr(p), budget)
		budget -= len(s) + 1
		args = append(args, s)
		if !whole {
			args = append(args, "...")
			break
		}
	}
	if len(args) > 0 {
		args = args[1:]
	}
	return args
}

// readRemote reads another process's memory; it returns the bytes read.
func readRemote(tid int32, addr uintptr, buf []byte) int {
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: addr, Len: len(buf)}}
	n, err := unix.ProcessVMReadv(int(tid), local, remote, 0)
	if err != nil {
		return 0
	}
	return n
}

// readString reads a NUL-terminated string of at most max bytes, a page at
// a time so that a string ending before an unmapped page is read whole.
// whole is false when it was cut at max or could not be read to its end.
func readString(tid int32, addr uintptr, max int) (string, bool) {
	var out []byte
	var buf [4096]byte
	for len(out) < max {
		n := 4096 - int(addr%4096)
		if n > max-len(out) {
			n = max - len(out)
		}
		got := readRemote(tid, addr, buf[:n])
		if got == 0 {
			return string(out), false
		}
		if i := bytes.IndexByte(buf[:got], 0); i >= 0 {
			return string(append(out, buf[:i]...)), true
		}
		out = append(out, buf[:got]...)
		addr += uintptr(got)
	}
	return string(out), false
}

// commandLine is the monitor's exec Resource: the program and its arguments.
func commandLine(exe string, args []string) string {
	if len(args) == 0 {
		return exe
	}
	return exe + " " + strings.Join(args, " ")
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point, fstype string
	// dev is the filesystem's device (major:minor, as st_dev), root the
	// directory of that filesystem mounted at point ("/" for all of it).
	dev  uint64
	root string
	// id is the mount's ID (as statx's STATX_MNT_ID gives it).
	id uint64
}

// pseudoFS are filesystems fanotify cannot or should not mediate: marking
// procfs would also hand the agent its own /proc reads.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devpts": true, "mqueue": true,
	"debugfs": true, "tracefs": true, "securityfs": true, "bpf": true, "pstore": true, "configfs": true,
	"fusectl": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true, "efivarfs": true,
	"nsfs": true, "rpc_pipefs": true, "selinuxfs": true,
}

// stacked filesystems open files of other filesystems to serve their
// own: overlayfs (and shiftfs, ecryptfs) opens its layers' files in the
// kernel, a FUSE filesystem asks its daemon, which opens what it likes.
// The tier never marks one. To hand us an event the kernel opens the
// event's file for the reader, in the reader's own read(2); for a stacked
// file that open opens the backing file, and when the backing filesystem is
// marked too (the root filesystem holding /var/lib/docker, say), that is a
// permission event only the reader, blocked in that very read, could
// answer: every open through the stacked filesystem then hangs, and with
// it the host (seen on 6.18 with overlayfs: TestStackedNeverMarked). FUSE
// has the same cycle through its daemon on every kernel. fapolicyd marks
// only a list of plain filesystems for the same reason.
func stacked(fstype string) bool {
	switch fstype {
	case "overlay", "shiftfs", "ecryptfs", "fuse", "fuseblk":
		return true
	}
	return strings.HasPrefix(fstype, "fuse.")
}

// unmarkable is why the tier cannot mark the filesystem of m, or "".
func unmarkable(m mount) string {
	switch {
	case pseudoFS[m.fstype]:
		return "which fanotify does not mediate"
	case stacked(m.fstype):
		return "which the fanotify tier never marks: it opens files of other filesystems to serve its own, and marking both would deadlock the tier's reader (its files are decided only where the kernel reports the opens of the files beneath it)"
	}
	return ""
}

// unseenMounts says why some opens may escape the tier on this host, or "".
// A filesystem mounted after the agent started has no mark, and the tier
// never marks a stacked one (stacked); from 6.12 on the kernel reports an
// overlay's opens at its layers, where the marks and the identities above
// decide them, but older kernels do not (6.1 does not). Where any user may
// make a user namespace (Debian's default; overlayfs may be mounted in one
// since 5.11, FUSE anywhere through fusermount), such a user can then read
// files, or run programs, without this tier seeing it. clone and max are
// kernel.unprivileged_userns_clone (absent upstream: "") and
// user.max_user_namespaces.
func unseenMounts(release, clone, maxNS string) string {
	if kernelfs.ReleaseAtLeast(release, 6, 12) || clone == "0" || maxNS == "0" {
		return ""
	}
	return "on kernel " + release + " the opens through an overlayfs or FUSE mount made after the agent started are not seen, and unprivileged users may make user namespaces, where they can mount one over files the rules protect: on such hosts use BPF-LSM or AppArmor, or set user.max_user_namespaces=0"
}

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f, f.Name())
}

// parseMountinfo reads a mountinfo table ("36 35 98:0 /mnt1 /mnt2 rw
// shared:1 - ext3 /dev/root rw"). A line it cannot read is an error: the
// allow cache must know every mount of every filesystem.
func parseMountinfo(r io.Reader, name string) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		// Optional fields (tag:value, any number) end at "-"; the mount
		// point itself may be named "-".
		sep := -1
		if len(fields) > 6 {
			if i := slices.Index(fields[6:], "-"); i >= 0 {
				sep = 6 + i
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			return nil, fmt.Errorf("%s line %d: not a mountinfo line: %q", name, n, sc.Text())
		}
		maj, mnr, ok := strings.Cut(fields[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(mnr, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s line %d: field 3 (major:minor) %q is not a device number", name, n, fields[2])
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: field 1 (mount ID) %q is not a number", name, n, fields[0])
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1], dev: unix.Mkdev(uint32(ma), uint32(mi)), root: unescapeMount(fields[3]), id: id})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// singleMounts are the filesystems (st_dev) mounted exactly once, whole
// (mount root "/"), each with the ID of that mount: an inode there has one
// path through the mount table. One mounted twice, or in part (a bind
// mount of a directory), may be reached under another name, which the
// allow cache cannot see.
func singleMounts(mounts []mount) map[uint64]uint64 {
	n := map[uint64]int{}
	whole := map[uint64]bool{}
	ids := map[uint64]uint64{}
	for _, m := range mounts {
		n[m.dev]++
		whole[m.dev] = m.root == "/"
		ids[m.dev] = m.id
	}
	once := map[uint64]uint64{}
	for dev, k := range n {
		if k == 1 && whole[dev] {
			once[dev] = ids[dev]
		}
	}
	return once
}

// mountOf is the mount a path is on: the longest mount point above it.
func mountOf(mounts []mount, p string) mount {
	best := mount{point: "/"}
	for _, m := range mounts {
		if under(p, m.point) && len(m.point) >= len(best.point) {
			best = m
		}
	}
	return best
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// unescapeMount undoes the octal escapes of /proc mount tables ("\040" for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fillProc completes an event's process fields from /proc, for verdicts
// whose producer only knows the pid.
func fillProc(ev *event.Event) {
	st := readStatus(int32(ev.HostPID))
	if !st.ok {
		return
	}
	ev.HostPPID, ev.PPID = st.ppid, st.ppid
	if ev.Comm == "" {
		ev.Comm = st.name
	}
	if ev.Exe == "" {
		ev.Exe = exeOf(int32(ev.HostPID))
	}
	if ev.ParentExe == "" && st.ppid > 0 {
		ev.ParentExe = exeOf(int32(st.ppid))
	}
}

// lazyFacts finds out the facts of a permission event only when a rule
// asks for them, once each.
type lazyFacts struct {
	tid   int32
	fd    int
	call  func() call // the syscall the thread waits in
	write func() bool
	owner func() bool
	tty   func() bool
}

func newFacts(tid int32, fd int) *lazyFacts {
	f := &lazyFacts{tid: tid, fd: fd}
	f.call = sync.OnceValue(func() call { return readCall(tid) })
	f.write = sync.OnceValue(func() bool {
		c := f.call()
		if c.ok && (c.nr == sysExecve || c.nr == sysExecveat) {
			return false // the exec's open of the program or its interpreter reads it
		}
		return c.file().Write()
	})
	f.owner = sync.OnceValue(func() bool {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			return false
		}
		ts := readStatus(tid)
		return ts.ok && ts.fsuid == st.Uid
	})
	f.tty = sync.OnceValue(func() bool { return hasTTY(tid) })
	return f
}

func (f *lazyFacts) Write() bool { return f.write() }
func (f *lazyFacts) Owner() bool { return f.owner() }
func (f *lazyFacts) TTY() bool   { return f.tty() }
