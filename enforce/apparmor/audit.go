package apparmor

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// auditSource yields the text of kernel audit records, one at a time.
type auditSource interface {
	Next() (string, error)
	Close()
}

const (
	auditNlgrpReadlog = 1    // AUDIT_NLGRP_READLOG: read-only copies of every record
	auditAVC          = 1400 // AUDIT_AVC: AppArmor's (and SELinux's) records
)

// openAudit subscribes to the audit netlink multicast group, which leaves
// auditd (if any) undisturbed; without it, /dev/kmsg, where the kernel
// prints audit records when no audit daemon runs (rate limited).
func openAudit() (auditSource, error) {
	n, nlErr := openNetlink()
	if nlErr == nil {
		return n, nil
	}
	k, err := openKmsg()
	if err != nil {
		return nil, errors.Join(nlErr, err)
	}
	return k, nil
}

type netlinkAudit struct {
	fd      int
	buf     []byte
	pending []string
	once    sync.Once
}

func openNetlink() (*netlinkAudit, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, fmt.Errorf("audit netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (auditNlgrpReadlog - 1)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("audit netlink multicast group: %w", err)
	}
	// a receive timeout so that Close is noticed
	tv := unix.Timeval{Usec: 200000}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &netlinkAudit{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (n *netlinkAudit) Next() (string, error) {
	for len(n.pending) == 0 {
		if n.fd < 0 {
			return "", os.ErrClosed
		}
		m, _, err := unix.Recvfrom(n.fd, n.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue
			}
			if errors.Is(err, unix.EBADF) {
				return "", os.ErrClosed
			}
			return "", err
		}
		n.pending = append(n.pending, avcRecords(n.buf[:m])...)
	}
	line := n.pending[0]
	n.pending = n.pending[1:]
	return line, nil
}

// avcRecords splits a netlink datagram into the text of its AppArmor
// records. The kernel does not pad audit messages to the netlink alignment,
// which syscall.ParseNetlinkMessage insists on, so this parses by hand.
func avcRecords(b []byte) []string {
	var out []string
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			break
		}
		if typ == auditAVC {
			out = append(out, strings.TrimRight(string(b[unix.NLMSG_HDRLEN:l]), "\x00\n"))
		}
		next := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return out
}

func (n *netlinkAudit) Close() {
	n.once.Do(func() {
		fd := n.fd
		n.fd = -1
		unix.Close(fd)
	})
}

type kmsgAudit struct {
	f  *os.File
	rd *bufio.Reader
}

func openKmsg() (*kmsgAudit, error) {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		return nil, err
	}
	// only records from now on
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	return &kmsgAudit{f: f, rd: bufio.NewReaderSize(f, 8192)}, nil
}

func (k *kmsgAudit) Next() (string, error) {
	for {
		line, err := k.rd.ReadString('\n')
		if err != nil {
			if errors.Is(err, unix.EPIPE) { // records were overwritten; go on
				continue
			}
			return "", err
		}
		// "PRI,SEQ,TIME,FLAGS;text"
		if _, text, ok := strings.Cut(line, ";"); ok && strings.Contains(text, "apparmor=") {
			return strings.TrimSpace(text), nil
		}
	}
}

func (k *kmsgAudit) Close() { k.f.Close() }

// fields parses key=value pairs; values are "quoted", bare, or hex for
// names with spaces.
func fields(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key := s[:eq]
		if sp := strings.LastIndexByte(key, ' '); sp >= 0 {
			key = key[sp+1:]
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				val, s = s[1:], ""
			} else {
				val, s = s[1:end+1], s[end+2:]
			}
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
			if key == "name" || key == "comm" || key == "profile" {
				if b, err := hex.DecodeString(val); err == nil && len(val) > 0 {
					val = string(b)
				}
			}
		}
		out[key] = val
	}
	return out
}

