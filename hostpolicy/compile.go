package hostpolicy

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Category groups rules the way enforcers and default postures see them.
type Category uint8

const (
	CategoryProcess Category = iota + 1
	CategoryFile
	CategoryNetwork
	CategoryCapabilities
	CategorySyscall
	CategoryDNS
	CategoryDevice
)

func (c Category) String() string {
	switch c {
	case CategoryProcess:
		return "Process"
	case CategoryFile:
		return "File"
	case CategoryNetwork:
		return "Network"
	case CategoryCapabilities:
		return "Capabilities"
	case CategorySyscall:
		return "Syscall"
	case CategoryDNS:
		return "DNS"
	case CategoryDevice:
		return "Device"
	}
	return fmt.Sprintf("Category(%d)", uint8(c))
}

// MatchKind says how Rule.Value is compared with an event.
type MatchKind uint8

const (
	MatchPath       MatchKind = iota + 1 // Value is an absolute file path
	MatchDirectory                       // Value is a directory ending in "/"; see Recursive
	MatchPattern                         // Value is a glob: * and ? do not cross "/"
	MatchExecName                        // Value is a file name compared with the exe's base name
	MatchProtocol                        // Value is tcp, udp, icmp, icmpv6, raw, sctp, stream, ... or all
	MatchCapability                      // Value is a capability name without cap_, e.g. net_raw
	MatchSyscall                         // Value is a syscall name, e.g. setuid; see SyscallPath
	MatchDomain                          // Value is a DNS name
	MatchDevice                          // Value is a USB class description
)

func (m MatchKind) String() string {
	return [...]string{"", "Path", "Directory", "Glob", "ExecName", "Protocol", "Capability", "Syscall", "DNS", "Device"}[m]
}

// Rule is one compiled rule: one policy rule for one fromSource entry (or for
// any source), and for syscall rules one syscall. Enforcers translate rules;
// the alert builder maps a kernel verdict's ID back to the metadata here.
type Rule struct {
	ID       uint32
	Category Category
	Match    MatchKind
	Value    string

	Recursive   bool     // MatchDirectory: also below subdirectories
	ReadOnly    bool     // file rules: reads are the allowed/blocked thing's exception (see reference §3.3)
	OwnerOnly   bool     // only the file's owner is allowed
	TTYOnly     bool     // pts: false - the rule applies only to processes with a terminal
	AllowedArgs []string // process rules: argument allow-list

	// Source restricts the rule to one program (fromSource path), or with
	// SourceIsDir to the programs under a directory (syscall rules only).
	Source          string
	SourceIsDir     bool
	SourceRecursive bool

	// SyscallPath is the path a syscalls.matchPaths rule restricts to
	// (a directory when it ends in "/", see SyscallRecursive).
	SyscallPath      string
	SyscallRecursive bool

	Action   string // Allow, Audit or Block
	Policy   string
	Severity int
	Tags     []string
	Message  string
	Origin   string // file:line of the rule, for status and errors
}

// Postures are the default postures for allow-list categories: "audit" or "block".
type Postures struct {
	File         string
	Network      string
	Capabilities string
}

// DefaultPostures is upstream's default: audit everything an allow-list misses.
var DefaultPostures = Postures{File: "audit", Network: "audit", Capabilities: "audit"}

// RuleSet is the compiled, enforcer-neutral form of the policies in force.
//
// Rules hold host policies only, so every enforcer that knows nothing of
// containers keeps enforcing exactly what it did; the rules of container
// policies (KubeArmorPolicy) are apart in ContainerRules, and only an
// enforcer that can scope rules to a container reads them (container.go).
type RuleSet struct {
	Rules    []Rule   // host rules, ordered by policy name, then rule order in the policy
	Policies []string // names of the policies compiled (host and container), sorted
	Postures Postures

	ContainerRules    []Rule            // rules of container policies, in the same order
	ContainerPolicies []ContainerPolicy // sorted by name
	ContainerPostures Postures          // default postures inside containers

	byID    map[uint32]int
	ctrByID map[uint32]int
}

// Rule returns the rule with the given ID, host or container.
func (rs *RuleSet) Rule(id uint32) (*Rule, bool) {
	if i, ok := rs.byID[id]; ok {
		return &rs.Rules[i], true
	}
	if i, ok := rs.ctrByID[id]; ok {
		return &rs.ContainerRules[i], true
	}
	return nil, false
}

// AllowList reports whether a category is in allow-list mode: some rule in it
// is an Allow rule, so everything the Allow rules miss gets the default
// posture. Each category has its own mode, as upstream's BPF-LSM keys do; only
// the posture value is shared (see Posture).
func (rs *RuleSet) AllowList(c Category) bool {
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Action == ActionAllow && r.Category == c {
			return true
		}
	}
	return false
}

