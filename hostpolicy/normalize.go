package hostpolicy

import (
	"path"
	"strings"
)

// Normalize applies the daemon-side defaults of reference §1.5 to a policy
// that passed Validate: canonical actions (spec default Block), inheritance of
// severity/tags/message/action from rule <- block <- spec, comma expansion of
// protocols, domains and capabilities, and canonical paths.
func Normalize(p *Policy) {
	if p.Kind == KindContainerPolicy {
		p.Metadata.Namespace = ContainerNamespace // as upstream forces outside Kubernetes
	}
	s := &p.Spec
	s.Action = canonicalAction(s.Action)
	if s.Action == "" {
		s.Action = ActionBlock
	}

	s.Process.Meta = inherit(s.Process.Meta, s.Meta)
	for i := range s.Process.MatchPaths {
		r := &s.Process.MatchPaths[i]
		r.Meta = inherit(r.Meta, s.Process.Meta)
		r.Path = cleanPath(r.Path)
		normalizeSources(r.FromSource)
	}
	for i := range s.Process.MatchDirectories {
		r := &s.Process.MatchDirectories[i]
		r.Meta = inherit(r.Meta, s.Process.Meta)
		r.Dir = cleanDir(r.Dir)
		normalizeSources(r.FromSource)
	}
	for i := range s.Process.MatchPatterns {
		r := &s.Process.MatchPatterns[i]
		r.Meta = inherit(r.Meta, s.Process.Meta)
	}

	s.File.Meta = inherit(s.File.Meta, s.Meta)
	for i := range s.File.MatchPaths {
		r := &s.File.MatchPaths[i]
		r.Meta = inherit(r.Meta, s.File.Meta)
		r.Path = cleanPath(r.Path)
		normalizeSources(r.FromSource)
	}
	for i := range s.File.MatchDirectories {
		r := &s.File.MatchDirectories[i]
		r.Meta = inherit(r.Meta, s.File.Meta)
		r.Dir = cleanDir(r.Dir)
		normalizeSources(r.FromSource)
	}
	for i := range s.File.MatchPatterns {
		r := &s.File.MatchPatterns[i]
		r.Meta = inherit(r.Meta, s.File.Meta)
	}

	s.Network.Meta = inherit(s.Network.Meta, s.Meta)
	s.Network.MatchProtocols = expand(s.Network.MatchProtocols,
		func(r NetworkProtocol) string { return r.Protocol },
		func(r NetworkProtocol, v string) NetworkProtocol { r.Protocol = strings.ToLower(v); return r })
	for i := range s.Network.MatchProtocols {
		r := &s.Network.MatchProtocols[i]
		r.Meta = inherit(r.Meta, s.Network.Meta)
		normalizeSources(r.FromSource)
	}
	s.Network.MatchDNSQueries = expand(s.Network.MatchDNSQueries,
		func(r DNSQuery) string { return r.Domain },
		func(r DNSQuery, v string) DNSQuery { r.Domain = strings.ToLower(strings.Trim(v, ".")); return r })
	for i := range s.Network.MatchDNSQueries {
		r := &s.Network.MatchDNSQueries[i]
		r.Meta = inherit(r.Meta, s.Network.Meta)
		normalizeSources(r.FromSource)
	}

	s.Capabilities.Meta = inherit(s.Capabilities.Meta, s.Meta)
	s.Capabilities.MatchCapabilities = expand(s.Capabilities.MatchCapabilities,
		func(r Capability) string { return r.Capability },
		func(r Capability, v string) Capability { r.Capability = CanonicalCapability(v); return r })
	for i := range s.Capabilities.MatchCapabilities {
		r := &s.Capabilities.MatchCapabilities[i]
		r.Meta = inherit(r.Meta, s.Capabilities.Meta)
		normalizeSources(r.FromSource)
	}

	// Syscall rules inherit severity/tags/message but always audit.
	s.Syscalls.Meta = inherit(s.Syscalls.Meta, s.Meta)
	s.Syscalls.Action = ActionAudit
	for i := range s.Syscalls.MatchSyscalls {
		r := &s.Syscalls.MatchSyscalls[i]
		r.Meta = inherit(r.Meta, s.Syscalls.Meta)
		r.Syscall = lowerAll(r.Syscall)
		normalizeSources(r.FromSource)
	}
	for i := range s.Syscalls.MatchPaths {
		r := &s.Syscalls.MatchPaths[i]
		r.Meta = inherit(r.Meta, s.Syscalls.Meta)
		r.Syscall = lowerAll(r.Syscall)
		if strings.HasSuffix(r.Path, "/") {
			r.Path = cleanDir(r.Path)
		} else {
			r.Path = cleanPath(r.Path)
		}
		normalizeSources(r.FromSource)
	}

	s.Device.Meta = inherit(s.Device.Meta, s.Meta)
	for i := range s.Device.MatchDevice {
		r := &s.Device.MatchDevice[i]
		r.Meta = inherit(r.Meta, s.Device.Meta)
	}
}

// inherit fills the unset fields of m from parent, with canonical actions.
func inherit(m, parent Meta) Meta {
	if m.Severity == 0 {
		m.Severity = parent.Severity
	}
	if len(m.Tags) == 0 {
		m.Tags = parent.Tags
	}
	if m.Message == "" {
		m.Message = parent.Message
	}
	m.Action = canonicalAction(m.Action)
	if m.Action == "" {
		m.Action = canonicalAction(parent.Action)
	}
	return m
}

func normalizeSources(srcs []Source) {
	for i := range srcs {
		if srcs[i].Dir != "" {
			srcs[i].Dir = cleanDir(srcs[i].Dir)
		} else {
			srcs[i].Path = cleanPath(srcs[i].Path)
		}
	}
}

func cleanPath(p string) string {
	if p == "" {
		return p
	}
	return path.Clean(p)
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

// expand duplicates each rule once per comma-separated value of its key field.
// Upstream expands only when the first rule holds a comma; expanding every rule
// is a superset that never changes the meaning of a policy upstream accepts.
func expand[T any](rules []T, key func(T) string, with func(T, string) T) []T {
	var out []T
	for _, r := range rules {
		for _, v := range splitList(key(r)) {
			out = append(out, with(r, v))
		}
	}
	return out
}
