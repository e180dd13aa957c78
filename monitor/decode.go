package monitor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/proctable"
	"golang.org/x/sys/unix"
)

// Record kinds, flags and limits of monitor.bpf.c, from the constants
// bpf2go generates out of its enums (gen.go).
const (
	recSyscall = uint32(monitorBPFRecordKindREC_SYSCALL)
	recExec    = uint32(monitorBPFRecordKindREC_EXEC)
	recFork    = uint32(monitorBPFRecordKindREC_FORK)
	recExit    = uint32(monitorBPFRecordKindREC_EXIT)

	flagTruncated = uint16(monitorBPFRecordFlagFLAG_TRUNCATED)
	flagPathFile  = uint16(monitorBPFRecordFlagFLAG_PATH_FILE) // the field after a relative path: the opened file's path
	flagPathBase  = uint16(monitorBPFRecordFlagFLAG_PATH_BASE) // the field after a relative path: the directory it is relative to

	argsMax = int(monitorBPFLimitARGS_MAX)
)

// Byte offsets of struct record's header (checked against the bpf2go type
// in a test).
const (
	offTS       = 0
	offCgroupID = 8
	offRetval   = 16
	offArgs     = 24
	offKind     = 72
	offNr       = 76
	offHostPID  = 80
	offHostPPID = 84
	offPID      = 88
	offPPID     = 92
	offUID      = 96
	offPidNS    = 100
	offMntNS    = 104
	offAux      = 108
	offDataLen  = 112
	offFlags    = 114
	offComm     = 116
	headerSize  = 132
	maxFields   = 6
)

// record is a parsed ring-buffer record; fields alias the raw bytes.
type record struct {
	ts                uint64
	cgroupID          uint64
	retval            int64
	args              [6]uint64
	kind, nr          uint32
	hostPID, hostPPID uint32
	pid, ppid, uid    uint32
	pidNS, mntNS      uint32
	flags             uint16
	comm              []byte
	fields            [maxFields][]byte
	nfields           int
}

var errShort = errors.New("record shorter than its header")

func parseRecord(raw []byte, r *record) error {
	if len(raw) < headerSize {
		return errShort
	}
	le := binary.LittleEndian
	r.ts = le.Uint64(raw[offTS:])
	r.cgroupID = le.Uint64(raw[offCgroupID:])
	r.retval = int64(le.Uint64(raw[offRetval:]))
	for i := range r.args {
		r.args[i] = le.Uint64(raw[offArgs+8*i:])
	}
	r.kind = le.Uint32(raw[offKind:])
	r.nr = le.Uint32(raw[offNr:])
	r.hostPID = le.Uint32(raw[offHostPID:])
	r.hostPPID = le.Uint32(raw[offHostPPID:])
	r.pid = le.Uint32(raw[offPID:])
	r.ppid = le.Uint32(raw[offPPID:])
	r.uid = le.Uint32(raw[offUID:])
	r.pidNS = le.Uint32(raw[offPidNS:])
	r.mntNS = le.Uint32(raw[offMntNS:])
	r.flags = le.Uint16(raw[offFlags:])
	r.comm = trimNUL(raw[offComm:headerSize])

	dataLen := int(le.Uint16(raw[offDataLen:]))
	data := raw[headerSize:]
	if dataLen > len(data) {
		return fmt.Errorf("record data length %d, only %d bytes", dataLen, len(data))
	}
	data = data[:dataLen]
	r.nfields = 0
	for len(data) >= 2 && r.nfields < maxFields {
		n := int(le.Uint16(data))
		data = data[2:]
		if n > len(data) {
			return fmt.Errorf("record field %d length %d, only %d bytes", r.nfields, n, len(data))
		}
		r.fields[r.nfields] = data[:n]
		r.nfields++
		data = data[n:]
	}
	return nil
}

func (r *record) field(i int) []byte {
	if i < r.nfields {
		return r.fields[i]
	}
	return nil
}

// decoder turns records into events and keeps the process table current.
// It is used by one goroutine.
type decoder struct {
	table      *proctable.Table
	visibility Scope
	clock      event.BootClock
	rec        record
	batch      *proctable.Batch        // the table's, while decodeRecord holds it
	opens      map[openKey]string      // openData's memo
	comms      map[string]string       // commOf's memo
	text       []byte                  // execText's scratch
	unneeded   func(*event.Event) bool // Options.Unneeded
}