// Posture returns the default posture ("audit" or "block") of a category.
// Process and file share the file posture (reference §1.7).
func (rs *RuleSet) Posture(c Category) string {
	switch postureGroup(c) {
	case CategoryNetwork:
		return rs.Postures.Network
	case CategoryCapabilities:
		return rs.Postures.Capabilities
	}
	return rs.Postures.File
}

func postureGroup(c Category) Category {
	switch c {
	case CategoryProcess, CategoryFile:
		return CategoryFile
	case CategoryDNS:
		return CategoryNetwork
	}
	return c
}

// Options control compilation.
type Options struct {
	Host     string   // this host's name, for nodeSelector
	Postures Postures // zero fields default to audit

	// Labels are the host's other labels (HostLabels), matched by
	// nodeSelector.matchLabels beside the host name.
	Labels map[string]string

	// ContainerPostures are the default postures of container policies'
	// allow-lists (upstream's defaultFilePosture, ...); zero fields: audit.
	ContainerPostures Postures
}

// Compile turns validated, normalized policies into a RuleSet. Policies whose
// nodeSelector does not pick the host of opts, and policies carrying native AppArmor
// rules (ignored on hosts, as upstream does), contribute no rules. IDs are a
// hash of the policy name and the rule's content, so a rule keeps its ID
// across recompiles while it is unchanged; collisions are resolved in order
// (idAllocator). Compile takes time and memory linear in the number of rules;
// it enforces no cap itself: Validate and Parse cap the rules of a policy and
// of a file, and the store checks the host's total with FitHost.
func Compile(policies []*Policy, opts Options) *RuleSet {
	return compileWith(policies, opts, newIDAllocator())
}

func compileWith(policies []*Policy, opts Options, ids *idAllocator) *RuleSet {
	// Sized from an exact count: growing a slice of Rules by appending
	// copied each rule about twice and was most of a compile's time.
	hostN, ctrN := 0, 0
	for _, p := range policies {
		switch {
		case !compiles(p, opts):
		case p.Kind == KindContainerPolicy:
			ctrN += RulesOf(p)
		default:
			hostN += RulesOf(p)
		}
	}
	rs := &RuleSet{Postures: withDefaults(opts.Postures), ContainerPostures: withDefaults(opts.ContainerPostures),
		Rules: make([]Rule, 0, hostN), byID: make(map[uint32]int, hostN), ctrByID: make(map[uint32]int, ctrN)}
	if ctrN > 0 {
		rs.ContainerRules = make([]Rule, 0, ctrN)
	}
	sorted := append([]*Policy(nil), policies...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Metadata.Name < sorted[j].Metadata.Name })
	for _, p := range sorted {
		if p.Kind == KindContainerPolicy {
			compileContainerPolicy(rs, ids, p)
			continue
		}
		if !opts.Selects(p) || p.Spec.AppArmor != "" {
			continue
		}
		rs.Policies = append(rs.Policies, p.Metadata.Name)
		c := compiler{rs: rs, ids: ids, p: p}
		c.policy()
	}
	return rs
}

func withDefaults(p Postures) Postures {
	if p.File == "" {
		p.File = DefaultPostures.File
	}
	if p.Network == "" {
		p.Network = DefaultPostures.Network
	}
	if p.Capabilities == "" {
		p.Capabilities = DefaultPostures.Capabilities
	}
	return p
}

type compiler struct {
	rs        *RuleSet
	ids       *idAllocator // shared by every policy of one compile
	p         *Policy
	container bool // the rules go to ContainerRules
}

