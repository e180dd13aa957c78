package hostpolicy

import (
	"fmt"
	"strings"
)

// Caps on what one input may cost. A few lines of YAML can stand for many
// rules (fromSource, syscall and comma lists, aliases), so the caps count
// compiled rules, not lines.
const (
	// MaxRulesPerPolicy caps the rules one policy compiles to. Real
	// policies hold tens to a few thousand rules; the cap stops a file of
	// a few KB whose lists are YAML aliases of each other (300 paths x 300
	// fromSource = 90,000 rules) before it reaches Compile.
	MaxRulesPerPolicy = 20_000
	// MaxRulesPerFile caps the rules of all the policies of one file (or
	// one PolicyService request), so splitting a file into documents does
	// not get around MaxRulesPerPolicy.
	MaxRulesPerFile = MaxRulesPerPolicy
	// MaxRulesPerHost caps the rules in force on a host (host and container
	// rules of every file). The policy store refuses a file that would push
	// the host past it (FitHost); that file keeps its last good version.
	MaxRulesPerHost = 100_000

	// MaxNameLen is the longest metadata.name: a policy written by
	// PolicyService is stored as <name>.yaml, and a file name is at most
	// 255 bytes (Kubernetes' 253 does not fit).
	MaxNameLen = 255 - len(".yaml")
)

// The rule caps the checks apply: the constants, lowered only by
// FuzzAliasShapes so that it reaches every cap in a few thousand nodes.
var (
	policyRuleCap = MaxRulesPerPolicy
	fileRuleCap   = MaxRulesPerFile
)

// ruleGroup is one list of a spec and the number of rules it compiles to.
type ruleGroup struct {
	path  string // e.g. spec.file.matchPaths
	what  string // what multiplies its entries
	rules int
}

// sources is the number of rules one entry compiles to per matched value:
// one per fromSource entry, or one for any source.
func sources(s []Source) int { return max(1, len(s)) }

// ruleGroups counts the rules each list of a spec compiles to, exactly as
// Compile does. It works on a policy before or after Normalize (comma lists
// count the same split or not), so Validate can refuse a policy before
// anything is expanded.
func ruleGroups(s *Spec) []ruleGroup {
	const (
		bySource   = "after expanding fromSource"
		byComma    = "after expanding comma lists and fromSource"
		bySyscalls = "after expanding syscall lists and fromSource"
		plain      = "one rule per entry"
	)
	var g []ruleGroup
	add := func(path, what string, n int) {
		if n > 0 {
			g = append(g, ruleGroup{path, what, n})
		}
	}
	add("spec.process.matchPaths", bySource, total(s.Process.MatchPaths, func(r ProcessPath) int { return sources(r.FromSource) }))
	add("spec.process.matchDirectories", bySource, total(s.Process.MatchDirectories, func(r ProcessDirectory) int { return sources(r.FromSource) }))
	add("spec.process.matchPatterns", plain, len(s.Process.MatchPatterns))
	add("spec.file.matchPaths", bySource, total(s.File.MatchPaths, func(r FilePath) int { return sources(r.FromSource) }))
	add("spec.file.matchDirectories", bySource, total(s.File.MatchDirectories, func(r FileDirectory) int { return sources(r.FromSource) }))
	add("spec.file.matchPatterns", plain, len(s.File.MatchPatterns))
	add("spec.network.matchProtocols", byComma, total(s.Network.MatchProtocols, func(r NetworkProtocol) int { return commaCount(r.Protocol) * sources(r.FromSource) }))
	add("spec.network.matchDNSQueries", byComma, total(s.Network.MatchDNSQueries, func(r DNSQuery) int { return commaCount(r.Domain) * sources(r.FromSource) }))
	add("spec.capabilities.matchCapabilities", byComma, total(s.Capabilities.MatchCapabilities, func(r Capability) int { return commaCount(r.Capability) * sources(r.FromSource) }))
	add("spec.syscalls.matchSyscalls", bySyscalls, total(s.Syscalls.MatchSyscalls, func(r SyscallMatch) int { return len(r.Syscall) * sources(r.FromSource) }))
	add("spec.syscalls.matchPaths", bySyscalls, total(s.Syscalls.MatchPaths, func(r SyscallPath) int { return len(r.Syscall) * sources(r.FromSource) }))
	add("spec.device.matchDevice", plain, len(s.Device.MatchDevice))
	return g
}

// total sums what each entry of a list compiles to.
func total[T any](list []T, rules func(T) int) int {
	n := 0
	for _, r := range list {
		n += rules(r)
	}
	return n
}

// commaCount is len(splitList(s)) without building the list.
func commaCount(s string) int {
	n := 0
	for f := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(f) != "" {
			n++
		}
	}
	return n
}

// RulesOf is the number of rules p compiles to on a host it applies to.
func RulesOf(p *Policy) int {
	n := 0
	for _, g := range ruleGroups(&p.Spec) {
		n += g.rules
	}
	return n
}

// CountRules is the number of rules Compile makes of policies for the host
// of opts (host and container rules), without compiling them: policies
// that do not select the host, or that carry native AppArmor rules, count
// nothing.
func CountRules(policies []*Policy, opts Options) int {
	n := 0
	for _, p := range policies {
		if compiles(p, opts) {
			n += RulesOf(p)
		}
	}
	return n
}

// compiles reports whether Compile makes rules of p on the host of opts.
func compiles(p *Policy, opts Options) bool {
	if p.Spec.AppArmor != "" {
		return false
	}
	if p.Kind == KindContainerPolicy {
		_, err := NewContainerSelector(p.Spec.Selector.MatchLabels)
		return err == nil
	}
	return opts.Selects(p)
}

// FitHost checks the new content of one policy file against MaxRulesPerHost:
// others is the number of rules in force from every other file (the store
// keeps it as a sum of each file's CountRules). It returns the file's count
// and, when the host would go past the cap, an error naming the file, the
// line of the policy that goes past it and both counts. The store then
// rejects the file and keeps its last good version in force, as for any
// other error.
func FitHost(file string, policies []*Policy, others int, opts Options) (int, Diagnostics) {
	n := 0
	var diags Diagnostics
	for _, p := range policies {
		if !compiles(p, opts) {
			continue
		}
		pn := RulesOf(p)
		n += pn
		if others+n > MaxRulesPerHost && diags == nil {
			diags = Diagnostics{{File: file, Line: p.Origin.LineOf("spec"), Path: "spec",
				Msg: fmt.Sprintf("policy %s compiles to %d rules; with the %d rules of the other policies in force, this host would have %d, more than the limit of %d per host",
					p.Metadata.Name, pn, others+n-pn, others+n, MaxRulesPerHost)}}
		}
	}
	return n, diags
}

// ruleCap refuses a policy whose rules exceed MaxRulesPerPolicy, at the
// list that holds the most of them, and reports whether it did.
func (v *validator) ruleCap(s *Spec) bool {
	groups := ruleGroups(s)
	total, big := 0, ruleGroup{}
	for _, g := range groups {
		total += g.rules
		if g.rules > big.rules {
			big = g
		}
	}
	if total <= policyRuleCap {
		return false
	}
	if big.rules == total {
		v.sink.errorf(big.path, "%d rules %s, more than the limit of %d per policy", total, big.what, policyRuleCap)
		return true
	}
	v.sink.errorf(big.path, "%d rules %s (%d in the whole policy), more than the limit of %d per policy",
		big.rules, big.what, total, policyRuleCap)
	return true
}