// outcome is what decodeRecord made of a record.
type outcome uint8

const (
	outNone  outcome = iota // no event: a fork or exit, or an event dropped
	outEvent                // ev is an event to emit
	outTaken                // an event Options.Unneeded took undecoded
)

// maxComms bounds commOf's memo: a host runs a few hundred program names.
const maxComms = 1024

// commOf is the record's comm as a string, one string per name: every
// event carries its comm, and most come from a few programs.
func (d *decoder) commOf(r *record) string {
	if s, ok := d.comms[string(r.comm)]; ok {
		return s
	}
	s := string(r.comm)
	if d.comms == nil {
		d.comms = make(map[string]string)
	}
	if len(d.comms) < maxComms {
		d.comms[s] = s
	}
	return s
}

// openKey is what the Data of an open depends on: the syscall, the
// directory fd (openat) and the flags, whole.
type openKey struct {
	nr        uint32
	fd, flags uint64
}

// maxOpenData bounds openData's memo: the flags a host's programs use are
// a few dozen combinations, but directory fds vary.
const maxOpenData = 512

// openData is syscallData of an open, remembered: opens are most of the
// telemetry, and building the same Data text again was the largest part
// of decoding one. Other records' Data is built each time.
func (d *decoder) openData(r *record) string {
	var k openKey
	switch r.nr {
	case sysOpen:
		k = openKey{nr: r.nr, flags: r.args[1]}
	case sysOpenat, sysOpenat2:
		k = openKey{nr: r.nr, fd: r.args[0], flags: r.args[2]}
	default:
		return syscallData(r.nr, &r.args, nil, "")
	}
	if s, ok := d.opens[k]; ok {
		return s
	}
	s := syscallData(r.nr, &r.args, nil, "")
	if d.opens == nil {
		d.opens = make(map[openKey]string)
	}
	if len(d.opens) < maxOpenData {
		d.opens[k] = s
	}
	return s
}

// decode handles one raw record and makes its change to the process
// table. It reports whether ev is an event to emit (fork and exit records
// only update the table).
func (d *decoder) decode(raw []byte, ev *event.Event) (bool, error) {
	out, err := d.decodeRecord(raw, ev)
	d.endBatch()
	return out == outEvent, err
}

// decodeRecord is decode, but it leaves the table held in a
// proctable.Batch after a fork, exit or exec record that emits nothing,
// for the next such record: a run of them changes the table under one
// lock. It ends the batch before a record whose event is attributed from
// the table, and before it returns an event to emit: events see the table
// as decode would show it. Its caller ends the batch when it is done.
func (d *decoder) decodeRecord(raw []byte, ev *event.Event) (outcome, error) {
	r := &d.rec
	if len(raw) >= headerSize && binary.LittleEndian.Uint16(raw[offDataLen:]) == 0 {
		// Fork and exit records are a header without data: they need no
		// more than its ids.
		le := binary.LittleEndian
		r.kind = le.Uint32(raw[offKind:])
		if r.kind == recFork || r.kind == recExit {
			r.hostPID, r.hostPPID = le.Uint32(raw[offHostPID:]), le.Uint32(raw[offHostPPID:])
			r.pid, r.ppid, r.uid = le.Uint32(raw[offPID:]), le.Uint32(raw[offPPID:]), le.Uint32(raw[offUID:])
			d.lifecycle(r)
			return outNone, nil
		}
	}
	if err := parseRecord(raw, r); err != nil {
		return outNone, err
	}
	switch r.kind {
	case recFork, recExit:
		d.lifecycle(r)
		return outNone, nil
	case recExec:
		if d.exec(r, ev) {
			return outEvent, nil
		}
		return outNone, nil
	case recSyscall:
		d.endBatch()
		return d.syscall(r, ev)
	}
	return outNone, fmt.Errorf("unknown record kind %d", r.kind)
}

// lifecycle makes the table change of a fork or exit record.
func (d *decoder) lifecycle(r *record) {
	b := d.beginBatch()
	if r.kind == recExit {
		b.Exit(r.hostPID)
		return
	}
	b.Fork(proctable.Process{HostPID: r.hostPID, HostPPID: r.hostPPID, PID: r.pid, PPID: r.ppid, UID: r.uid})
}