func (c *compiler) policy() {
	s := &c.p.Spec
	for i, r := range s.Process.MatchPaths {
		base := Rule{Category: CategoryProcess, Match: MatchPath, Value: r.Path, OwnerOnly: r.OwnerOnly,
			TTYOnly: ttyOnly(r.Pts), AllowedArgs: r.AllowedArgs}
		if r.ExecName != "" {
			base.Match, base.Value = MatchExecName, r.ExecName
		}
		c.add(base, r.Meta, r.FromSource, fmt.Sprintf("spec.process.matchPaths[%d]", i))
	}
	for i, r := range s.Process.MatchDirectories {
		c.add(Rule{Category: CategoryProcess, Match: MatchDirectory, Value: r.Dir, Recursive: r.Recursive,
			OwnerOnly: r.OwnerOnly, TTYOnly: ttyOnly(r.Pts)}, r.Meta, r.FromSource, fmt.Sprintf("spec.process.matchDirectories[%d]", i))
	}
	for i, r := range s.Process.MatchPatterns {
		c.add(Rule{Category: CategoryProcess, Match: MatchPattern, Value: r.Pattern, OwnerOnly: r.OwnerOnly},
			r.Meta, nil, fmt.Sprintf("spec.process.matchPatterns[%d]", i))
	}
	for i, r := range s.File.MatchPaths {
		c.add(Rule{Category: CategoryFile, Match: MatchPath, Value: r.Path, ReadOnly: r.ReadOnly,
			OwnerOnly: r.OwnerOnly, TTYOnly: ttyOnly(r.Pts)}, r.Meta, r.FromSource, fmt.Sprintf("spec.file.matchPaths[%d]", i))
	}
	for i, r := range s.File.MatchDirectories {
		c.add(Rule{Category: CategoryFile, Match: MatchDirectory, Value: r.Dir, Recursive: r.Recursive,
			ReadOnly: r.ReadOnly, OwnerOnly: r.OwnerOnly, TTYOnly: ttyOnly(r.Pts)}, r.Meta, r.FromSource,
			fmt.Sprintf("spec.file.matchDirectories[%d]", i))
	}
	for i, r := range s.File.MatchPatterns {
		c.add(Rule{Category: CategoryFile, Match: MatchPattern, Value: r.Pattern, ReadOnly: r.ReadOnly,
			OwnerOnly: r.OwnerOnly}, r.Meta, nil, fmt.Sprintf("spec.file.matchPatterns[%d]", i))
	}
	for i, r := range s.Network.MatchProtocols {
		c.add(Rule{Category: CategoryNetwork, Match: MatchProtocol, Value: r.Protocol, TTYOnly: ttyOnly(r.Pts)},
			r.Meta, r.FromSource, fmt.Sprintf("spec.network.matchProtocols[%d]", i))
	}
	for i, r := range s.Network.MatchDNSQueries {
		c.add(Rule{Category: CategoryDNS, Match: MatchDomain, Value: r.Domain},
			r.Meta, r.FromSource, fmt.Sprintf("spec.network.matchDNSQueries[%d]", i))
	}
	for i, r := range s.Capabilities.MatchCapabilities {
		c.add(Rule{Category: CategoryCapabilities, Match: MatchCapability, Value: r.Capability},
			r.Meta, r.FromSource, fmt.Sprintf("spec.capabilities.matchCapabilities[%d]", i))
	}
	for i, r := range s.Syscalls.MatchSyscalls {
		for _, sc := range r.Syscall {
			c.add(Rule{Category: CategorySyscall, Match: MatchSyscall, Value: sc},
				withAudit(r.Meta), r.FromSource, fmt.Sprintf("spec.syscalls.matchSyscalls[%d]", i))
		}
	}
	for i, r := range s.Syscalls.MatchPaths {
		for _, sc := range r.Syscall {
			c.add(Rule{Category: CategorySyscall, Match: MatchSyscall, Value: sc, SyscallPath: r.Path,
				SyscallRecursive: r.Recursive}, withAudit(r.Meta), r.FromSource, fmt.Sprintf("spec.syscalls.matchPaths[%d]", i))
		}
	}
	for i, r := range s.Device.MatchDevice {
		c.add(Rule{Category: CategoryDevice, Match: MatchDevice, Value: deviceValue(r)},
			r.Meta, nil, fmt.Sprintf("spec.device.matchDevice[%d]", i))
	}
}

func withAudit(m Meta) Meta {
	m.Action = ActionAudit
	return m
}

func ttyOnly(pts *bool) bool { return pts != nil && !*pts }

func deviceValue(d Device) string {
	v := "USB " + strings.ToUpper(d.Class)
	for _, f := range []*int{d.SubClass, d.Protocol} {
		if f == nil {
			v += "_*"
		} else {
			v += fmt.Sprintf("_%d", *f)
		}
	}
	if d.Level != nil {
		v += fmt.Sprintf(" %d", *d.Level)
	}
	return v
}

// add appends one rule per fromSource entry (or one for any source).
func (c *compiler) add(base Rule, m Meta, sources []Source, fieldPath string) {
	base.Action = m.Action
	base.Policy = c.p.Metadata.Name
	base.Severity = m.Severity
	base.Tags = m.Tags
	base.Message = m.Message
	base.Origin = c.p.Origin.File + ":" + strconv.Itoa(c.p.Origin.LineOf(fieldPath))
	if len(sources) == 0 {
		c.insert(base)
		return
	}
	for _, s := range sources {
		r := base
		if s.Dir != "" {
			r.Source, r.SourceIsDir, r.SourceRecursive = s.Dir, true, s.Recursive
		} else {
			r.Source = s.Path
		}
		c.insert(r)
	}
}

func (c *compiler) insert(r Rule) {
	r.ID = c.ids.next(ruleHash(r), c.rs)
	if c.container {
		c.rs.ctrByID[r.ID] = len(c.rs.ContainerRules)
		c.rs.ContainerRules = append(c.rs.ContainerRules, r)
		return
	}
	c.rs.byID[r.ID] = len(c.rs.Rules)
	c.rs.Rules = append(c.rs.Rules, r)
}