// verdict turns one AppArmor audit record about our profiles into an event.
func (e *Enforcer) verdict(line string) (event.Event, bool) {
	f := fields(line)
	kind := f["apparmor"]
	profile := f["profile"]
	if kind != "DENIED" && kind != "AUDIT" {
		return event.Event{}, false
	}
	st := e.state.Load()
	source := ""
	if profile != HostProfile {
		var ok bool
		if source, ok = st.sources[profile]; !ok {
			return event.Event{}, false // not ours
		}
	}
	pid, _ := strconv.Atoi(f["pid"])
	ev := event.Event{
		Time:     time.Now(),
		HostPID:  uint32(pid),
		PID:      uint32(pid),
		Comm:     f["comm"],
		Enforcer: Name,
		Data:     fmt.Sprintf("apparmor=%s operation=%s profile=%s", kind, f["operation"], profile),
	}
	if uid, err := strconv.Atoi(f["fsuid"]); err == nil {
		ev.UID = uint32(uid)
	}
	denied := kind == "DENIED"
	var d decide.Decision
	switch {
	case f["operation"] == "capable":
		ev.Operation = event.OpCapabilities
		ev.Resource = "CAP_" + strings.ToUpper(f["capname"])
		ev.Capability, _ = hostpolicy.CapabilityNumber(f["capname"])
		d = st.table.Capability(f["capname"], source, decide.NoFacts{})
	case f["family"] != "" || f["sock_type"] != "":
		typ, proto := auditSocket(f["sock_type"], f["protocol"])
		ev.Operation = event.OpNetwork
		ev.Resource = hostpolicy.SocketResource(typ.Number, proto.Number)
		ev.Socket = auditSocketFields(f["family"], typ, f["protocol"])
		d = st.table.Network(typ.Name, proto.Name, source, decide.NoFacts{})
	case f["operation"] == "exec":
		ev.Operation = event.OpProcess
		ev.Syscall = "SYS_EXECVE"
		ev.Resource = f["name"]
		ev.Exe = f["name"]
		ev.ParentExe = source
		d = st.table.Exec(f["name"], source, recordFacts(f))
		if d.ByFile {
			// Refused by a file rule: reported as the open of the program
			// it is (renderRule denies x with the file permissions).
			ev.Operation, ev.Syscall, ev.Exe, ev.ParentExe, ev.Path = event.OpFile, "", source, "", f["name"]
		}
	case f["name"] != "":
		ev.Operation = event.OpFile
		ev.Resource = f["name"]
		// AppArmor names a directory with a trailing "/": it is decided as
		// the directory itself (its own directory rules), as in the kernel.
		name, dir := f["name"], false
		if len(name) > 1 && strings.HasSuffix(name, "/") {
			name, dir = strings.TrimSuffix(name, "/"), true
		}
		// The record's operation and requested_mask are AppArmor's, not
		// open(2)'s: File.Op stays unknown.
		ev.Path, ev.File.Dir = name, dir
		d = st.table.Path(hostpolicy.CategoryFile, name, source, dir, recordFacts(f))
		want := event.VerdictAudit
		if denied {
			want = event.VerdictBlock
		}
		if dir && d.Verdict != want {
			// a directory above a protected path (ancestorLines)
			if r := AncestorRule(st.table.RuleSet(), name, source, denied); r != nil {
				d = decide.Decision{Verdict: want, Rule: r, Deny: denied}
			}
		}
	default:
		return event.Event{}, false
	}
	switch {
	case denied && d.Verdict == event.VerdictBlock:
		ev.Verdict, ev.RuleID = event.VerdictBlock, d.RuleID()
	case denied:
		// Not a Block rule: an allow-list miss (or a rule shape the table
		// reads differently from the profile; the kernel's word stands).
		ev.Verdict = event.VerdictPostureBlock
	case d.Verdict == event.VerdictAudit:
		ev.Verdict, ev.RuleID = event.VerdictAudit, d.RuleID()
	default:
		return event.Event{}, false
	}
	if denied {
		ev.Retval = -int64(unix.EACCES)
		if ev.Operation == event.OpCapabilities {
			ev.Retval = -int64(unix.EPERM)
		}
	}
	fillProc(&ev)
	return ev, true
}

// recordFacts are the facts an audit record tells: the access asked for
// and whether the process owns the file.
func recordFacts(f map[string]string) decide.Facts {
	return facts{
		write: strings.ContainsAny(f["requested_mask"], "wacdlk"),
		owner: f["fsuid"] != "" && f["fsuid"] == f["ouid"],
	}
}

type facts struct{ write, owner bool }

func (f facts) Write() bool { return f.write }
func (f facts) Owner() bool { return f.owner }
func (f facts) TTY() bool   { return false }

// fillProc completes the process fields from /proc while the process lives.
func fillProc(ev *event.Event) {
	pid := strconv.Itoa(int(ev.HostPID))
	if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				ev.HostPPID, ev.PPID = uint32(n), uint32(n)
			}
		}
	}
	if ev.Exe == "" {
		ev.Exe, _ = os.Readlink("/proc/" + pid + "/exe")
	}
	if ev.ParentExe == "" && ev.HostPPID > 0 {
		ev.ParentExe, _ = os.Readlink("/proc/" + strconv.Itoa(int(ev.HostPPID)) + "/exe")
	}
}

// auditSocket reads an audit record's sock_type ("stream") and protocol
// (a number, "0" or absent when the socket was created with protocol 0, for
// which the kernel picks TCP or UDP by the type).
// auditSocketFields is the event's Socket: the record's family ("inet",
// "inet6"), its type, and its protocol as asked.
func auditSocketFields(family string, typ hostpolicy.SocketType, protocol string) event.Socket {
	s := event.Socket{Type: typ.Number}
	switch family {
	case "inet":
		s.Family = unix.AF_INET
	case "inet6":
		s.Family = unix.AF_INET6
	}
	if n, err := strconv.ParseUint(protocol, 10, 32); err == nil {
		s.Protocol = uint32(n)
	}
	return s
}

func auditSocket(sockType, protocol string) (hostpolicy.SocketType, hostpolicy.IPProtocol) {
	typ, _ := hostpolicy.SocketTypeNamed(sockType)
	var proto hostpolicy.IPProtocol
	if n, err := strconv.ParseUint(protocol, 10, 32); err == nil {
		proto, _ = hostpolicy.IPProtocolNumbered(uint32(n))
	}
	if proto.Name == "" {
		if implied, ok := hostpolicy.IPProtocolNamed(hostpolicy.ImpliedProtocol(typ.Name)); ok {
			proto = implied
		}
	}
	return typ, proto
}
