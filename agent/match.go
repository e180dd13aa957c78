package agent

import (
	"os"
	"strings"
	"syscall"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// matcher decides telemetry events against the rules no kernel enforcer
// decides: syscall rules always, and with no kernel enforcer at all the
// process, file and network rules (Block rules alert as "Audit (Block)",
// allow-list misses as DefaultPosture). Kernel verdicts are never
// re-matched here. The decision itself is hostpolicy/decide's, the one
// every user-space tier shares; this file only turns a telemetry event into
// the engine's question and its answer into the alert's action.
type matcher struct {
	rs     *hostpolicy.RuleSet
	table  *decide.Table
	kernel bool // a kernel enforcer decides process/file/network/capability rules
	// undecided are the Audit rules the kernel enforcer cannot decide (a
	// fromSource network rule under the cgroup socket programs, say): the
	// monitor's telemetry decides them, as with no kernel enforcer.
	undecided map[uint32]bool
	// fileOps decides the file operations other than open (unlink,
	// rename, chmod, ...) that the kernel enforcer cannot refuse (the
	// fanotify tier sees only opens and execs): every file rule, Block
	// ones alerting as "Audit (Block)". nil when the enforcer decides them.
	fileOps *decide.Table
}

// verdict is the matcher's decision for one event.
type verdict struct {
	rule   *hostpolicy.Rule // nil with posture
	action string           // Alert Action: Audit, Block, "Audit (Block)"
	// posture is set for an allow-list miss: the DefaultPosture alert.
	posture bool
}

// actionUnenforced is the Action of a Block rule (or block posture) that
// nothing enforces: it is reported, and says it was not enforced.
const actionUnenforced = "Audit (Block)"

func newMatcher(rs *hostpolicy.RuleSet, kernel bool) *matcher {
	return newMatcherFor(rs, kernel, nil, false)
}

// newMatcherFor is newMatcher with the kernel enforcer's unenforced rules
// (rule ID -> why): those with action Audit are matched here; and with
// opensOnly, an enforcer that cannot refuse the file operations other than
// open, which are then decided here.
func newMatcherFor(rs *hostpolicy.RuleSet, kernel bool, unenforced map[uint32]string, opensOnly bool) *matcher {
	m := &matcher{rs: rs, kernel: kernel, undecided: map[uint32]bool{}}
	if kernel && rs != nil {
		for i := range rs.Rules {
			r := &rs.Rules[i]
			if _, ok := unenforced[r.ID]; ok && r.Action == hostpolicy.ActionAudit {
				m.undecided[r.ID] = true
			}
		}
	}
	m.table = decide.New(rs, func(r *hostpolicy.Rule) bool { return !m.userSpace(r) })
	if kernel && opensOnly {
		m.fileOps = decide.New(rs, func(r *hostpolicy.Rule) bool { return r.Category != hostpolicy.CategoryFile })
	}
	return m
}

// userSpace reports whether this matcher, rather than the kernel, decides r.
func (m *matcher) userSpace(r *hostpolicy.Rule) bool {
	switch r.Category {
	case hostpolicy.CategorySyscall:
		return true
	case hostpolicy.CategoryProcess, hostpolicy.CategoryFile, hostpolicy.CategoryNetwork:
		return !m.kernel || m.undecided[r.ID]
	}
	return false // capabilities have no telemetry here; DNS and devices are not enforced
}

// match decides one telemetry event; proc is the program the event is
// about (for an exec, the program started) and parent its parent. ok is
// false when no rule applies and no default posture is due.
func (m *matcher) match(ev *event.Event, proc, parent string) (verdict, bool) {
	var d decide.Decision
	if m.kernel && ev.Retval < 0 && ev.Operation != event.OpSyscall {
		// Beside a kernel enforcer only Audit rules are matched here, and
		// an Audit alert is for an operation that passed (upstream's
		// decision table); a refused one was the kernel's to report.
		return verdict{}, false
	}
	switch ev.Operation {
	case event.OpProcess:
		if ev.Retval < 0 {
			return verdict{}, false // a failed exec ran nothing
		}
		d = m.table.Path(hostpolicy.CategoryProcess, proc, parent, false, eventFacts{ev: ev, path: proc})
	case event.OpFile:
		p, tbl := firstField(ev.Resource), m.table
		if isOpen(ev.Syscall) {
			// A directory opened by itself matches its own directory
			// rules; the monitor's Data says O_DIRECTORY (as display
			// text, for now).
			d = tbl.Path(hostpolicy.CategoryFile, p, proc, strings.Contains(ev.Data, "O_DIRECTORY"), eventFacts{ev: ev, path: p})
			break
		}
		// Every other file operation changes the file system: it is
		// decided as a write, as the BPF-LSM tier's path hooks do.
		if m.kernel {
			if m.fileOps == nil {
				return verdict{}, false // the kernel enforcer decided it
			}
			tbl = m.fileOps
		}
		d = tbl.Path(hostpolicy.CategoryFile, p, proc, isDirOp(ev), eventFacts{ev: ev, path: p, write: true})
	case event.OpNetwork:
		typ, proto, ok := socketOf(ev.Resource)
		if !ok {
			return verdict{}, false
		}
		d = m.table.Network(typ, proto, proc, eventFacts{ev: ev})
	case event.OpSyscall:
		if r := m.table.Syscall(ev.Syscall, proc, firstField(ev.Resource)); r != nil {
			return verdict{rule: r, action: hostpolicy.ActionAudit}, true
		}
		return verdict{}, false
	default:
		return verdict{}, false
	}
	switch d.Verdict {
	case event.VerdictAudit:
		return verdict{rule: d.Rule, action: hostpolicy.ActionAudit}, true
	case event.VerdictBlock:
		return verdict{rule: d.Rule, action: actionUnenforced}, true
	case event.VerdictPostureAudit:
		return verdict{action: hostpolicy.ActionAudit, posture: true}, true
	case event.VerdictPostureBlock:
		return verdict{action: actionUnenforced, posture: true}, true
	}
	return verdict{}, false
}

// eventFacts answers the engine's questions from a telemetry event. The
// access asked for is read back from the Data string the monitor formatted
// (event.Event has no structured open flags yet); the owner is the file's
// owner now, compared with the event's uid.
type eventFacts struct {
	ev    *event.Event
	path  string
	write bool // an operation that changes the file system, whatever its Data
}

func (f eventFacts) Write() bool { return f.write || isWrite(f.ev.Data) }
func (f eventFacts) TTY() bool   { return f.ev.TTY != "" }
func (f eventFacts) Owner() bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Uid == f.ev.UID
}

