package fanotify

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
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

// Syscall numbers (x86-64) of the opens whose flags we can read.
const (
	sysOpen           = 2
	sysCreat          = 85
	sysOpenat         = 257
	sysOpenByHandleAt = 304
	sysOpenat2        = 437
)

// openForWrite says whether the open a thread is blocked in asks for write
// access. A fanotify permission event does not carry the open flags, but
// the thread waits inside the syscall, so /proc/<tid>/syscall shows them.
// When it cannot be told (io_uring, a kernel-internal open), the open counts
// as a write: readOnly rules then decide as for a write.
func openForWrite(tid int32) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(tid)) + "/syscall")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	if len(f) < 5 {
		return true
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return true
	}
	arg := func(i int) uint64 {
		v, _ := strconv.ParseUint(strings.TrimPrefix(f[i], "0x"), 16, 64)
		return v
	}
	var flags uint64
	switch nr {
	case sysOpen:
		flags = arg(2)
	case sysOpenat, sysOpenByHandleAt:
		flags = arg(3)
	case sysCreat:
		return true
	case sysOpenat2:
		// struct open_how starts with the flags
		var buf [8]byte
		local := []unix.Iovec{{Base: &buf[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: uintptr(arg(3)), Len: 8}}
		if n, err := unix.ProcessVMReadv(int(tid), local, remote, 0); err != nil || n != 8 {
			return true
		}
		for i := 7; i >= 0; i-- {
			flags = flags<<8 | uint64(buf[i])
		}
	default:
		return true
	}
	return flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC|unix.O_CREAT) != 0
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point, fstype string
}

// pseudoFS are filesystems fanotify cannot or should not mediate: marking
// procfs would also hand the agent its own /proc reads.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devpts": true, "mqueue": true,
	"debugfs": true, "tracefs": true, "securityfs": true, "bpf": true, "pstore": true, "configfs": true,
	"fusectl": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true, "efivarfs": true,
	"nsfs": true, "rpc_pipefs": true, "selinuxfs": true,
}

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return out, sc.Err()
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
	write func() bool
	owner func() bool
	tty   func() bool
}

func newFacts(tid int32, fd int) *lazyFacts {
	f := &lazyFacts{tid: tid, fd: fd}
	f.write = sync.OnceValue(func() bool { return openForWrite(tid) })
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
