package hostpolicy

import (
	"regexp"
	"strings"
)

// The node labels a host carries outside Kubernetes (reference §1.6).
const (
	LabelHostname      = "kubearmor.io/hostname"
	LabelHostnameRegex = "kubearmor.io/hostnamereg"
)

// Selects reports whether the policy's nodeSelector picks the host. Every
// label must match: an empty selector never matches, kubearmor.io/hostname
// takes "*", an exact name or a comma list, and kubearmor.io/hostnamereg a
// pattern where "*" stands for any run of characters. Any other label never
// matches, since a host carries only its hostname label.
func Selects(p *Policy, host string) bool {
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
			return false
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