// beginBatch is the table's batch, begun if it is not yet.
func (d *decoder) beginBatch() *proctable.Batch {
	if d.batch == nil {
		d.batch = d.table.Begin()
	}
	return d.batch
}

// endBatch lets the table go, if decodeRecord holds it.
func (d *decoder) endBatch() {
	if d.batch != nil {
		d.batch.End()
		d.batch = nil
	}
}

func (d *decoder) header(r *record, ev *event.Event) {
	*ev = event.Event{
		Time:     d.clock.Wall(r.ts),
		HostPID:  r.hostPID,
		HostPPID: r.hostPPID,
		PID:      r.pid,
		PPID:     r.ppid,
		UID:      r.uid,
		Comm:     d.commOf(r),
		CgroupID: r.cgroupID,
		PidNS:    r.pidNS,
		MntNS:    r.mntNS,
		Retval:   r.retval,
	}
}

// execveData is the Data of every execve: it shows no argument.
var execveData = syscallData(sysExecve, &[6]uint64{}, nil, "")

func (d *decoder) exec(r *record, ev *event.Event) bool {
	t := d.execText(r)
	// The parent's executable the table stores for the process is all
	// Table.Enrich would add to what the record says.
	parentExe := d.beginBatch().Exec(proctable.Process{
		HostPID: r.hostPID, HostPPID: r.hostPPID, PID: r.pid, PPID: r.ppid, UID: r.uid,
		Exe: t.exe, Args: t.args, Cwd: t.cwd, TTY: t.tty, CmdLine: t.cmdline, CwdSlash: t.cwdSlash,
	})
	if d.visibility&ScopeProcess == 0 {
		return false
	}
	d.endBatch() // the event is attributed from the table
	d.header(r, ev)
	ev.Operation = event.OpProcess
	ev.Syscall = SyscallName(r.nr)
	ev.Exe = t.exe
	ev.Args = t.args
	ev.Cwd = t.cwd
	ev.TTY = t.tty
	ev.ParentExe = parentExe
	ev.Resource = t.cmdline
	if r.nr == sysExecve {
		ev.Data = execveData
	} else {
		ev.Data = syscallData(r.nr, &r.args, nil, "")
	}
	return true
}

// execText is the text of an exec record: the executable's path, the
// arguments (argv[1:], "..." last when the kernel cut argv short), the
// command line (the path and the arguments joined by spaces), the working
// directory ("/" at the root), the same with a trailing slash, and the tty.
type execText struct {
	exe, cmdline, cwd, cwdSlash, tty string
	args                             []string
}

// execText builds it all in one string, and the strings are its parts:
// the path, then a space before each argument (together the command
// line), the cwd (and a slash after it unless it ends with one), the tty.
// An exec is decoded with two allocations, that string and args, whatever
// argv holds. An entry that keeps one part (a child's ParentExe) keeps the
// rest of its parent's text alive, as a forked child kept its parent's
// Args before.
func (d *decoder) execText(r *record) execText {
	argv := trimTrailingNUL(r.field(2))
	truncated := r.flags&flagTruncated != 0 && len(r.field(2)) >= argsMax

	b := appendComponents(d.text[:0], r.field(0))
	if len(b) == 0 {
		// No path from the kernel: execve's file name, against the cwd.
		cwd := joinComponents(r.field(3))
		if cwd == "" {
			cwd = "/"
		}
		b = append(b, absolute(cwd, string(r.field(1)))...)
	}
	nexe := len(b)
	// argv[0] is no argument; each one after it follows a space: argv[1:]
	// is copied whole, and the NULs between its arguments become spaces.
	// cuts keeps where the first arguments end, for args below.
	var rest []byte // argv[1:], NUL-separated
	var cuts [16]int
	nsplit := 0
	if i := bytes.IndexByte(argv, 0); i >= 0 {
		rest = argv[i+1:]
		b = append(b, ' ')
		b = append(b, rest...)
		for j := nexe + 1; ; {
			k := bytes.IndexByte(b[j:], 0)
			if k < 0 {
				break
			}
			if nsplit < len(cuts) {
				cuts[nsplit] = j + k
			}
			nsplit++
			b[j+k] = ' '
			j += k + 1
		}
		nsplit++
	}
	nargv := len(b)
	nargs := nsplit
	if truncated && len(argv) > 0 { // an empty argv has no "..." either
		nargs++
		b = append(b, " ..."...)
	}
	ncmd := len(b)
	b = appendComponents(b, r.field(3))
	if len(b) == ncmd {
		b = append(b, '/')
	}
	ncwd := len(b)
	if b[ncwd-1] != '/' {
		b = append(b, '/')
	}
	nslash := len(b)
	b = append(b, r.field(4)...)
	d.text = b
	s := string(b)

	t := execText{exe: s[:nexe], cmdline: s[:ncmd], cwd: s[ncmd:ncwd], cwdSlash: s[ncmd:nslash], tty: s[nslash:]}
	if len(argv) == 0 {
		return t
	}
	t.args = make([]string, nargs) // argv[0] alone: empty, not nil
	off := nexe + 1
	for k := range nsplit {
		end := nargv // the last argument ends argv
		switch {
		case k == nsplit-1:
		case k < len(cuts):
			end = cuts[k]
		default: // past cuts: the next NUL of argv[1:] from here
			end = off + bytes.IndexByte(rest[off-nexe-1:], 0)
		}
		t.args[k] = s[off:end]
		off = end + 1
	}
	if truncated {
		t.args[nargs-1] = "..."
	}
	return t
}

