package hostpolicy

import (
	"regexp"
	"strings"
)

// The node labels a host carries outside Kubernetes (reference §1.6). The
// agent sets LabelHostname, LabelOS, LabelArch, LabelDistro and
// LabelDistroVersion itself (HostLabels); the configuration's hostLabels add
// the rest.
const (
	LabelHostname      = "kubearmor.io/hostname"
	LabelHostnameRegex = "kubearmor.io/hostnamereg"
	LabelOS            = "kubernetes.io/os"
	LabelArch          = "kubernetes.io/arch"
	LabelDistro        = "kubearmor.io/os-id"         // ID of /etc/os-release: debian, ubuntu, rhel
	LabelDistroVersion = "kubearmor.io/os-version-id" // VERSION_ID of /etc/os-release: 12, 22.04
)

// Selects reports whether the policy's nodeSelector picks a host named host
// that carries no other label. Options.Selects takes the host's labels too.
func Selects(p *Policy, host string) bool {
	return selects(p, host, nil)
}

// Selects reports whether the policy's nodeSelector picks the host of o:
// o.Host and o.Labels. Every label must match: an empty selector never
// matches; kubearmor.io/hostname takes "*", an exact name or a comma list,
// and kubearmor.io/hostnamereg a pattern where "*" stands for any run of
// characters; every other label must be one the host carries, with the same
// value.
func (o Options) Selects(p *Policy) bool {
	return selects(p, o.Host, o.Labels)
}

func selects(p *Policy, host string, hostLabels map[string]string) bool {
	labels := p.Spec.NodeSelector.MatchLabels
	if len(labels) == 0 {
		return false
	}
	for k, v := range labels {
		switch k {
		case LabelHostname:
			if !hostnameMatches(v, host) {
				return false
			}
		case LabelHostnameRegex:
			re, err := hostnameRegexp(v)
			if err != nil || !re.MatchString(host) {
				return false
			}
		default:
			have, ok := hostLabels[k]
			if !ok || have != v {
				return false
			}
		}
	}
	return true
}

func hostnameMatches(v, host string) bool {
	for _, name := range splitList(v) {
		if name == "*" || name == host {
			return true
		}
	}
	return false
}

// hostnameRegexp compiles a hostnamereg value. Upstream searches the pattern
// (with * turned into .*) in "kubearmor.io/hostname=<host>" unanchored at the
// end; anchoring it at the start of the host name keeps "node-*" from matching
// "my-node-1" by accident, which is what users of that label mean.
func hostnameRegexp(v string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + strings.ReplaceAll(v, "*", ".*") + ")")
}
