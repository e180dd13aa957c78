// Package decide is the one user-space answer to "what does the RuleSet say
// about this exec, open, socket, capability use or syscall". Every user-space
// consumer asks it: the fanotify tier decides with it, the AppArmor tier
// attributes a kernel denial to the rule that caused it, and the
// monitor-only tier's matcher (agent/match.go) alerts with it. Its
// semantics are the BPF-LSM enforcer's decide() in enforce/bpflsm/c/enforcer.bpf.c,
// which is the reference where they could differ; hostpolicy/conformance
// holds the cases both must pass.
//
// Matching order for a path, first rule per action (Block, Audit, Allow)
// wins: exact path (for the source, then for any source) > exec name >
// deepest directory (for the source before any source at the same depth) >
// first pattern. The action decides, not how specific the match was: an
// applicable Block rule denies, else an applicable Audit rule reports
// (an Audit rule on a file does not lift a Block rule on its directory),
// else in allow-list mode an operation no Allow rule covers gets the
// category's default posture. A rule applies unless its terminal condition
// (pts: false) is unmet or the operation is its flags' exception (readOnly:
// reads; ownerOnly: the owner).
package decide

import (
	"path"
	"sort"
	"strings"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// Facts describes the operation being decided. They are asked for lazily:
// only rules with readOnly, ownerOnly or a TTY condition need them, and
// finding them out can cost a /proc read.
type Facts interface {
	Write() bool // the open asks for write access
	Owner() bool // the process's fsuid owns the file
	TTY() bool   // the process has a controlling terminal
}

// NoFacts is a read by a non-owner without a terminal.
type NoFacts struct{}

func (NoFacts) Write() bool { return false }
func (NoFacts) Owner() bool { return false }
func (NoFacts) TTY() bool   { return false }

// Decision is the outcome for one operation.
type Decision struct {
	Verdict event.Verdict // VerdictNone: allowed, nothing to report
	Rule    *hostpolicy.Rule
	Deny    bool
	// ByFile: an exec refused by the file rules, at the open of the
	// program (Exec); its report is a file operation's.
	ByFile bool
}

// RuleID is the deciding rule's ID, 0 for default posture or none.
func (d Decision) RuleID() uint32 {
	if d.Rule == nil {
		return 0
	}
	return d.Rule.ID
}

const (
	slotBlock = iota
	slotAudit
	slotAllow
	nSlots
)

type slots [nSlots]*hostpolicy.Rule

// merge fills the empty slots of s from o: earlier matches take precedence.
func (s *slots) merge(o slots) {
	for i := range s {
		if s[i] == nil {
			s[i] = o[i]
		}
	}
}

func (s *slots) put(r *hostpolicy.Rule) {
	i := slotOf(r.Action)
	if i >= 0 && s[i] == nil {
		s[i] = r
	}
}

func slotOf(action string) int {
	switch action {
	case hostpolicy.ActionBlock:
		return slotBlock
	case hostpolicy.ActionAudit:
		return slotAudit
	case hostpolicy.ActionAllow:
		return slotAllow
	}
	return -1
}

type key struct{ source, value string }

type dirRule struct {
	rule  *hostpolicy.Rule
	depth int
}

// category holds the rules of one category, indexed for the match order.
type category struct {
	exact        map[key]slots
	names        map[key]slots
	dirs         []dirRule // deepest first, then in rule order
	patterns     []*hostpolicy.Rule
	allowAll     bool
	allowSources map[string]bool
	postureBlock bool
	rules        int
	values       map[string]bool // exact values and exec names of every source
}

// Table is a RuleSet indexed for decisions. It is immutable once built, so
// one can be swapped in atomically while others decide with the old one.
type Table struct {
	rs       *hostpolicy.RuleSet
	cats     map[hostpolicy.Category]*category
	syscalls map[string][]*hostpolicy.Rule // syscall rules by syscall name, in rule order
}

// Categories the table decides.
var decided = []hostpolicy.Category{hostpolicy.CategoryProcess, hostpolicy.CategoryFile, hostpolicy.CategoryNetwork, hostpolicy.CategoryCapabilities}

// New indexes the host rules of rs (process, file, network, capabilities
// and syscalls). Skip reports the rules the caller cannot enforce; they are
// left out of every decision.
func New(rs *hostpolicy.RuleSet, skip func(*hostpolicy.Rule) bool) *Table {
	if rs == nil {
		return build(nil, nil, hostpolicy.Postures{}, skip)
	}
	return build(rs, rs.Rules, rs.Postures, skip)
}

// ForContainer indexes the rules that decide for the processes of container
// c, as the BPF-LSM enforcer scopes them (enforce/bpflsm/containers.go): the rules
// of the container policies that select c, under the container postures.
// A container no container policy selects has no rules: host policies are
// for the host, never for a container's processes.
func ForContainer(rs *hostpolicy.RuleSet, c hostpolicy.ContainerInfo, skip func(*hostpolicy.Rule) bool) *Table {
	pols := map[string]bool{}
	for _, p := range rs.PoliciesFor(c) {
		pols[p] = true
	}
	var rules []hostpolicy.Rule
	for _, r := range rs.ContainerRules {
		if pols[r.Policy] {
			rules = append(rules, r)
		}
	}
	return build(rs, rules, rs.ContainerPostures, skip)
}

func build(rs *hostpolicy.RuleSet, rules []hostpolicy.Rule, postures hostpolicy.Postures, skip func(*hostpolicy.Rule) bool) *Table {
	t := &Table{rs: rs, cats: map[hostpolicy.Category]*category{}, syscalls: map[string][]*hostpolicy.Rule{}}
	for _, c := range decided {
		t.cats[c] = &category{exact: map[key]slots{}, names: map[key]slots{}, allowSources: map[string]bool{}, values: map[string]bool{}}
		t.cats[c].postureBlock = postures.Of(c) == "block"
	}
	for i := range rules {
		r := &rules[i]
		if r.Category == hostpolicy.CategorySyscall && r.Match == hostpolicy.MatchSyscall && (skip == nil || !skip(r)) {
			t.syscalls[r.Value] = append(t.syscalls[r.Value], r)
			continue
		}
		c := t.cats[r.Category]
		if c == nil || slotOf(r.Action) < 0 || (skip != nil && skip(r)) {
			continue
		}
		c.rules++
		if r.Action == hostpolicy.ActionAllow {
			if r.Source == "" {
				c.allowAll = true
			} else {
				c.allowSources[r.Source] = true
			}
		}
		k := key{r.Source, r.Value}
		c.values[r.Value] = true
		switch r.Match {
		case hostpolicy.MatchPath, hostpolicy.MatchProtocol, hostpolicy.MatchCapability:
			if r.Category == hostpolicy.CategoryNetwork {
				k.value = strings.ToLower(r.Value)
			}
			if r.Category == hostpolicy.CategoryCapabilities {
				k.value = hostpolicy.CanonicalCapability(r.Value)
			}
			s := c.exact[k]
			s.put(r)
			c.exact[k] = s
		case hostpolicy.MatchExecName:
			s := c.names[k]
			s.put(r)
			c.names[k] = s
		case hostpolicy.MatchDirectory:
			c.dirs = append(c.dirs, dirRule{rule: r, depth: strings.Count(r.Value, "/")})
		case hostpolicy.MatchPattern:
			c.patterns = append(c.patterns, r)
		}
	}
	for _, c := range t.cats {
		// Deepest first; at the same depth a rule for a source before one
		// for any source, as the kernel's walk has it.
		sort.SliceStable(c.dirs, func(i, j int) bool {
			a, b := c.dirs[i], c.dirs[j]
			if a.depth != b.depth {
				return a.depth > b.depth
			}
			return a.rule.Source != "" && b.rule.Source == ""
		})
	}
	return t
}

// RuleSet is the RuleSet the table was built from.
func (t *Table) RuleSet() *hostpolicy.RuleSet { return t.rs }

// Has reports whether any rule of the category is decided, or the category
// is in allow-list mode for some program.
func (t *Table) Has(c hostpolicy.Category) bool {
	cat := t.cats[c]
	return cat != nil && cat.rules > 0
}

// Concerns reports whether some rule could decide an exec or open of
// subject, whatever the program: when it does not, the operation is
// allowed without finding out anything else about it.
func (t *Table) Concerns(c hostpolicy.Category, subject string, isDir bool) bool {
	cat := t.cats[c]
	if cat == nil || cat.rules == 0 {
		return false
	}
	if cat.allowAll || len(cat.allowSources) > 0 || cat.values[subject] {
		return true
	}
	if c == hostpolicy.CategoryProcess && len(cat.names) > 0 && cat.values[path.Base(subject)] {
		return true
	}
	for _, d := range cat.dirs {
		if InDir(subject, d.rule.Value, d.rule.Recursive, isDir) {
			return true
		}
	}
	for _, r := range cat.patterns {
		if MatchGlob(r.Value, subject) {
			return true
		}
	}
	return false
}

// Path decides an exec (CategoryProcess: subject is the program, source the
// program that runs it) or an open (CategoryFile: source is the program
// that opens). isDir says the subject is a directory opened by itself.
func (t *Table) Path(c hostpolicy.Category, subject, source string, isDir bool, f Facts) Decision {
	cat := t.cats[c]
	if cat == nil || cat.rules == 0 {
		return Decision{}
	}
	var m slots
	if source != "" {
		m.merge(cat.exact[key{source, subject}])
	}
	m.merge(cat.exact[key{"", subject}])
	if c == hostpolicy.CategoryProcess && len(cat.names) > 0 {
		base := path.Base(subject)
		if source != "" {
			m.merge(cat.names[key{source, base}])
		}
		m.merge(cat.names[key{"", base}])
	}
	var dm slots
	for _, d := range cat.dirs {
		r := d.rule
		if (r.Source == "" || r.Source == source) && InDir(subject, r.Value, r.Recursive, isDir) {
			dm.put(r)
		}
	}
	m.merge(dm)
	for _, r := range cat.patterns {
		if (r.Source == "" || r.Source == source) && MatchGlob(r.Value, subject) {
			m.put(r)
		}
	}
	return decide(cat, m, source, f)
}

// Exec decides an exec of program by the program parent. Before the
// kernel runs a program it opens it for reading, and that open is a file
// open like any other: file rules decide it first, as the kernel tiers'
// open hooks see it (BPF-LSM's file_open, fanotify's FAN_OPEN_PERM, both
// fired by the exec's own open) and as upstream KubeArmor's file_open does.
// A file rule that refuses reading the program (Block, a file allow-list's
// block posture) refuses the exec, and the decision is the file rule's
// (ByFile); otherwise the process rules decide. A file Audit or audit
// posture on the program is not this decision's: the tiers report it
// apart, as the open it is.
func (t *Table) Exec(program, parent string, f Facts) Decision {
	if d := t.Path(hostpolicy.CategoryFile, program, parent, false, readOf{f}); d.Deny {
		d.ByFile = true
		return d
	}
	return t.Path(hostpolicy.CategoryProcess, program, parent, false, f)
}

// readOf is f for the exec's open of the program, which only reads.
type readOf struct{ Facts }

func (readOf) Write() bool { return false }

// Network decides a socket of the given type ("stream", "dgram", "raw", ...)
// and IP protocol ("tcp", "udp", "icmp", ...; "" when not an IP protocol).
func (t *Table) Network(sockType, proto, source string, f Facts) Decision {
	cat := t.cats[hostpolicy.CategoryNetwork]
	if cat == nil || cat.rules == 0 {
		return Decision{}
	}
	srcs := []string{""}
	if source != "" {
		srcs = []string{source, ""}
	}
	var m slots
	for _, src := range srcs {
		for _, v := range []string{sockType, proto, "all"} {
			if v != "" {
				m.merge(cat.exact[key{src, v}])
			}
		}
	}
	return decide(cat, m, source, f)
}

// Capability decides the use of a capability ("net_raw", "CAP_NET_RAW").
func (t *Table) Capability(name, source string, f Facts) Decision {
	cat := t.cats[hostpolicy.CategoryCapabilities]
	if cat == nil || cat.rules == 0 {
		return Decision{}
	}
	name = hostpolicy.CanonicalCapability(name)
	var m slots
	if source != "" {
		m.merge(cat.exact[key{source, name}])
	}
	m.merge(cat.exact[key{"", name}])
	return decide(cat, m, source, f)
}

// HasSyscall reports whether some syscall rule names the call of name
// ("setuid", "SYS_SETUID"): when none does, Syscall finds nothing for it,
// whatever the program and resource.
func (t *Table) HasSyscall(name string) bool {
	if len(t.syscalls) == 0 {
		return false
	}
	return len(t.syscalls[strings.ToLower(strings.TrimPrefix(name, "SYS_"))]) > 0
}

// Syscall finds the syscall rule (always Audit) for a call of name
// ("setuid", "SYS_SETUID") by program on resource (the path the call names,
// "" if none): the first in rule order whose fromSource (a path, or a
// directory) and path (a file, or a directory) cover the call.
func (t *Table) Syscall(name, program, resource string) *hostpolicy.Rule {
	if len(t.syscalls) == 0 {
		// The common case, now asked of every telemetry event that names
		// its syscall: no lower-cased copy of the name.
		return nil
	}
	for _, r := range t.syscalls[strings.ToLower(strings.TrimPrefix(name, "SYS_"))] {
		if r.Source != "" {
			if r.SourceIsDir {
				if !InDir(program, r.Source, r.SourceRecursive, false) {
					continue
				}
			} else if r.Source != program {
				continue
			}
		}
		if p := r.SyscallPath; p != "" {
			if strings.HasSuffix(p, "/") {
				if !InDir(resource, p, r.SyscallRecursive, true) {
					continue
				}
			} else if resource != p {
				continue
			}
		}
		return r
	}
	return nil
}

func decide(cat *category, m slots, source string, f Facts) Decision {
	if r := m[slotBlock]; r != nil && applies(r, f) {
		return Decision{Verdict: event.VerdictBlock, Rule: r, Deny: true}
	}
	if r := m[slotAudit]; r != nil && applies(r, f) {
		return Decision{Verdict: event.VerdictAudit, Rule: r}
	}
	if !cat.allowAll && !cat.allowSources[source] {
		return Decision{}
	}
	if r := m[slotAllow]; r != nil && (!(r.OwnerOnly || isReadOnly(r)) || exempt(r, f)) {
		return Decision{}
	}
	if cat.postureBlock {
		return Decision{Verdict: event.VerdictPostureBlock, Deny: true}
	}
	return Decision{Verdict: event.VerdictPostureAudit}
}

func isReadOnly(r *hostpolicy.Rule) bool {
	return r.ReadOnly && r.Category == hostpolicy.CategoryFile
}

// exempt: the operation is the exception a flagged rule carves out
// (readOnly: reads; ownerOnly: the owner; both: the owner's reads).
func exempt(r *hostpolicy.Rule, f Facts) bool {
	ro := isReadOnly(r)
	if !r.OwnerOnly && !ro {
		return false
	}
	if r.OwnerOnly && !f.Owner() {
		return false
	}
	if ro && f.Write() {
		return false
	}
	return true
}

func applies(r *hostpolicy.Rule, f Facts) bool {
	if r.TTYOnly && !f.TTY() {
		return false
	}
	return !exempt(r, f)
}

// InDir reports whether p is in dir (which ends in "/"): directly, or at
// any depth when recursive. A directory opened by itself (isDir, p without
// the trailing slash) matches its own rules.
func InDir(p, dir string, recursive, isDir bool) bool {
	if isDir && p+"/" == dir {
		return true
	}
	if !strings.HasPrefix(p, dir) || len(p) == len(dir) {
		return false
	}
	return recursive || !strings.Contains(p[len(dir):], "/")
}

// MatchGlob matches the policy glob language: '*' is a run of bytes
// without '/', '?' one byte but '/', [...] a set, '\' escapes; "**" is "*".
func MatchGlob(pattern, name string) bool {
	for strings.Contains(pattern, "**") {
		pattern = strings.ReplaceAll(pattern, "**", "*")
	}
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// LiteralPrefix is the directory part of a glob before its first special
// character ("/etc/*.conf" -> "/etc/").
func LiteralPrefix(pattern string) string {
	i := strings.IndexAny(pattern, "*?[\\")
	if i < 0 {
		return pattern
	}
	return pattern[:strings.LastIndexByte(pattern[:i], '/')+1]
}
