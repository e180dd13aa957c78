package monitor

import (
	"encoding/binary"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/proctable"
)

// The Go decoder reads the header at fixed offsets; they must match the C
// struct as bpf2go saw it.
func TestRecordLayout(t *testing.T) {
	var r monitorBPFRecord
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"ts", unsafe.Offsetof(r.Ts), offTS},
		{"cgroup_id", unsafe.Offsetof(r.CgroupId), offCgroupID},
		{"retval", unsafe.Offsetof(r.Retval), offRetval},
		{"args", unsafe.Offsetof(r.Args), offArgs},
		{"kind", unsafe.Offsetof(r.Kind), offKind},
		{"nr", unsafe.Offsetof(r.Nr), offNr},
		{"host_pid", unsafe.Offsetof(r.HostPid), offHostPID},
		{"host_ppid", unsafe.Offsetof(r.HostPpid), offHostPPID},
		{"pid", unsafe.Offsetof(r.Pid), offPID},
		{"ppid", unsafe.Offsetof(r.Ppid), offPPID},
		{"uid", unsafe.Offsetof(r.Uid), offUID},
		{"pid_ns", unsafe.Offsetof(r.PidNs), offPidNS},
		{"mnt_ns", unsafe.Offsetof(r.MntNs), offMntNS},
		{"aux", unsafe.Offsetof(r.Aux), offAux},
		{"data_len", unsafe.Offsetof(r.DataLen), offDataLen},
		{"flags", unsafe.Offsetof(r.Flags), offFlags},
		{"comm", unsafe.Offsetof(r.Comm), offComm},
		{"data", unsafe.Offsetof(r.Data), headerSize},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("offset of %s: C %d, Go decoder %d", tt.name, tt.got, tt.want)
		}
	}
}

// rawRecord builds a ring-buffer record as the kernel would.
type rawRecord struct {
	kind, nr                    uint32
	retval                      int64
	args                        [6]uint64
	hostPID, hostPPID, pid, uid uint32
	flags                       uint16
	comm                        string
	fields                      []string
}

func (r rawRecord) bytes() []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint64(b[offTS:], 1_000_000)
	le.PutUint64(b[offCgroupID:], 1)
	le.PutUint64(b[offRetval:], uint64(r.retval))
	for i, a := range r.args {
		le.PutUint64(b[offArgs+8*i:], a)
	}
	le.PutUint32(b[offKind:], r.kind)
	le.PutUint32(b[offNr:], r.nr)
	le.PutUint32(b[offHostPID:], r.hostPID)
	le.PutUint32(b[offHostPPID:], r.hostPPID)
	le.PutUint32(b[offPID:], r.pid)
	le.PutUint32(b[offPPID:], r.hostPPID)
	le.PutUint32(b[offUID:], r.uid)
	le.PutUint32(b[offPidNS:], 4026531836)
	le.PutUint32(b[offMntNS:], 4026531840)
	le.PutUint16(b[offFlags:], r.flags)
	copy(b[offComm:offComm+15], r.comm)
	for _, f := range r.fields {
		b = le.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	le.PutUint16(b[offDataLen:], uint16(len(b)-headerSize))
	return b
}

func newTestDecoder() *decoder {
	return &decoder{
		table:      proctable.New(proctable.Options{}),
		visibility: ScopeAll,
	}
}