// trimTrailingNUL is b without the NULs it ends with.
func trimTrailingNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func (d *decoder) syscall(r *record, ev *event.Event) (outcome, error) {
	t := tracedOf(r.nr)
	if t == nil {
		return outNone, fmt.Errorf("record for untraced syscall %d", r.nr)
	}
	// The consumer is asked once the record is known good (parseRecord
	// checked its lengths: a bad one is a decode error, as before) and
	// known to make an event, and before anything is built: the header,
	// the table's attribution and the Data text are most of the cost.
	if d.unneeded != nil && d.makesEvent(r, t) {
		*ev = event.Event{Operation: t.operation, Syscall: SyscallName(r.nr), Retval: r.retval}
		if d.unneeded(ev) {
			return outTaken, nil
		}
	}
	d.header(r, ev)
	ev.Operation = t.operation
	ev.Syscall = SyscallName(r.nr)
	d.table.Enrich(ev)

	switch t.exit {
	case exitExec: // a failed execve/execveat
		argv := splitArgs(r.field(1), false)
		if len(argv) > 0 {
			argv = argv[1:]
		}
		ev.Exe = resolved(r, string(r.field(0)), 2)
		ev.Args = argv
		ev.Resource = commandLine(ev.Exe, argv)
		ev.Data = syscallData(r.nr, &r.args, nil, "")
	case exitFile:
		ev.Path = resolved(r, string(r.field(0)), 1)
		if isProcOrSys(ev.Path) {
			// A relative path into /proc or /sys, dropped like the
			// absolute ones the kernel drops.
			return outNone, nil
		}
		ev.File = fileOf(r.nr, &r.args)
		ev.Resource = ev.Path
		ev.Data = d.openData(r)
	case exitNet:
		switch r.nr {
		case sysSocket:
			// socket(2) takes int arguments: the kernel reads the low 32 bits.
			ev.Socket = event.Socket{Family: uint16(r.args[0]), Type: uint32(r.args[1]) & sockTypeMask, Protocol: uint32(r.args[2])}
			ev.Resource = SocketResource(r.args[0], r.args[1], r.args[2])
		case sysListen:
		default:
			ev.Resource = SockaddrResource(r.field(0))
		}
		ev.Data = syscallData(r.nr, &r.args, nil, "")
	case exitSend:
		q, ok := dnsQuery(r.field(1))
		if !ok {
			return outNone, nil // a datagram to port 53 that is no DNS query
		}
		ev.Resource, ev.Data = dnsEvent(r.field(0), q)
	case exitCred:
		var target string
		var strs []string
		switch r.nr {
		case sysPtrace:
			if p, ok := d.table.Lookup(uint32(r.args[1])); ok {
				target = p.Exe
			}
			ev.Resource = target
		case sysMount, sysUmount2:
			for i := 0; i < r.nfields; i++ {
				strs = append(strs, string(r.fields[i]))
			}
		}
		ev.Data = syscallData(r.nr, &r.args, strs, target)
	}
	return outEvent, nil
}

