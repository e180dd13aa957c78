package agent

import (
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// matcher decides telemetry events against the rules no kernel enforcer
// decides: syscall rules always, and Audit rules (and, with no kernel
// enforcer at all, Block and Allow rules as "Audit (Block)" and default
// posture) of the process, file and network categories. Kernel verdicts are
// never re-matched here.
type matcher struct {
	rs     *hostpolicy.RuleSet
	byCat  map[hostpolicy.Category]*ruleIndex
	kernel bool // a kernel enforcer decides process/file/network/capability rules
}

// ruleIndex finds candidate rules of one category: exact values by map, the
// rest (directories, patterns, exec names) by a short scan.
type ruleIndex struct {
	exact  map[string][]*hostpolicy.Rule
	others []*hostpolicy.Rule
	// Allow-list mode, as the BPF-LSM enforcer has it: an Allow rule without
	// fromSource puts every program in allow-list mode for the category, one
	// with fromSource only that program.
	allowAll     bool
	allowSources map[string]bool
}

func (idx *ruleIndex) allowListed(source string) bool {
	return idx.allowAll || idx.allowSources[source]
}

// verdict is the matcher's decision for one event.
type verdict struct {
	rule   *hostpolicy.Rule // nil with posture
	action string           // Alert Action: Audit, Block, "Audit (Block)"
	// posture is set for an allow-list miss: the DefaultPosture alert.
	posture bool
}

func newMatcher(rs *hostpolicy.RuleSet, kernel bool) *matcher {
	m := &matcher{rs: rs, byCat: map[hostpolicy.Category]*ruleIndex{}, kernel: kernel}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if !m.userSpace(r) {
			continue
		}
		idx := m.byCat[r.Category]
		if idx == nil {
			idx = &ruleIndex{exact: map[string][]*hostpolicy.Rule{}, allowSources: map[string]bool{}}
			m.byCat[r.Category] = idx
		}
		if r.Action == hostpolicy.ActionAllow {
			if r.Source == "" {
				idx.allowAll = true
			} else {
				idx.allowSources[r.Source] = true
			}
		}
		switch {
		case r.Match == hostpolicy.MatchProtocol && r.Value == "all":
			idx.others = append(idx.others, r)
		case r.Match == hostpolicy.MatchPath, r.Match == hostpolicy.MatchProtocol, r.Match == hostpolicy.MatchSyscall:
			idx.exact[r.Value] = append(idx.exact[r.Value], r)
		default:
			idx.others = append(idx.others, r)
		}
	}
	return m
}

// userSpace reports whether this matcher, rather than the kernel, decides r.
func (m *matcher) userSpace(r *hostpolicy.Rule) bool {
	switch r.Category {
	case hostpolicy.CategorySyscall:
		return true
	case hostpolicy.CategoryProcess, hostpolicy.CategoryFile, hostpolicy.CategoryNetwork:
		return !m.kernel
	}
	return false // capabilities have no telemetry here; DNS and devices are not enforced
}

// match decides one telemetry event. ok is false when no rule applies and no
// default posture is due.
func (m *matcher) match(ev *event.Event, proc, parent string) (verdict, bool) {
	var cat hostpolicy.Category
	var subject, source string
	switch ev.Operation {
	case event.OpProcess:
		if ev.Retval < 0 {
			return verdict{}, false // a failed exec ran nothing
		}
		cat, subject, source = hostpolicy.CategoryProcess, proc, parent
	case event.OpFile:
		if !isOpen(ev.Syscall) {
			return verdict{}, false
		}
		cat, subject, source = hostpolicy.CategoryFile, firstField(ev.Resource), proc
	case event.OpNetwork:
		p := protocolOf(ev.Resource)
		if p == "" {
			return verdict{}, false
		}
		cat, subject, source = hostpolicy.CategoryNetwork, p, proc
	case event.OpSyscall:
		return m.matchSyscall(ev, proc)
	default:
		return verdict{}, false
	}
	idx := m.byCat[cat]
	if idx == nil {
		return verdict{}, false
	}
	allowed := false
	check := func(r *hostpolicy.Rule) (verdict, bool) {
		if r.Source != "" && r.Source != source {
			return verdict{}, false
		}
		if !matchesSubject(r, subject) || !m.flagsMatch(r, ev, subject) {
			return verdict{}, false
		}
		switch r.Action {
		case hostpolicy.ActionAllow:
			allowed = true
			return verdict{}, false
		case hostpolicy.ActionAudit:
			return verdict{rule: r, action: hostpolicy.ActionAudit}, true
		default: // Block that no kernel enforcer enforces
			return verdict{rule: r, action: "Audit (Block)"}, true
		}
	}
	for _, r := range idx.exact[subject] {
		if v, ok := check(r); ok {
			return v, true
		}
	}
	for _, r := range idx.others {
		if v, ok := check(r); ok {
			return v, true
		}
	}
	if !allowed && idx.allowListed(source) {
		action := hostpolicy.ActionAudit
		if m.rs.Posture(cat) == "block" {
			action = "Audit (Block)" // block posture that nothing enforces
		}
		return verdict{action: action, posture: true}, true
	}
	return verdict{}, false
}

