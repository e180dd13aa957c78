package hostpolicy

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// MaxPathLen is the longest path a rule may name. Upstream's CRD stops at 200;
// the kernel enforcer keys hold 256 bytes, NUL included.
const MaxPathLen = 255

// maxAllowedArgs is the CRD's limit on process allowedArgs.
const maxAllowedArgs = 20

// Kubernetes object names (RFC 1123 subdomain). Names become file names
// under the policy directory, so nothing else is allowed.
var policyName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// Validate checks a decoded policy against the schema rules of reference §1.4
// and reports input that is accepted only after normalization as warnings.
// It never modifies the policy.
func Validate(p *Policy) Diagnostics {
	v := &validator{sink: diagSink{origin: &p.Origin}}
	v.policy(p)
	return v.sink.out
}

type validator struct{ sink diagSink }

func (v *validator) policy(p *Policy) {
	if p.APIVersion != APIVersion {
		v.sink.errorf("apiVersion", "must be %s, not %q", APIVersion, p.APIVersion)
	}
	switch p.Kind {
	case KindHostPolicy, KindContainerPolicy:
	default:
		v.sink.errorf("kind", "must be %s or %s, not %q", KindHostPolicy, KindContainerPolicy, p.Kind)
	}
	v.name(p.Metadata.Name)
	s := &p.Spec
	switch p.Kind {
	case KindContainerPolicy:
		v.containerSelector(p)
	case KindHostPolicy:
		v.nodeSelector(s.NodeSelector)
		if len(s.Selector.MatchLabels) > 0 {
			v.sink.errorf("spec.selector", "selects containers, which only a %s does; a %s uses spec.nodeSelector", KindContainerPolicy, KindHostPolicy)
		}
	}
	if s.AppArmor != "" {
		v.sink.warnf("spec.apparmor", "native AppArmor rules are ignored on hosts; upstream KubeArmor skips the whole policy, and so does this agent")
	}
	v.meta("spec", s.Meta, true)
	// Over the cap, the rules are not checked one by one: that would cost
	// as much as the expansion the cap refuses, for findings nobody needs.
	if v.ruleCap(s) {
		return
	}
	v.process("spec.process", &s.Process)
	v.file("spec.file", &s.File)
	v.network("spec.network", &s.Network)
	v.capabilities("spec.capabilities", &s.Capabilities)
	v.syscalls("spec.syscalls", &s.Syscalls)
	v.device("spec.device", &s.Device)
	if ruleCount(s) == 0 {
		v.sink.warnf("spec", "policy has no rules")
	}
}