func TestDecodeExecForkExit(t *testing.T) {
	d := newTestDecoder()
	var ev event.Event

	// bash (100) runs "ls -la /tmp" as 101 after forking it.
	d.table.Exec(proctable.Process{HostPID: 100, HostPPID: 1, PID: 100, PPID: 1, Exe: "/usr/bin/bash"})
	emit, err := d.decode(rawRecord{kind: recFork, hostPID: 101, hostPPID: 100, pid: 101}.bytes(), &ev)
	if err != nil || emit {
		t.Fatalf("fork: emit %v err %v", emit, err)
	}
	exec := rawRecord{
		kind: recExec, nr: sysExecve, hostPID: 101, hostPPID: 100, pid: 101, uid: 1000, comm: "ls",
		fields: []string{"ls\x00bin\x00usr\x00", "/bin/ls", "ls\x00-la\x00/tmp\x00", "user\x00home\x00", "pts3"},
	}
	emit, err = d.decode(exec.bytes(), &ev)
	if err != nil || !emit {
		t.Fatalf("exec: emit %v err %v", emit, err)
	}
	want := event.Event{
		Time: ev.Time, HostPID: 101, HostPPID: 100, PID: 101, PPID: 100, UID: 1000, Comm: "ls",
		CgroupID: 1, PidNS: 4026531836, MntNS: 4026531840,
		Exe: "/usr/bin/ls", ParentExe: "/usr/bin/bash", TTY: "pts3", Cwd: "/home/user",
		Args: []string{"-la", "/tmp"}, Operation: event.OpProcess, Syscall: "SYS_EXECVE",
		Resource: "/usr/bin/ls -la /tmp", Data: "syscall=SYS_EXECVE",
	}
	if !equalEvent(ev, want) {
		t.Errorf("exec event\n got %+v\nwant %+v", ev, want)
	}

	// A file event of 101 is attributed to ls, with its command line.
	openRec := rawRecord{
		kind: recSyscall, nr: sysOpenat, retval: -int64(unix.EACCES), hostPID: 101, hostPPID: 100, comm: "ls",
		args:   [6]uint64{uint64(uint32(0xffffff9c)), 0, unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC},
		fields: []string{"/tmp"},
	}
	if _, err := d.decode(openRec.bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Resource != "/tmp" || ev.Data != "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY|O_DIRECTORY|O_CLOEXEC" ||
		ev.Exe != "/usr/bin/ls" || ev.ParentExe != "/usr/bin/bash" || ev.Retval != -13 || ev.Cwd != "/home/user" {
		t.Errorf("open event %+v", ev)
	}
	if a := d.table.Describe(&ev); a.Source != "/usr/bin/ls -la /tmp" || a.Cwd != "/home/user/" || a.TTY != "pts3" {
		t.Errorf("Describe = %+v", a)
	}

	// After exit the process still resolves.
	if _, err := d.decode(rawRecord{kind: recExit, hostPID: 101, hostPPID: 100}.bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	if p, ok := d.table.Lookup(101); !ok || p.Exe != "/usr/bin/ls" {
		t.Errorf("exited process: %+v %v", p, ok)
	}
}

func equalEvent(a, b event.Event) bool {
	return reflect.DeepEqual(a, b)
}

func TestDecodeSyscalls(t *testing.T) {
	d := newTestDecoder()
	d.table.Exec(proctable.Process{HostPID: 7, HostPPID: 1, Exe: "/usr/bin/curl", Args: []string{"http://x"}, Cwd: "/srv"})
	d.table.Exec(proctable.Process{HostPID: 9, HostPPID: 1, Exe: "/usr/bin/sleep"})
	tests := []struct {
		name               string
		rec                rawRecord
		op, resource, data string
		exe                string
	}{
		{"connect", rawRecord{nr: sysConnect, args: [6]uint64{3}, fields: []string{string(sockaddrIn(80, [4]byte{1, 2, 3, 4}))}},
			event.OpNetwork, "sa_family=AF_INET sin_port=80 sin_addr=1.2.3.4", "syscall=SYS_CONNECT fd=3", "/usr/bin/curl"},
		{"listen", rawRecord{nr: sysListen, args: [6]uint64{5, 10}}, event.OpNetwork, "", "syscall=SYS_LISTEN fd=5", "/usr/bin/curl"},
		{"socket", rawRecord{nr: sysSocket, args: [6]uint64{unix.AF_INET6, unix.SOCK_STREAM, 6}}, event.OpNetwork,
			"domain=AF_INET6 type=SOCK_STREAM protocol=TCP", "syscall=SYS_SOCKET", "/usr/bin/curl"},
		// Relative paths: what the kernel resolved while the syscall ran
		// wins over the process's cwd (/srv) when the event is decoded.
		{"relative open: the opened file's path", rawRecord{nr: sysOpen, args: [6]uint64{0, unix.O_WRONLY}, flags: flagPathFile,
			fields: []string{"out/log.txt", "log.txt\x00out\x00data\x00"}},
			event.OpFile, "/data/out/log.txt", "syscall=SYS_OPEN flags=O_WRONLY", "/usr/bin/curl"},
		{"relative failed open: the cwd at the time", rawRecord{nr: sysOpenat, retval: -2, args: [6]uint64{uint64(uint32(0xffffff9c)), 0, 0},
			flags: flagPathBase, fields: []string{"../a.yaml", "files\x00home\x00"}},
			event.OpFile, "/home/a.yaml", "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", "/usr/bin/curl"},
		{"relative unlinkat: the dirfd", rawRecord{nr: sysUnlinkat, args: [6]uint64{5, 0, 0}, flags: flagPathBase,
			fields: []string{"x", "d\x00tmp\x00"}},
			event.OpFile, "/tmp/d/x", "syscall=SYS_UNLINKAT flags=", "/usr/bin/curl"},
		{"fchownat AT_EMPTY_PATH: the fd itself", rawRecord{nr: sysFchownat, args: [6]uint64{5, 0, 0, 0, 0x1000}, flags: flagPathBase,
			fields: []string{"", "f\x00tmp\x00"}},
			event.OpFile, "/tmp/f", "syscall=SYS_FCHOWNAT userid=0 group=0 mode=4096", "/usr/bin/curl"},
		{"relative path, bad dirfd: left as given", rawRecord{nr: sysOpenat, retval: -9, args: [6]uint64{77, 0, 0}, fields: []string{"x"}},
			event.OpFile, "x", "syscall=SYS_OPENAT fd=77 flags=O_RDONLY", "/usr/bin/curl"},
		{"unlinkat", rawRecord{nr: sysUnlinkat, args: [6]uint64{uint64(uint32(0xffffff9c)), 0, unix.AT_REMOVEDIR}, fields: []string{"/srv/d"}},
			event.OpFile, "/srv/d", "syscall=SYS_UNLINKAT flags=AT_REMOVEDIR", "/usr/bin/curl"},
		{"setuid", rawRecord{nr: sysSetuid, retval: -1, args: [6]uint64{0}}, event.OpSyscall, "", "syscall=SYS_SETUID userid=0", "/usr/bin/curl"},
		{"ptrace", rawRecord{nr: sysPtrace, args: [6]uint64{16, 9}}, event.OpProcess, "/usr/bin/sleep",
			"syscall=SYS_PTRACE request=PTRACE_ATTACH pid=9 process=/usr/bin/sleep", "/usr/bin/curl"},
		{"mount", rawRecord{nr: sysMount, args: [6]uint64{0, 0, 0, 0}, fields: []string{"tmpfs", "/mnt", "tmpfs", "size=1m"}},
			event.OpSyscall, "", "syscall=SYS_MOUNT source=tmpfs target=/mnt filesystem=tmpfs mountflag=0 data=size=1m", "/usr/bin/curl"},
		{"failed execve", rawRecord{nr: sysExecve, retval: -13, flags: flagPathBase, fields: []string{"./tool", "./tool\x00--flag\x00", "bin\x00opt\x00"}},
			event.OpProcess, "/opt/bin/tool --flag", "syscall=SYS_EXECVE", "/opt/bin/tool"},
	}
	// A relative path that resolves into /proc is dropped like an absolute one.
	var ev event.Event
	rec := rawRecord{kind: recSyscall, nr: sysOpen, hostPID: 7, flags: flagPathFile, fields: []string{"self/status", "status\x00self\x00proc\x00"}}
	if emit, err := d.decode(rec.bytes(), &ev); err != nil || emit {
		t.Errorf("relative /proc open: emit %v err %v, want dropped", emit, err)
	}
	for _, tt := range tests {
		tt.rec.kind = recSyscall
		tt.rec.hostPID, tt.rec.hostPPID = 7, 1
		var ev event.Event
		emit, err := d.decode(tt.rec.bytes(), &ev)
		if err != nil || !emit {
			t.Errorf("%s: emit %v err %v", tt.name, emit, err)
			continue
		}
		if ev.Operation != tt.op || ev.Resource != tt.resource || ev.Data != tt.data || ev.Exe != tt.exe || ev.Retval != tt.rec.retval {
			t.Errorf("%s: got %s %q %q exe %q retval %d\nwant %s %q %q exe %q", tt.name,
				ev.Operation, ev.Resource, ev.Data, ev.Exe, ev.Retval, tt.op, tt.resource, tt.data, tt.exe)
		}
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	d := newTestDecoder()
	var ev event.Event
	good := rawRecord{kind: recSyscall, nr: sysOpen, fields: []string{"/etc/passwd"}}.bytes()
	bad := map[string][]byte{
		"short header":        good[:headerSize-1],
		"data past the end":   good[:len(good)-3],
		"unknown kind":        rawRecord{kind: 99}.bytes(),
		"untraced syscall":    rawRecord{kind: recSyscall, nr: 1}.bytes(),
		"field past data_len": func() []byte { b := slices.Clone(good); b[headerSize] = 0xff; return b }(),
	}
	for name, raw := range bad {
		if _, err := d.decode(raw, &ev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(rawRecord{kind: recSyscall, nr: sysOpen, fields: []string{"/etc/passwd"}}.bytes())
	f.Add(rawRecord{kind: recExec, fields: []string{"a\x00b\x00", "x", "x\x00y", "", ""}}.bytes())
	f.Add(rawRecord{kind: recSyscall, nr: sysOpenat, flags: flagPathFile, fields: []string{"..", "self\x00proc\x00"}}.bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := newTestDecoder()
		var ev event.Event
		d.decode(raw, &ev) // must not panic

		// Options.Unneeded is asked about exactly the syscall records
		// that make an event (makesEvent reads the same hostile bytes).
		asked := false
		d = newTestDecoder()
		d.unneeded = func(*event.Event) bool { asked = true; return false }
		out, err := d.decodeRecord(raw, &ev)
		d.endBatch()
		if err == nil && d.rec.kind == recSyscall && asked != (out == outEvent) {
			t.Errorf("asked %v, outcome %d", asked, out)
		}
	})
}

// TestDecodeFields: the decoder fills the structured fields the matcher
// decides from, from the raw arguments, beside the display strings.
func TestDecodeFields(t *testing.T) {
	d := newTestDecoder()
	atCWD := uint64(uint32(0xffffff9c))
	tests := []struct {
		name   string
		rec    rawRecord
		path   string
		file   event.File
		socket event.Socket
	}{
		{"open read", rawRecord{nr: sysOpen, args: [6]uint64{0, unix.O_RDONLY | unix.O_CLOEXEC}, fields: []string{"/etc/hosts"}},
			"/etc/hosts", event.File{Op: event.FileOpen, Flags: unix.O_RDONLY | unix.O_CLOEXEC}, event.Socket{}},
		{"openat write", rawRecord{nr: sysOpenat, args: [6]uint64{atCWD, 0, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC}, fields: []string{"/etc/hosts"}},
			"/etc/hosts", event.File{Op: event.FileOpen, Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC}, event.Socket{}},
		{"openat2 directory", rawRecord{nr: sysOpenat2, args: [6]uint64{atCWD, 0, unix.O_RDONLY | unix.O_DIRECTORY}, fields: []string{"/srv d"}},
			"/srv d", event.File{Op: event.FileOpen, Flags: unix.O_DIRECTORY, Dir: true}, event.Socket{}},
		{"O_TMPFILE is no directory", rawRecord{nr: sysOpenat, args: [6]uint64{atCWD, 0, unix.O_RDWR | unix.O_TMPFILE}, fields: []string{"/tmp"}},
			"/tmp", event.File{Op: event.FileOpen, Flags: unix.O_RDWR | unix.O_TMPFILE}, event.Socket{}},
		{"unlinkat a file", rawRecord{nr: sysUnlinkat, args: [6]uint64{atCWD, 0, 0}, fields: []string{"/tmp/f"}},
			"/tmp/f", event.File{Op: event.FileChange}, event.Socket{}},
		{"unlinkat AT_REMOVEDIR", rawRecord{nr: sysUnlinkat, args: [6]uint64{atCWD, 0, unix.AT_REMOVEDIR}, fields: []string{"/tmp/d"}},
			"/tmp/d", event.File{Op: event.FileChange, Dir: true}, event.Socket{}},
		{"rmdir", rawRecord{nr: sysRmdir, fields: []string{"/tmp/d"}}, "/tmp/d", event.File{Op: event.FileChange, Dir: true}, event.Socket{}},
		{"mkdirat", rawRecord{nr: sysMkdirat, args: [6]uint64{atCWD, 0, 0o755}, fields: []string{"/tmp/d"}},
			"/tmp/d", event.File{Op: event.FileChange, Dir: true}, event.Socket{}},
		{"chmod", rawRecord{nr: sysChmod, args: [6]uint64{0, 0o644}, fields: []string{"/tmp/f"}}, "/tmp/f", event.File{Op: event.FileChange}, event.Socket{}},
		{"socket", rawRecord{nr: sysSocket, args: [6]uint64{unix.AF_INET6, unix.SOCK_DGRAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, 0}},
			"", event.File{}, event.Socket{Family: unix.AF_INET6, Type: unix.SOCK_DGRAM}},
		{"socket, protocol in the high bits", rawRecord{nr: sysSocket, args: [6]uint64{unix.AF_INET, unix.SOCK_RAW, 1<<32 | unix.IPPROTO_ICMP}},
			"", event.File{}, event.Socket{Family: unix.AF_INET, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP}},
		{"connect tells no socket", rawRecord{nr: sysConnect, args: [6]uint64{3}, fields: []string{string(sockaddrIn(80, [4]byte{1, 2, 3, 4}))}},
			"", event.File{}, event.Socket{}},
	}
	for _, tt := range tests {
		tt.rec.kind = recSyscall
		var ev event.Event
		if emit, err := d.decode(tt.rec.bytes(), &ev); err != nil || !emit {
			t.Errorf("%s: emit %v err %v", tt.name, emit, err)
			continue
		}
		if ev.Path != tt.path || ev.File != tt.file || ev.Socket != tt.socket {
			t.Errorf("%s: got path %q %+v %+v, want %q %+v %+v", tt.name, ev.Path, ev.File, ev.Socket, tt.path, tt.file, tt.socket)
		}
	}
}

// openData's memo gives what syscallData builds, for every open kind, with
// the memo filling, full, and past full.
func TestOpenDataIsSyscallData(t *testing.T) {
	var d decoder
	flags := []uint64{unix.O_RDONLY, unix.O_RDONLY | unix.O_CLOEXEC, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, unix.O_RDWR | unix.O_TMPFILE, 1 << 40}
	for round := 0; round < 2; round++ {
		for _, nr := range []uint32{sysOpen, sysOpenat, sysOpenat2, sysMkdirat} {
			for fd := uint64(0); fd < maxOpenData/2; fd++ {
				for _, f := range flags {
					r := &record{nr: nr}
					r.args[0], r.args[1], r.args[2] = fd|0xffffffff00000000*(fd&1), f, f
					if got, want := d.openData(r), syscallData(nr, &r.args, nil, ""); got != want {
						t.Fatalf("round %d nr %d fd %d flags %#x: openData %q, want %q", round, nr, fd, f, got, want)
					}
				}
			}
		}
	}
	if len(d.opens) != maxOpenData {
		t.Errorf("memo holds %d, want its bound %d", len(d.opens), maxOpenData)
	}
}

// TestExecText pins what an exec record's text decodes to, built in one
// string: the parts must be what splitting argv, reversing the paths and
// joining the command line give, argv's edge cases included.
func TestExecText(t *testing.T) {
	long := strings.Repeat("a", argsMax-3) + "\x00bc" // argv cut at the kernel's limit
	// More arguments than execText keeps the ends of (cuts), one empty and
	// one with spaces past them.
	var many []string
	for i := range 24 {
		many = append(many, "a"+strconv.Itoa(i))
	}
	many[18], many[20] = "", "x  y"
	manyArgv := "p\x00" + strings.Join(many, "\x00") + "\x00"
	manyCmd := "/p " + strings.Join(many, " ")
	tests := []struct {
		name                          string
		exe, filename, argv, cwd, tty string
		flags                         uint16
		want                          execText
	}{
		{"command", "ls\x00bin\x00usr\x00", "/bin/ls", "ls\x00-la\x00/tmp\x00", "user\x00home\x00", "pts3", 0,
			execText{exe: "/usr/bin/ls", cmdline: "/usr/bin/ls -la /tmp", cwd: "/home/user", tty: "pts3", args: []string{"-la", "/tmp"}}},
		{"argv[0] alone: no argument, args empty not nil", "true\x00bin\x00", "/bin/true", "true\x00", "", "", 0,
			execText{exe: "/bin/true", cmdline: "/bin/true", cwd: "/", args: []string{}}},
		{"no argv: args nil", "true\x00bin\x00", "/bin/true", "", "", "", 0,
			execText{exe: "/bin/true", cmdline: "/bin/true", cwd: "/"}},
		{"empty and spaced arguments", "sh\x00bin\x00", "/bin/sh", "sh\x00-c\x00\x00echo a  b\x00\x00\x00", "tmp\x00", "", 0,
			execText{exe: "/bin/sh", cmdline: "/bin/sh -c  echo a  b", cwd: "/tmp", args: []string{"-c", "", "echo a  b"}}},
		{"no exe path: file name against the cwd", "", "./run", "run\x00x\x00", "srv\x00", "", 0,
			execText{exe: "/srv/run", cmdline: "/srv/run x", cwd: "/srv", args: []string{"x"}}},
		{"no exe path, absolute file name", "", "/opt/run", "run\x00", "", "tty1", 0,
			execText{exe: "/opt/run", cmdline: "/opt/run", cwd: "/", tty: "tty1", args: []string{}}},
		{"truncated argv", "a\x00", "/a", long, "", "", flagTruncated,
			execText{exe: "/a", cmdline: "/a bc ...", cwd: "/", args: []string{"bc", "..."}}},
		{"truncated argv[0] alone", "a\x00", "/a", strings.Repeat("a", argsMax), "", "", flagTruncated,
			execText{exe: "/a", cmdline: "/a ...", cwd: "/", args: []string{"..."}}},
		{"more arguments than cuts", "p\x00", "/p", manyArgv, "", "", 0,
			execText{exe: "/p", cmdline: manyCmd, cwd: "/", args: many}},
		{"more arguments than cuts, truncated", "p\x00", "/p", manyArgv + strings.Repeat("b", argsMax-len(manyArgv)), "", "", flagTruncated,
			execText{exe: "/p", cmdline: manyCmd + " " + strings.Repeat("b", argsMax-len(manyArgv)) + " ...", cwd: "/",
				args: append(slices.Clone(many), strings.Repeat("b", argsMax-len(manyArgv)), "...")}},
		{"truncated flag, argv under the limit: a path was cut", "a\x00", "/a", "a\x00b\x00", "", "", flagTruncated,
			execText{exe: "/a", cmdline: "/a b", cwd: "/", args: []string{"b"}}},
	}
	var d decoder
	for _, tt := range tests {
		raw := rawRecord{kind: recExec, nr: sysExecve, flags: tt.flags, fields: []string{tt.exe, tt.filename, tt.argv, tt.cwd, tt.tty}}.bytes()
		if err := parseRecord(raw, &d.rec); err != nil {
			t.Fatal(err)
		}
		got := d.execText(&d.rec)
		if wantSlash := strings.TrimSuffix(tt.want.cwd, "/") + "/"; got.cwdSlash != wantSlash {
			t.Errorf("%s: cwd with a slash %q, want %q", tt.name, got.cwdSlash, wantSlash)
		}
		if got.exe != tt.want.exe || got.cmdline != tt.want.cmdline || got.cwd != tt.want.cwd || got.tty != tt.want.tty ||
			!slices.Equal(got.args, tt.want.args) || (got.args == nil) != (tt.want.args == nil) {
			t.Errorf("%s:\n got %#v\nwant %#v", tt.name, got, tt.want)
		}
		// The same as the parts decoded one by one.
		args := splitArgs(d.rec.field(2), tt.flags&flagTruncated != 0 && len(tt.argv) >= argsMax)
		if len(args) > 0 {
			args = args[1:]
		}
		if !slices.Equal(got.args, args) || (got.args == nil) != (args == nil) || got.cmdline != commandLine(got.exe, args) {
			t.Errorf("%s: args %#v, command line %q; splitArgs %#v", tt.name, got.args, got.cmdline, args)
		}
	}
}

// commOf's memo gives each record's own comm, with the memo filling, full
// and past full.
func TestCommOf(t *testing.T) {
	var d decoder
	for round := 0; round < 2; round++ {
		for i := 0; i < 2*maxComms; i++ {
			comm := "prog-" + strconv.Itoa(i)
			if err := parseRecord(rawRecord{kind: recFork, comm: comm}.bytes(), &d.rec); err != nil {
				t.Fatal(err)
			}
			if got := d.commOf(&d.rec); got != comm {
				t.Fatalf("round %d: comm %q, want %q", round, got, comm)
			}
		}
	}
	if len(d.comms) != maxComms {
		t.Errorf("memo holds %d, want its bound %d", len(d.comms), maxComms)
	}
}

// decodeBatch, which changes the process table a run of records at a
// time, emits what decoding the records one by one emits, and leaves the
// same table: events attributed between lifecycle records see every
// change before them. emit attributes each event from the table, as the
// agent does, which would wait forever if the batch still held it.
func TestDecodeBatchAsOneByOne(t *testing.T) {
	lsExec := func(pid, ppid uint32, exe string) rawRecord {
		return rawRecord{kind: recExec, nr: sysExecve, hostPID: pid, hostPPID: ppid, pid: pid, uid: 1000, comm: exe,
			fields: []string{exe + "\x00bin\x00", "/bin/" + exe, exe + "\x00-la\x00/tmp\x00", "user\x00home\x00", "pts1"}}
	}
	open := func(pid, ppid uint32) rawRecord {
		return rawRecord{kind: recSyscall, nr: sysOpenat, retval: 3, hostPID: pid, hostPPID: ppid, comm: "x",
			args: [6]uint64{uint64(uint32(0xffffff9c)), 0, unix.O_RDONLY}, fields: []string{"/etc/hosts"}}
	}
	fork := func(pid, ppid uint32) rawRecord {
		return rawRecord{kind: recFork, hostPID: pid, hostPPID: ppid, pid: pid}
	}
	exit := func(pid uint32) rawRecord { return rawRecord{kind: recExit, hostPID: pid} }
	stream := []rawRecord{
		fork(101, 100), lsExec(101, 100, "ls"), open(101, 100), // attributed to ls
		fork(102, 101), exit(102), // a fork that never execs
		fork(103, 100), lsExec(103, 1, "cat"), // exec after a reparenting
		lsExec(104, 100, "id"), exit(101), // an exec without its fork
		fork(101, 100), lsExec(101, 100, "du"), open(101, 100), // pid 101 reused
		{kind: 99}, // a bad record between lifecycle ones
		exit(103), exit(104), open(103, 1), fork(105, 101),
	}
	for i := range 40 { // past one hold of the table's lock
		pid := uint32(200 + i)
		stream = append(stream, fork(pid, 100), lsExec(pid, 100, "ls"), exit(pid))
	}
	stream = append(stream, open(239, 100))
	pids := []uint32{100, 101, 102, 103, 104, 105, 200, 220, 239}

	for _, vis := range []Scope{0, ScopeProcess, ScopeAll} {
		newTable := func() *proctable.Table {
			tab := proctable.New(proctable.Options{})
			tab.Exec(proctable.Process{HostPID: 100, HostPPID: 1, Exe: "/usr/bin/bash", Cwd: "/home/user", TTY: "pts1"})
			return tab
		}
		type emitted struct {
			ev event.Event
			a  proctable.Attribution
		}
		// One by one.
		d := &decoder{table: newTable(), visibility: vis}
		var want []emitted
		wantErrs := 0
		var ev event.Event
		for _, r := range stream {
			ok, err := d.decode(r.bytes(), &ev)
			if err != nil {
				wantErrs++
			}
			if ok {
				want = append(want, emitted{ev, d.table.Describe(&ev)})
			}
		}
		// As a batch.
		tab := newTable()
		m := &Monitor{table: tab, dec: decoder{table: tab, visibility: vis}}
		bt := newBatch().(*batch)
		for _, r := range stream {
			bt.add(r.bytes())
		}
		var got []emitted
		m.decodeBatch(bt, &ev, func(ev event.Event) { got = append(got, emitted{ev, tab.Describe(&ev)}) })

		if len(got) != len(want) || int(m.decodeErrors.Load()) != wantErrs {
			t.Fatalf("visibility %v: %d events, %d errors; one by one %d, %d", vis, len(got), m.decodeErrors.Load(), len(want), wantErrs)
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("visibility %v, event %d:\n batch %+v\n  one  %+v", vis, i, got[i], want[i])
			}
		}
		for _, pid := range pids {
			gp, gok := tab.Lookup(pid)
			wp, wok := d.table.Lookup(pid)
			if gok != wok || !reflect.DeepEqual(gp, wp) {
				t.Errorf("visibility %v, pid %d: batch %+v %v, one by one %+v %v", vis, pid, gp, gok, wp, wok)
			}
		}
		if tab.Len() != d.table.Len() {
			t.Errorf("visibility %v: %d entries, one by one %d", vis, tab.Len(), d.table.Len())
		}
	}
}

// Options.Unneeded is asked about each syscall record that makes an event,
// with the event's Operation, Syscall and Retval, before anything else is
// built; an event it takes is counted emitted and undecoded, and is not
// handed to emit. Records that make no event (dropped, undecodable, not a
// syscall) are never offered: the counts are those of a decode without the
// question.
func TestUnneededTakesUndecoded(t *testing.T) {
	atCWD := uint64(uint32(0xffffff9c))
	dns := dnsMessage(7, "example.com", 1)
	tests := []struct {
		name  string
		rec   rawRecord
		asked *event.Event // nil: not asked
		err   bool
	}{
		{"setuid", rawRecord{kind: recSyscall, nr: sysSetuid, args: [6]uint64{0}},
			&event.Event{Operation: event.OpSyscall, Syscall: "SYS_SETUID"}, false},
		{"failed setuid", rawRecord{kind: recSyscall, nr: sysSetuid, retval: -1},
			&event.Event{Operation: event.OpSyscall, Syscall: "SYS_SETUID", Retval: -1}, false},
		{"open", rawRecord{kind: recSyscall, nr: sysOpenat, retval: 3, args: [6]uint64{atCWD}, fields: []string{"/etc/hosts"}},
			&event.Event{Operation: event.OpFile, Syscall: "SYS_OPENAT", Retval: 3}, false},
		{"relative open", rawRecord{kind: recSyscall, nr: sysOpenat, retval: 3, flags: flagPathFile, fields: []string{"hosts", "hosts\x00etc\x00"}},
			&event.Event{Operation: event.OpFile, Syscall: "SYS_OPENAT", Retval: 3}, false},
		{"connect", rawRecord{kind: recSyscall, nr: sysConnect, args: [6]uint64{3}, fields: []string{string(sockaddrIn(80, [4]byte{1, 2, 3, 4}))}},
			&event.Event{Operation: event.OpNetwork, Syscall: "SYS_CONNECT"}, false},
		{"failed execve", rawRecord{kind: recSyscall, nr: sysExecve, retval: -2, fields: []string{"/nope", "nope\x00"}},
			&event.Event{Operation: event.OpProcess, Syscall: "SYS_EXECVE", Retval: -2}, false},
		{"DNS query", rawRecord{kind: recSyscall, nr: sysSendto, retval: int64(len(dns)), fields: []string{string(sockaddrIn(53, [4]byte{1, 1, 1, 1})), string(dns)}},
			&event.Event{Operation: event.OpNetwork, Syscall: "SYS_SENDTO", Retval: int64(len(dns))}, false},

		{"no DNS query: dropped", rawRecord{kind: recSyscall, nr: sysSendto, fields: []string{string(sockaddrIn(53, [4]byte{1, 1, 1, 1})), "x"}}, nil, false},
		{"/proc by a relative path: dropped", rawRecord{kind: recSyscall, nr: sysOpen, flags: flagPathFile,
			fields: []string{"self/status", "status\x00self\x00proc\x00"}}, nil, false},
		{"/sys by a directory fd: dropped", rawRecord{kind: recSyscall, nr: sysOpenat, args: [6]uint64{5}, flags: flagPathBase,
			fields: []string{"kernel/x", "sys\x00"}}, nil, false},
		{"/proc as given: dropped", rawRecord{kind: recSyscall, nr: sysOpenat, args: [6]uint64{atCWD}, fields: []string{"/proc/1/stat"}}, nil, false},
		{"untraced syscall", rawRecord{kind: recSyscall, nr: 1}, nil, true},
		{"exec", rawRecord{kind: recExec, nr: sysExecve, hostPID: 9, fields: []string{"ls\x00bin\x00", "/bin/ls", "ls\x00", "", ""}}, nil, false},
		{"fork", rawRecord{kind: recFork, hostPID: 9, hostPPID: 1}, nil, false},
	}
	for _, tt := range tests {
		for _, take := range []bool{false, true} {
			var asked *event.Event
			d := newTestDecoder()
			d.unneeded = func(ev *event.Event) bool {
				c := *ev
				asked = &c
				return take
			}
			var ev event.Event
			out, err := d.decodeRecord(tt.rec.bytes(), &ev)
			d.endBatch()

			// What the same record gives with nobody asked.
			plain := newTestDecoder()
			var pev event.Event
			pout, perr := plain.decodeRecord(tt.rec.bytes(), &pev)
			plain.endBatch()

			if (err != nil) != tt.err || (perr != nil) != tt.err {
				t.Errorf("%s: err %v (unasked %v), want error %v", tt.name, err, perr, tt.err)
			}
			switch {
			case tt.asked == nil && asked != nil:
				t.Errorf("%s: asked about %+v, want not asked", tt.name, *asked)
			case tt.asked != nil && (asked == nil || !reflect.DeepEqual(*asked, *tt.asked)):
				t.Errorf("%s: asked about %+v, want %+v", tt.name, asked, *tt.asked)
			}
			want := pout
			if take && tt.asked != nil {
				want = outTaken
				if pout != outEvent {
					t.Errorf("%s: offered, but a plain decode gives outcome %d", tt.name, pout)
				}
			}
			if out != want {
				t.Errorf("%s, unneeded %v: outcome %d, want %d", tt.name, take, out, want)
			}
			if out == outEvent && !reflect.DeepEqual(ev, pev) {
				t.Errorf("%s: decoded after the question\n %+v\nwant\n %+v", tt.name, ev, pev)
			}
		}
	}
}

// decodeBatch counts a taken event emitted, and Undecoded, and does not
// hand it to emit; the counts of a stream are those without the question.
func TestDecodeBatchCountsTaken(t *testing.T) {
	setuid := rawRecord{kind: recSyscall, nr: sysSetuid, hostPID: 7, comm: "x"}
	open := rawRecord{kind: recSyscall, nr: sysOpenat, retval: 3, hostPID: 7, args: [6]uint64{uint64(uint32(0xffffff9c))}, fields: []string{"/etc/hosts"}}
	procOpen := rawRecord{kind: recSyscall, nr: sysOpenat, args: [6]uint64{uint64(uint32(0xffffff9c))}, fields: []string{"/proc/1/stat"}}
	stream := []rawRecord{setuid, open, {kind: 99}, procOpen, setuid, {kind: recFork, hostPID: 8, hostPPID: 7}, open}
	for _, tt := range []struct {
		name             string
		unneeded         func(*event.Event) bool
		emitted, decoded int
	}{
		{"not asked", nil, 4, 4},
		{"nothing taken", func(*event.Event) bool { return false }, 4, 4},
		{"setuid taken", func(ev *event.Event) bool { return ev.Syscall == "SYS_SETUID" }, 4, 2},
		{"all taken", func(*event.Event) bool { return true }, 4, 0},
	} {
		tab := proctable.New(proctable.Options{})
		m := &Monitor{table: tab, dec: decoder{table: tab, visibility: ScopeAll, unneeded: tt.unneeded}}
		bt := newBatch().(*batch)
		for _, r := range stream {
			bt.add(r.bytes())
		}
		var ev event.Event
		decoded := 0
		m.decodeBatch(bt, &ev, func(event.Event) { decoded++ })
		s := m.Stats()
		if int(s.Emitted) != tt.emitted || decoded != tt.decoded || int(s.Undecoded) != tt.emitted-tt.decoded || s.DecodeErrors != 1 {
			t.Errorf("%s: emitted %d, handed to emit %d, undecoded %d, errors %d; want %d, %d, %d, 1", tt.name,
				s.Emitted, decoded, s.Undecoded, s.DecodeErrors, tt.emitted, tt.decoded, tt.emitted-tt.decoded)
		}
	}
}