func matchesSubject(r *hostpolicy.Rule, subject string) bool {
	switch r.Match {
	case hostpolicy.MatchPath, hostpolicy.MatchProtocol:
		return r.Value == subject || r.Value == "all"
	case hostpolicy.MatchExecName:
		return path.Base(subject) == r.Value
	case hostpolicy.MatchDirectory:
		return inDir(subject, r.Value, r.Recursive)
	case hostpolicy.MatchPattern:
		ok, _ := path.Match(r.Value, subject)
		return ok
	}
	return false
}

// inDir: dir ends in "/"; non-recursive rules match files directly in it.
func inDir(p, dir string, recursive bool) bool {
	if !strings.HasPrefix(p, dir) || len(p) == len(dir) {
		return false
	}
	return recursive || !strings.Contains(p[len(dir):], "/")
}

// flagsMatch applies readOnly (only writes match) and ownerOnly (only other
// users than the file's owner match) to file and process rules.
func (m *matcher) flagsMatch(r *hostpolicy.Rule, ev *event.Event, subject string) bool {
	if r.ReadOnly && !isWrite(ev.Data) {
		return false
	}
	if r.OwnerOnly {
		info, err := os.Stat(subject)
		if err != nil {
			return false
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == ev.UID {
			return false
		}
	}
	return true
}

func (m *matcher) matchSyscall(ev *event.Event, proc string) (verdict, bool) {
	idx := m.byCat[hostpolicy.CategorySyscall]
	if idx == nil || ev.Syscall == "" {
		return verdict{}, false
	}
	name := strings.ToLower(strings.TrimPrefix(ev.Syscall, "SYS_"))
	for _, r := range idx.exact[name] {
		if r.Source != "" {
			if r.SourceIsDir {
				if !inDir(proc, r.Source, r.SourceRecursive) {
					continue
				}
			} else if r.Source != proc {
				continue
			}
		}
		if r.SyscallPath != "" {
			res := firstField(ev.Resource)
			if strings.HasSuffix(r.SyscallPath, "/") {
				if !inDir(res, r.SyscallPath, r.SyscallRecursive) && res+"/" != r.SyscallPath {
					continue
				}
			} else if res != r.SyscallPath {
				continue
			}
		}
		return verdict{rule: r, action: hostpolicy.ActionAudit}, true
	}
	return verdict{}, false
}

func isOpen(sys string) bool {
	return sys == "SYS_OPEN" || sys == "SYS_OPENAT" || sys == "SYS_OPENAT2"
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

// protocolOf reads the protocol of a socket() Resource the way upstream does
// (reference §2.5): protocol=TCP/UDP/ICMP/... first, else the socket type.
func protocolOf(resource string) string {
	for _, p := range []struct{ key, proto string }{
		{"protocol=TCP", "tcp"}, {"protocol=UDP", "udp"}, {"protocol=IPv6-ICMP", "icmpv6"},
		{"protocol=ICMPv6", "icmpv6"}, {"protocol=ICMP", "icmp"}, {"protocol=SCTP", "sctp"},
	} {
		if strings.Contains(resource, p.key) {
			return p.proto
		}
	}
	for _, t := range []struct{ key, proto string }{
		{"SOCK_STREAM", "tcp"}, {"SOCK_DGRAM", "udp"}, {"SOCK_RAW", "raw"}, {"SOCK_RDM", "rdm"},
		{"SOCK_SEQPACKET", "seqpacket"}, {"SOCK_DCCP", "dccp"}, {"SOCK_PACKET", "packet"},
	} {
		if strings.Contains(resource, t.key) {
			if strings.Contains(resource, "AF_INET") || t.proto == "raw" || t.proto == "packet" {
				return t.proto
			}
			return ""
		}
	}
	return ""
}
