package agent

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"

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
		d = m.table.Exec(proc, parent, factsOf(ev, proc))
	case event.OpFile:
		tbl := m.table
		if ev.File.Op == event.FileOpen {
			d = tbl.Path(hostpolicy.CategoryFile, ev.Path, proc, ev.File.Dir, factsOf(ev, ev.Path))
			break
		}
		// Every other file operation changes the file system: it is
		// decided as a write (File.Write), as the BPF-LSM tier's path
		// hooks do.
		if m.kernel {
			if m.fileOps == nil {
				return verdict{}, false // the kernel enforcer decided it
			}
			tbl = m.fileOps
		}
		d = tbl.Path(hostpolicy.CategoryFile, ev.Path, proc, ev.File.Dir, factsOf(ev, ev.Path))
	case event.OpNetwork:
		typ, proto, ok := socketOf(ev.Socket)
		if !ok {
			return verdict{}, false
		}
		d = m.table.Network(typ, proto, proc, factsOf(ev, ""))
	case event.OpSyscall:
		if r := m.table.Syscall(ev.Syscall, proc, ev.Path); r != nil {
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

// concerns reports whether some rule of m could decide an event of
// operation op made by syscall: when it does not, match and syscallRule
// find nothing for any such event, whatever its process, path, socket or
// return value, and the event need not be decoded to be matched. It
// answers by category, as match asks the engine (an exec is decided by
// file rules before process rules; a DefaultPosture needs allow rules of
// the category), and errs towards true: an operation match does not
// know is concerned.
func (m *matcher) concerns(op, syscall string) bool {
	if m.table.HasSyscall(syscall) {
		return true
	}
	switch op {
	case event.OpProcess:
		return m.table.Has(hostpolicy.CategoryProcess) || m.table.Has(hostpolicy.CategoryFile)
	case event.OpFile:
		return m.table.Has(hostpolicy.CategoryFile) || m.fileOps != nil && m.fileOps.Has(hostpolicy.CategoryFile)
	case event.OpNetwork:
		return m.table.Has(hostpolicy.CategoryNetwork)
	case event.OpSyscall:
		return false // syscall rules only, asked above
	}
	return true
}

// syscallRule is the syscall rule that audits an event another category
// reports (a File, Process or Network event made by a named system call);
// Syscall events themselves are matched by match.
func (m *matcher) syscallRule(ev *event.Event, proc string) *hostpolicy.Rule {
	if ev.Operation == event.OpSyscall || ev.Syscall == "" {
		return nil
	}
	return m.table.Syscall(ev.Syscall, proc, ev.Path)
}

// eventFacts answers the engine's questions from a telemetry event's
// structured fields (never its display strings); the owner is the file's
// owner now, compared with the event's uid. It copies the few fields it
// needs rather than pointing at the event, so that the event does not
// escape to the heap through the engine's interface.
type eventFacts struct {
	path  string // the file whose owner is asked for: the program of an exec, the file of a file operation
	uid   uint32
	write bool
	tty   bool
}

func factsOf(ev *event.Event, path string) eventFacts {
	return eventFacts{path: path, uid: ev.UID, write: ev.File.Write(), tty: ev.TTY != ""}
}

func (f eventFacts) Write() bool { return f.write }
func (f eventFacts) TTY() bool   { return f.tty }
func (f eventFacts) Owner() bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Uid == f.uid
}

// socketOf is the socket type and IP protocol of a socket, as the engine's
// Network wants them. As the kernel enforcer, only AF_INET and AF_INET6
// sockets are decided, and protocol 0 of a stream or datagram socket is
// TCP or UDP.
func socketOf(s event.Socket) (sockType, proto string, ok bool) {
	if s.Family != unix.AF_INET && s.Family != unix.AF_INET6 {
		return "", "", false
	}
	if t, ok := hostpolicy.SocketTypeNumbered(s.Type); ok {
		sockType = t.Name
	}
	if p, ok := hostpolicy.IPProtocolNumbered(s.Protocol); ok {
		proto = p.Name
	}
	if s.Protocol == 0 {
		proto = hostpolicy.ImpliedProtocol(sockType)
	}
	return sockType, proto, sockType != "" || proto != ""
}