// maxIDAttempts bounds the rehashes of one rule ID before the fallback.
const maxIDAttempts = 16

// idAllocator hands out rule IDs in constant time per rule, whatever the
// input. A rule's ID is the hash of its content when that is free. When it
// is taken, by an identical rule (a file that repeats one entry through YAML
// aliases) or by a true collision, the k-th such rule gets the hash of
// (hash, k, attempt), rehashed with the next attempt while taken; after
// maxIDAttempts (reached only by crafted hashes) it takes the highest free
// ID, scanning down from a cursor that never moves back up. The linear
// probing this replaces (hash, hash+1, ...) cost O(n) per identical rule:
// 90,000 aliased rules held the store lock for about a minute.
type idAllocator struct {
	occurrences map[uint32]uint32 // rules that found their hash taken, per hash
	fallback    uint32            // every ID above it is taken
	probes      int               // IDs tried, for the linearity test
}

func newIDAllocator() *idAllocator {
	return &idAllocator{occurrences: map[uint32]uint32{}, fallback: ^uint32(0)}
}

// next returns a free, nonzero ID for a rule whose content hashes to h. The
// ID depends only on the rule's content and on the rules compiled before it
// (policies in name order, rules in policy order), so an unchanged rule keeps
// its ID across recompiles unless a rule before it changes to or from an
// identical or colliding one.
func (a *idAllocator) next(h uint32, rs *RuleSet) uint32 {
	a.probes++
	if h != 0 && !rs.taken(h) {
		return h
	}
	k := a.occurrences[h] + 1
	a.occurrences[h] = k
	for attempt := uint32(0); attempt < maxIDAttempts; attempt++ {
		a.probes++
		if id := mixID(h, k, attempt); id != 0 && !rs.taken(id) {
			return id
		}
	}
	for ; ; a.fallback-- {
		a.probes++
		if a.fallback != 0 && !rs.taken(a.fallback) {
			id := a.fallback
			a.fallback--
			return id
		}
	}
}

func (rs *RuleSet) taken(id uint32) bool {
	if _, ok := rs.byID[id]; ok {
		return true
	}
	_, ok := rs.ctrByID[id]
	return ok
}

// mixID is FNV-1a over the 12 little-endian bytes of (h, k, attempt).
func mixID(h, k, attempt uint32) uint32 {
	var b [12]byte
	binary.LittleEndian.PutUint32(b[0:], h)
	binary.LittleEndian.PutUint32(b[4:], k)
	binary.LittleEndian.PutUint32(b[8:], attempt)
	return fnv32a(b[:])
}

// ruleHash is the stable part of a rule's identity: which policy, what it
// matches, what it does. The bytes hashed are those of the format
// "%s\x00%d\x00%d\x00%s\x00%t%t%t%t\x00%s\x00%t%t\x00%s\x00%t\x00%s\x00%s" over
// (Policy, Category, Match, Value, Recursive, ReadOnly, OwnerOnly, TTYOnly,
// Source, SourceIsDir, SourceRecursive, SyscallPath, SyscallRecursive,
// Action, AllowedArgs joined by NUL), built without fmt so a compile
// allocates nothing per rule for its ID.
func ruleHash(r Rule) uint32 {
	var buf [512]byte
	b := buf[:0]
	b = append(b, r.Policy...)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(r.Category), 10)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(r.Match), 10)
	b = append(b, 0)
	b = append(b, r.Value...)
	b = append(b, 0)
	b = strconv.AppendBool(b, r.Recursive)
	b = strconv.AppendBool(b, r.ReadOnly)
	b = strconv.AppendBool(b, r.OwnerOnly)
	b = strconv.AppendBool(b, r.TTYOnly)
	b = append(b, 0)
	b = append(b, r.Source...)
	b = append(b, 0)
	b = strconv.AppendBool(b, r.SourceIsDir)
	b = strconv.AppendBool(b, r.SourceRecursive)
	b = append(b, 0)
	b = append(b, r.SyscallPath...)
	b = append(b, 0)
	b = strconv.AppendBool(b, r.SyscallRecursive)
	b = append(b, 0)
	b = append(b, r.Action...)
	b = append(b, 0)
	for i, a := range r.AllowedArgs {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, a...)
	}
	return fnv32a(b)
}

// fnv32a is hash/fnv's FNV-1a, inline so the buffer stays on the stack.
func fnv32a(b []byte) uint32 {
	const prime = 16777619
	sum := uint32(2166136261)
	for _, c := range b {
		sum ^= uint32(c)
		sum *= prime
	}
	return sum
}