// name checks metadata.name: a Kubernetes object name (RFC 1123 subdomain)
// short enough that <name>.yaml is a file name.
func (v *validator) name(name string) {
	switch {
	case name == "":
		v.sink.errorf("metadata.name", "missing")
	case len(name) > MaxNameLen:
		v.sink.errorf("metadata.name", "%d bytes long; the limit is %d, so that the file <name>.yaml fits in 255 bytes", len(name), MaxNameLen)
	case !policyName.MatchString(name):
		v.sink.errorf("metadata.name", "%q is not a valid name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)", truncate(name, 64))
	}
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (v *validator) nodeSelector(ns NodeSelector) {
	const p = "spec.nodeSelector.matchLabels"
	if len(ns.MatchLabels) == 0 {
		v.sink.warnf(p, "empty selector: the policy never applies to any host (use kubearmor.io/hostname: \"*\" for every host)")
		return
	}
	for k, val := range ns.MatchLabels {
		switch k {
		case LabelHostname:
			if strings.TrimSpace(val) == "" {
				v.sink.errorf(join(p, k), "empty host name")
			}
		case LabelHostnameRegex:
			if _, err := hostnameRegexp(val); err != nil {
				v.sink.errorf(join(p, k), "bad pattern %q: %v", val, err)
			}
		case "kubernetes.io/hostname", "kubernetes.io/hostnamereg":
			v.sink.warnf(join(p, k), "only works in Kubernetes; this policy never applies here (use kubearmor.io/hostname)")
		default:
			// Any other label matches a host label (hostLabels in the
			// configuration, or one the agent sets) of the same value.
			if err := CheckLabel(k, val); err != nil {
				v.sink.warnf(join(p, k), "%v: no host can carry this label, so this policy never applies", err)
			}
		}
	}
}

// meta checks severity and action. Spec-level lowercase actions are normalized
// silently, as upstream does; elsewhere they are accepted with a warning,
// because upstream silently ignores them there.
func (v *validator) meta(p string, m Meta, spec bool) {
	if m.Severity != 0 && (m.Severity < 1 || m.Severity > 10) {
		v.sink.errorf(join(p, "severity"), "must be between 1 and 10, not %d", m.Severity)
	}
	switch m.Action {
	case "", ActionAllow, ActionAudit, ActionBlock:
	default:
		canon := canonicalAction(m.Action)
		if canon == "" {
			v.sink.errorf(join(p, "action"), "must be Allow, Audit or Block, not %q", m.Action)
		} else if !spec {
			v.sink.warnf(join(p, "action"), "%q taken as %q", m.Action, canon)
		}
	}
	for i, t := range m.Tags {
		if strings.TrimSpace(t) == "" {
			v.sink.errorf(fmt.Sprintf("%s.tags[%d]", p, i), "empty tag")
		}
	}
}

func canonicalAction(a string) string {
	switch strings.ToLower(a) {
	case "allow":
		return ActionAllow
	case "audit":
		return ActionAudit
	case "block":
		return ActionBlock
	}
	return ""
}

// filePath checks an absolute path to a file (MatchPathType).
func (v *validator) filePath(p, val string) {
	switch {
	case val == "":
		v.sink.errorf(p, "missing")
	case !strings.HasPrefix(val, "/"):
		v.sink.errorf(p, "must be absolute: %q", val)
	case strings.HasSuffix(val, "/"):
		v.sink.errorf(p, "%q names a directory; use matchDirectories with dir: %s", val, val)
	case len(val) > MaxPathLen:
		v.sink.errorf(p, "longer than %d bytes", MaxPathLen)
	case strings.ContainsRune(val, 0):
		v.sink.errorf(p, "contains a NUL byte")
	case path.Clean(val) != val:
		v.sink.warnf(p, "%q taken as %q", val, path.Clean(val))
	}
}

// dirPath checks a directory (MatchDirectoryType). A missing trailing slash is
// unambiguous and accepted with a warning (upstream's own tests rely on it).
func (v *validator) dirPath(p, val string) {
	switch {
	case val == "":
		v.sink.errorf(p, "missing")
	case !strings.HasPrefix(val, "/"):
		v.sink.errorf(p, "must be absolute: %q", val)
	case len(val) > MaxPathLen:
		v.sink.errorf(p, "longer than %d bytes", MaxPathLen)
	case strings.ContainsRune(val, 0):
		v.sink.errorf(p, "contains a NUL byte")
	case cleanDir(val) != val:
		v.sink.warnf(p, "%q taken as %q", val, cleanDir(val))
	}
}

func cleanDir(d string) string {
	c := path.Clean(d)
	if c == "/" {
		return c
	}
	return c + "/"
}

func (v *validator) pattern(p, val string) {
	switch {
	case val == "":
		v.sink.errorf(p, "missing")
	case !strings.HasPrefix(val, "/"):
		v.sink.errorf(p, "must be an absolute path pattern: %q", val)
	case len(val) > MaxPathLen:
		v.sink.errorf(p, "longer than %d bytes", MaxPathLen)
	default:
		if _, err := path.Match(val, ""); err != nil {
			v.sink.errorf(p, "bad pattern %q: %v", val, err)
		}
	}
}

func (v *validator) sources(p string, srcs []Source, allowDir bool) {
	for i, s := range srcs {
		sp := fmt.Sprintf("%s.fromSource[%d]", p, i)
		switch {
		case s.Path != "" && s.Dir != "":
			v.sink.errorf(sp, "give path or dir, not both")
		case s.Dir != "" && !allowDir:
			v.sink.errorf(sp+".dir", "fromSource takes a path here, not a dir")
		case s.Dir != "":
			v.dirPath(sp+".dir", s.Dir)
		default:
			v.filePath(sp+".path", s.Path)
		}
		if s.Recursive && s.Dir == "" {
			v.sink.errorf(sp+".recursive", "only meaningful with dir")
		}
	}
}

func (v *validator) process(p string, r *ProcessRules) {
	v.meta(p, r.Meta, false)
	for i, m := range r.MatchPaths {
		rp := fmt.Sprintf("%s.matchPaths[%d]", p, i)
		switch {
		case m.Path != "" && m.ExecName != "":
			v.sink.errorf(rp, "give path or execname, not both")
		case m.ExecName != "":
			if strings.Contains(m.ExecName, "/") {
				v.sink.errorf(rp+".execname", "must be a file name without '/': %q", m.ExecName)
			}
		default:
			v.filePath(rp+".path", m.Path)
		}
		if len(m.AllowedArgs) > maxAllowedArgs {
			v.sink.errorf(rp+".allowedArgs", "at most %d arguments, found %d", maxAllowedArgs, len(m.AllowedArgs))
		}
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
	for i, m := range r.MatchDirectories {
		rp := fmt.Sprintf("%s.matchDirectories[%d]", p, i)
		v.dirPath(rp+".dir", m.Dir)
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
	for i, m := range r.MatchPatterns {
		rp := fmt.Sprintf("%s.matchPatterns[%d]", p, i)
		v.pattern(rp+".pattern", m.Pattern)
		v.meta(rp, m.Meta, false)
	}
}

func (v *validator) file(p string, r *FileRules) {
	v.meta(p, r.Meta, false)
	for i, m := range r.MatchPaths {
		rp := fmt.Sprintf("%s.matchPaths[%d]", p, i)
		v.filePath(rp+".path", m.Path)
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
	for i, m := range r.MatchDirectories {
		rp := fmt.Sprintf("%s.matchDirectories[%d]", p, i)
		v.dirPath(rp+".dir", m.Dir)
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
	for i, m := range r.MatchPatterns {
		rp := fmt.Sprintf("%s.matchPatterns[%d]", p, i)
		v.pattern(rp+".pattern", m.Pattern)
		v.meta(rp, m.Meta, false)
	}
}

func (v *validator) network(p string, r *NetworkRules) {
	v.meta(p, r.Meta, false)
	for i, m := range r.MatchProtocols {
		rp := fmt.Sprintf("%s.matchProtocols[%d]", p, i)
		for _, proto := range splitList(m.Protocol) {
			if !IsProtocol(strings.ToLower(proto)) {
				v.sink.errorf(rp+".protocol", "unknown protocol %q (want tcp, udp, icmp, icmpv6, raw, sctp, stream, dgram, rdm, seqpacket, dccp, packet or all)", proto)
			}
		}
		if len(splitList(m.Protocol)) == 0 {
			v.sink.errorf(rp+".protocol", "missing")
		}
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
	for i, m := range r.MatchDNSQueries {
		rp := fmt.Sprintf("%s.matchDNSQueries[%d]", p, i)
		if len(splitList(m.Domain)) == 0 {
			v.sink.errorf(rp+".domain", "missing")
		}
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
}

func (v *validator) capabilities(p string, r *CapabilitiesRules) {
	v.meta(p, r.Meta, false)
	for i, m := range r.MatchCapabilities {
		rp := fmt.Sprintf("%s.matchCapabilities[%d]", p, i)
		caps := splitList(m.Capability)
		if len(caps) == 0 {
			v.sink.errorf(rp+".capability", "missing")
		}
		for _, c := range caps {
			if n, ok := CapabilityNumber(c); !ok || n > capMacAdmin {
				v.sink.errorf(rp+".capability", "unknown capability %q", c)
			}
		}
		v.sources(rp, m.FromSource, false)
		v.meta(rp, m.Meta, false)
	}
}

func (v *validator) syscallList(p string, names []string) {
	if len(names) == 0 {
		v.sink.errorf(p, "missing")
	}
	for j, s := range names {
		if !syscallNames[strings.ToLower(s)] {
			v.sink.errorf(fmt.Sprintf("%s[%d]", p, j), "unknown syscall %q", s)
		}
	}
}

func (v *validator) syscalls(p string, r *SyscallRules) {
	v.syscallMeta(p, r.Meta)
	for i, m := range r.MatchSyscalls {
		rp := fmt.Sprintf("%s.matchSyscalls[%d]", p, i)
		v.syscallList(rp+".syscall", m.Syscall)
		v.sources(rp, m.FromSource, true)
		v.syscallMeta(rp, m.Meta)
	}
	for i, m := range r.MatchPaths {
		rp := fmt.Sprintf("%s.matchPaths[%d]", p, i)
		v.syscallList(rp+".syscall", m.Syscall)
		switch {
		case m.Path == "":
			v.sink.errorf(rp+".path", "missing")
		case strings.HasSuffix(m.Path, "/"):
			v.dirPath(rp+".path", m.Path)
		default:
			v.filePath(rp+".path", m.Path)
			if m.Recursive {
				v.sink.errorf(rp+".recursive", "only meaningful when path is a directory (ends in /)")
			}
		}
		v.sources(rp, m.FromSource, true)
		v.syscallMeta(rp, m.Meta)
	}
}

// syscallMeta: syscall rules only audit, so an action other than Audit is
// accepted (as upstream does) but said out loud.
func (v *validator) syscallMeta(p string, m Meta) {
	v.meta(p, Meta{Severity: m.Severity, Tags: m.Tags}, false)
	if m.Action != "" && canonicalAction(m.Action) != ActionAudit {
		v.sink.warnf(join(p, "action"), "syscall rules always audit; %q is ignored", m.Action)
	}
}

func (v *validator) device(p string, r *DeviceRules) {
	v.meta(p, r.Meta, false)
	for i, m := range r.MatchDevice {
		rp := fmt.Sprintf("%s.matchDevice[%d]", p, i)
		if m.Class == "" {
			v.sink.errorf(rp+".class", "missing")
		}
		if m.Level != nil && *m.Level < 1 {
			v.sink.errorf(rp+".level", "must be at least 1")
		}
		v.meta(rp, m.Meta, false)
	}
	if len(r.MatchDevice) > 0 {
		v.sink.warnf(p+".matchDevice", "USB device rules are not enforced by this agent")
	}
}

// splitList splits a comma list ("tcp,udp"), dropping spaces and empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ruleCount(s *Spec) int {
	return len(s.Process.MatchPaths) + len(s.Process.MatchDirectories) + len(s.Process.MatchPatterns) +
		len(s.File.MatchPaths) + len(s.File.MatchDirectories) + len(s.File.MatchPatterns) +
		len(s.Network.MatchProtocols) + len(s.Network.MatchDNSQueries) +
		len(s.Capabilities.MatchCapabilities) + len(s.Syscalls.MatchSyscalls) + len(s.Syscalls.MatchPaths) +
		len(s.Device.MatchDevice)
}