// makesEvent reports whether syscall makes an event of r, without
// building it: every record of a traced syscall does but a file record
// whose path resolves into /proc or /sys and a datagram to port 53 that
// is no DNS query, which syscall drops.
func (d *decoder) makesEvent(r *record, t *traced) bool {
	switch t.exit {
	case exitFile:
		switch {
		case r.flags&flagPathFile != 0:
			// resolved's join, into a buffer on the stack ("" is its "/").
			var buf [256]byte
			return !isProcOrSysBytes(appendComponents(buf[:0], r.field(1)))
		case r.flags&flagPathBase != 0:
			return !isProcOrSys(resolved(r, string(r.field(0)), 1)) // path.Join cleans: as syscall does it
		}
		return !isProcOrSysBytes(r.field(0)) // the path as given
	case exitSend:
		_, ok := dnsQuery(r.field(1))
		return ok
	}
	return true
}

// fileOf is what file syscall nr does, from its raw arguments.
func fileOf(nr uint32, args *[6]uint64) event.File {
	switch nr {
	case sysOpen:
		return openFile(args[1])
	case sysOpenat, sysOpenat2: // openat2's open_how was replaced by its flags in the kernel
		return openFile(args[2])
	case sysMkdir, sysMkdirat, sysRmdir:
		return event.File{Op: event.FileChange, Dir: true}
	case sysUnlinkat:
		return event.File{Op: event.FileChange, Dir: args[2]&unix.AT_REMOVEDIR != 0}
	}
	return event.File{Op: event.FileChange}
}

// openFile is an open with flags. O_TMPFILE includes the O_DIRECTORY bit,
// but the file it makes is no directory (and Data shows O_TMPFILE alone).
func openFile(flags uint64) event.File {
	dir := flags&unix.O_DIRECTORY != 0 && flags&unix.O_TMPFILE != unix.O_TMPFILE
	return event.File{Op: event.FileOpen, Flags: uint32(flags), Dir: dir}
}

// resolved is the absolute form of a path a syscall was given, from what
// the kernel resolved while the syscall ran (field i of r): the opened
// file's path, or the directory a relative path is relative to. A path the
// kernel could not resolve (a bad dirfd) stays as it was given.
func resolved(r *record, p string, i int) string {
	switch {
	case r.flags&flagPathFile != 0:
		if f := joinComponents(r.field(i)); f != "" {
			return f
		}
		return "/"
	case r.flags&flagPathBase != 0:
		base := joinComponents(r.field(i))
		if base == "" {
			base = "/"
		}
		if p == "" {
			return base
		}
		return path.Join(base, p)
	}
	return p
}

func isProcOrSys(p string) bool {
	return strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/")
}

func isProcOrSysBytes(p []byte) bool {
	return bytes.HasPrefix(p, []byte("/proc/")) || bytes.HasPrefix(p, []byte("/sys/"))
}

func absolute(cwd, p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	return path.Join(cwd, p)
}

// joinComponents turns the kernel's leaf-first, NUL-terminated path
// components into an absolute path; "" when there are none.
func joinComponents(b []byte) string {
	var buf [256]byte
	return string(appendComponents(buf[:0], b))
}

// appendComponents appends joinComponents(b) to dst.
func appendComponents(dst, b []byte) []byte {
	b = trimTrailingNUL(b)
	if len(b) == 0 {
		return dst
	}
	end := len(b)
	for end >= 0 {
		start := bytes.LastIndexByte(b[:end], 0) + 1
		dst = append(dst, '/')
		dst = append(dst, b[start:end]...)
		end = start - 1
	}
	return dst
}

// splitArgs splits a NUL-separated argv blob; truncated marks a blob cut at
// the kernel's limit, which upstream shows with a trailing "...".
func splitArgs(b []byte, truncated bool) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	args := strings.Split(string(b), "\x00")
	if truncated {
		args = append(args, "...")
	}
	return args
}

func commandLine(exe string, args []string) string {
	if len(args) == 0 {
		return exe
	}
	return exe + " " + strings.Join(args, " ")
}