func isOpen(sys string) bool {
	return sys == "SYS_OPEN" || sys == "SYS_OPENAT" || sys == "SYS_OPENAT2"
}

// isDirOp: the operation's path names a directory (rmdir, mkdir, unlinkat
// with AT_REMOVEDIR), which matches its own directory rules.
func isDirOp(ev *event.Event) bool {
	switch ev.Syscall {
	case "SYS_RMDIR", "SYS_MKDIR", "SYS_MKDIRAT":
		return true
	case "SYS_UNLINKAT":
		return strings.Contains(ev.Data, "AT_REMOVEDIR")
	}
	return false
}

func isWrite(data string) bool {
	return strings.Contains(data, "O_WRONLY") || strings.Contains(data, "O_RDWR") ||
		strings.Contains(data, "O_TRUNC") || strings.Contains(data, "O_CREAT")
}

func firstField(s string) string {
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// socketOf reads the socket type and IP protocol of a socket() Resource
// ("domain=AF_INET type=SOCK_STREAM protocol=TCP", reference §2.5), as the
// engine's Network wants them. As the kernel enforcer, only AF_INET and
// AF_INET6 sockets are decided, and protocol 0 of a stream or datagram
// socket is TCP or UDP. The monitor's event carries these as display text
// only, so they are parsed back here (structured fields are a later step).
func socketOf(resource string) (sockType, proto string, ok bool) {
	if !strings.Contains(resource, "domain=AF_INET ") && !strings.Contains(resource, "domain=AF_INET6 ") {
		return "", "", false
	}
	for _, t := range []struct{ key, typ string }{
		{"SOCK_STREAM", "stream"}, {"SOCK_DGRAM", "dgram"}, {"SOCK_RAW", "raw"}, {"SOCK_RDM", "rdm"},
		{"SOCK_SEQPACKET", "seqpacket"}, {"SOCK_DCCP", "dccp"}, {"SOCK_PACKET", "packet"},
	} {
		if strings.Contains(resource, "type="+t.key) {
			sockType = t.typ
			break
		}
	}
	for _, p := range []struct{ key, proto string }{
		{"protocol=TCP", "tcp"}, {"protocol=UDP", "udp"}, {"protocol=IPv6-ICMP", "icmpv6"},
		{"protocol=ICMPv6", "icmpv6"}, {"protocol=ICMP", "icmp"}, {"protocol=SCTP", "sctp"},
	} {
		if strings.Contains(resource, p.key) {
			proto = p.proto
			break
		}
	}
	// Protocol 0 prints as HOPOPT (the monitor's form, as upstream's).
	if proto == "" && (strings.Contains(resource, "protocol=0") || strings.Contains(resource, "protocol=HOPOPT")) {
		switch sockType {
		case "stream":
			proto = "tcp"
		case "dgram":
			proto = "udp"
		}
	}
	return sockType, proto, sockType != "" || proto != ""
}
