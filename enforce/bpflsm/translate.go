package bpflsm

import (
	"fmt"
	"strings"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// The numbers of enforcer.h, from the constants bpf2go generates out of its
// enums (gen.go): written once, in the C.

// Layout (enum layout).
const (
	pathLen     = int(enforcerLayoutPATH_LEN)
	maxPatterns = int(enforcerLayoutMAX_PATTERNS)
	genShift    = uint32(enforcerLayoutGEN_SHIFT)
	globSteps   = int(enforcerLayoutGLOB_STEPS)
	scopeShift  = uint32(enforcerLayoutSCOPE_SHIFT)
	maxScopes   = uint32(enforcerLayoutMAX_SCOPES)
	scopeNone   = uint32(enforcerLayoutSCOPE_NONE)
)

// Ways a task is found to be in a container (enum scope_by).
const (
	scopeByCgroup = uint32(enforcerScopeBySCOPE_BY_CGROUP)
	scopeByNS     = uint32(enforcerScopeBySCOPE_BY_NS)
)

// Key kinds (enum key_kind).
const (
	kindExecPath = uint32(enforcerKeyKindK_EXEC_PATH)
	kindExecName = uint32(enforcerKeyKindK_EXEC_NAME)
	kindExecDir  = uint32(enforcerKeyKindK_EXEC_DIR)
	kindFilePath = uint32(enforcerKeyKindK_FILE_PATH)
	kindFileDir  = uint32(enforcerKeyKindK_FILE_DIR)
	kindNetType  = uint32(enforcerKeyKindK_NET_TYPE)
	kindNetProto = uint32(enforcerKeyKindK_NET_PROTO)
	kindNetAny   = uint32(enforcerKeyKindK_NET_ANY)
	kindCap      = uint32(enforcerKeyKindK_CAP)
	kindAncestor = uint32(enforcerKeyKindK_ANCESTOR)
)

// Slots: one rule per action on a key (enum slot, bpf/include/kubearmor.h).
const (
	slotBlock = uint8(enforcerSlotSLOT_BLOCK)
	slotAudit = uint8(enforcerSlotSLOT_AUDIT)
	slotAllow = uint8(enforcerSlotSLOT_ALLOW)
)

// Rule flags (enum rule_flag).
const (
	flagOwner     = uint32(enforcerRuleFlagF_OWNER)
	flagReadOnly  = uint32(enforcerRuleFlagF_READONLY)
	flagRecursive = uint32(enforcerRuleFlagF_RECURSIVE)
	flagTTY       = uint32(enforcerRuleFlagF_TTY)
)

// Categories, the bit positions of allow-list masks (enum category).
const (
	catProcess = uint32(enforcerCategoryCAT_PROCESS)
	catFile    = uint32(enforcerCategoryCAT_FILE)
	catNetwork = uint32(enforcerCategoryCAT_NETWORK)
	catCaps    = uint32(enforcerCategoryCAT_CAPS)
)

// pathEntry and netEntry are map keys without the generation, which Apply adds.
type pathEntry struct {
	kind uint32
	src  uint32
	path string
}

type netEntry struct {
	kind  uint32
	src   uint32
	value uint32
}

type slotRule struct {
	id    uint32
	flags uint32
}

type ruleValue [3]slotRule

type sourceValue struct {
	id        uint32
	allowlist uint32
}

type patternEntry struct {
	id       uint32
	category uint8
	slot     uint8
	flags    uint8
	glob     glob
}

type settings struct {
	allowlist    uint32
	postureBlock uint32
	kinds        uint32
	globalKinds  uint32 // kinds with entries for every task (source 0)
	hasSources   uint32 // low byte: categories with fromSource rules; next byte: with per-source allow-lists
	patternCats  uint32
	caps         uint64
	// The name gate (names.go): per category (process, file), the names
	// the filter must hold, and the categories with a rule that needs no
	// name (they always build the path).
	names    [2]map[string]struct{}
	suffixes [2]map[string]struct{} // patterns' last literal bytes
	noGate   uint32
}

// entries is a RuleSet as the kernel sees it.
type entries struct {
	paths      map[pathEntry]ruleValue
	ancestors  map[pathEntry]ruleValue // kindAncestor keys, from paths and patterns
	nets       map[netEntry]ruleValue
	sources    map[string]sourceValue
	patterns   []patternEntry
	cfg        settings
	unenforced map[uint32]string
}

// translate turns a RuleSet into map entries. Rules it cannot enforce are
// returned in entries.unenforced with the reason; syscall rules belong to
// the monitor and are left out silently.
//
// Allow-list mode is per category (process and file separately, as
// upstream's kernel keys do) and per source: an Allow rule with fromSource
// puts only that program in allow-list mode, one without puts everyone.
// The posture of process and file is the file posture.
func translate(rs *hostpolicy.RuleSet) *entries {
	if rs == nil {
		return translateRules(nil, hostpolicy.Postures{})
	}
	return translateRules(rs.Rules, rs.Postures)
}

// translateRules is translate for one scope: the host's rules, or the
// rules of the container policies that apply to a set of containers.
func translateRules(rules []hostpolicy.Rule, postures hostpolicy.Postures) *entries {
	e := &entries{
		paths:      map[pathEntry]ruleValue{},
		ancestors:  map[pathEntry]ruleValue{},
		nets:       map[netEntry]ruleValue{},
		sources:    map[string]sourceValue{},
		unenforced: map[uint32]string{},
	}
	for i := range rules {
		r := &rules[i]
		if r.Category == hostpolicy.CategorySyscall {
			continue
		}
		if reason := e.add(r); reason != "" {
			e.unenforced[r.ID] = reason
		}
	}
	e.addAncestors()
	for _, c := range []struct {
		cat  uint32
		from hostpolicy.Category
	}{{catProcess, hostpolicy.CategoryProcess}, {catFile, hostpolicy.CategoryFile},
		{catNetwork, hostpolicy.CategoryNetwork}, {catCaps, hostpolicy.CategoryCapabilities}} {
		if postures.Of(c.from) == "block" {
			e.cfg.postureBlock |= 1 << c.cat
		}
	}
	return e
}

func (e *entries) add(r *hostpolicy.Rule) string {
	var slot uint8
	switch r.Action {
	case hostpolicy.ActionBlock:
		slot = slotBlock
	case hostpolicy.ActionAudit:
		slot = slotAudit
	case hostpolicy.ActionAllow:
		slot = slotAllow
	default:
		return fmt.Sprintf("unknown action %q", r.Action)
	}
	var cat uint32
	switch r.Category {
	case hostpolicy.CategoryProcess:
		cat = catProcess
	case hostpolicy.CategoryFile:
		cat = catFile
	case hostpolicy.CategoryNetwork:
		cat = catNetwork
	case hostpolicy.CategoryCapabilities:
		cat = catCaps
	case hostpolicy.CategoryDNS:
		return "DNS rules are not enforced by BPFLSM"
	case hostpolicy.CategoryDevice:
		return "device rules are not enforced by BPFLSM"
	default:
		return fmt.Sprintf("category %s is not enforced by BPFLSM", r.Category)
	}
	if len(r.AllowedArgs) > 0 {
		return "allowedArgs is not enforced by BPFLSM"
	}
	if r.SourceIsDir {
		return "a fromSource directory is not enforced by BPFLSM"
	}
	if len(r.Source) >= pathLen {
		return fmt.Sprintf("fromSource path is longer than %d bytes", pathLen-1)
	}

	var flags uint32
	if r.OwnerOnly {
		flags |= flagOwner
	}
	if r.ReadOnly && r.Category == hostpolicy.CategoryFile {
		flags |= flagReadOnly
	}
	if r.TTYOnly {
		flags |= flagTTY
	}
	if r.Recursive && r.Match == hostpolicy.MatchDirectory {
		flags |= flagRecursive
	}

	var src uint32
	if r.Source != "" {
		if r.Match == hostpolicy.MatchPattern {
			return "fromSource on a pattern is not enforced by BPFLSM"
		}
		src = e.source(r.Source)
		e.cfg.hasSources |= 1 << cat
	}
	if r.Action == hostpolicy.ActionAllow {
		if src != 0 {
			sv := e.sources[r.Source]
			sv.allowlist |= 1 << cat
			e.sources[r.Source] = sv
			e.cfg.hasSources |= 1 << (cat + 8)
		} else {
			e.cfg.allowlist |= 1 << cat
		}
	}
	rule := slotRule{id: r.ID, flags: flags}

	switch r.Match {
	case hostpolicy.MatchPath, hostpolicy.MatchExecName, hostpolicy.MatchDirectory:
		if len(r.Value) >= pathLen {
			return fmt.Sprintf("path is longer than %d bytes", pathLen-1)
		}
		kind, ok := pathKinds[[2]uint32{cat, uint32(r.Match)}]
		if !ok {
			return fmt.Sprintf("%s rules of category %s are not enforced by BPFLSM", r.Match, r.Category)
		}
		e.cfg.gateName(cat, pathName(r.Match, r.Value))
		return e.putPath(pathEntry{kind: kind, src: src, path: r.Value}, slot, rule)
	case hostpolicy.MatchPattern:
		g, err := compileGlob(r.Value)
		if err != nil {
			return "pattern: " + err.Error()
		}
		if len(e.patterns) == maxPatterns {
			return fmt.Sprintf("more than %d patterns", maxPatterns)
		}
		e.patterns = append(e.patterns, patternEntry{id: r.ID, category: uint8(cat), slot: slot, flags: uint8(flags), glob: g})
		e.cfg.gatePattern(cat, g)
		e.cfg.patternCats |= 1 << cat
		return ""
	case hostpolicy.MatchProtocol:
		proto := strings.ToLower(r.Value)
		key := netEntry{src: src}
		if t, ok := hostpolicy.SocketTypeNamed(proto); ok {
			key.kind, key.value = kindNetType, t.Number
		} else if p, ok := hostpolicy.IPProtocolNamed(proto); ok {
			key.kind, key.value = kindNetProto, p.Number
		} else if proto == hostpolicy.ProtocolAll {
			key.kind = kindNetAny
		} else {
			return fmt.Sprintf("unknown protocol %q", r.Value)
		}
		return e.putNet(key, slot, rule)
	case hostpolicy.MatchCapability:
		n, ok := hostpolicy.CapabilityNumber(r.Value)
		if !ok {
			return fmt.Sprintf("unknown capability %q", r.Value)
		}
		e.cfg.caps |= 1 << n
		return e.putNet(netEntry{kind: kindCap, src: src, value: n}, slot, rule)
	}
	return fmt.Sprintf("%s rules are not enforced by BPFLSM", r.Match)
}

var pathKinds = map[[2]uint32]uint32{
	{catProcess, uint32(hostpolicy.MatchPath)}:      kindExecPath,
	{catProcess, uint32(hostpolicy.MatchExecName)}:  kindExecName,
	{catProcess, uint32(hostpolicy.MatchDirectory)}: kindExecDir,
	{catFile, uint32(hostpolicy.MatchPath)}:         kindFilePath,
	{catFile, uint32(hostpolicy.MatchDirectory)}:    kindFileDir,
}

// source returns the id of a fromSource path, numbering new ones from 1.
func (e *entries) source(path string) uint32 {
	if sv, ok := e.sources[path]; ok {
		return sv.id
	}
	id := uint32(len(e.sources) + 1)
	e.sources[path] = sourceValue{id: id}
	return id
}

// putPath and putNet keep the first rule per key and action. A later rule
// with the same flags is enforced by the first one (events carry the first
// rule's ID); one with other flags cannot be, and is reported.
func (e *entries) putPath(k pathEntry, slot uint8, r slotRule) string {
	v := e.paths[k]
	if msg := fill(&v, slot, r); msg != "" {
		return msg
	}
	e.paths[k] = v
	e.cfg.addKind(k.kind, k.src)
	return ""
}

func (e *entries) putNet(k netEntry, slot uint8, r slotRule) string {
	v := e.nets[k]
	if msg := fill(&v, slot, r); msg != "" {
		return msg
	}
	e.nets[k] = v
	e.cfg.addKind(k.kind, k.src)
	return ""
}

// addKind notes that keys of kind exist for source src (0: every task).
func (c *settings) addKind(kind, src uint32) {
	c.kinds |= 1 << kind
	if src == 0 {
		c.globalKinds |= 1 << kind
	}
}

func fill(v *ruleValue, slot uint8, r slotRule) string {
	cur := v[slot]
	if cur.id == 0 {
		v[slot] = r
		return ""
	}
	if cur.flags != r.flags {
		return fmt.Sprintf("rule %d with other flags already decides this path and action", cur.id)
	}
	return ""
}

// addAncestors puts an ancestor entry on every directory above a protected
// path: the path of a file rule (Block or Audit) or of a process Block rule,
// and the literal directory a pattern starts with. The path hooks refuse
// (or audit) renaming such a directory, which would move the protected path
// out from under its rule. A pattern's matches below its literal directory
// are not known here: renaming a directory its wildcards match escapes.
func (e *entries) addAncestors() {
	add := func(dir string, src uint32, slot uint8, r slotRule) {
		// Who may rename the directory is not what ownerOnly or readOnly
		// talk about (every rename is a change); a tty-only rule still
		// applies only to tasks with a tty.
		r.flags &= flagTTY
		for d := dir; len(d) > 1; d = parentDir(d) {
			k := pathEntry{kind: kindAncestor, src: src, path: d}
			v := e.ancestors[k]
			if cur := v[slot]; cur.id == 0 || cur.flags&^r.flags != 0 {
				v[slot] = r // the first rule, or one with fewer conditions
			}
			e.ancestors[k] = v
			e.cfg.addKind(kindAncestor, src)
		}
	}
	for k, v := range e.paths {
		var dir string
		switch k.kind {
		case kindFilePath, kindExecPath:
			dir = parentDir(k.path)
		case kindFileDir, kindExecDir:
			dir = parentDir(strings.TrimSuffix(k.path, "/"))
		default:
			continue
		}
		for _, slot := range []uint8{slotBlock, slotAudit} {
			if v[slot].id == 0 || (slot == slotAudit && (k.kind == kindExecPath || k.kind == kindExecDir)) {
				continue
			}
			add(dir, k.src, slot, v[slot])
		}
	}
	for _, p := range e.patterns {
		if p.slot == slotAllow || (p.category == uint8(catProcess) && p.slot != slotBlock) {
			continue
		}
		add(p.glob.literalDir(), 0, p.slot, slotRule{id: p.id, flags: uint32(p.flags)})
	}
}

// parentDir is the directory a path is in, without a trailing '/'
// ("/a/b" -> "/a", "/a" -> "/").
func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}
