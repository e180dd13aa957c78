// Package hostpolicytest writes policies and compiles RuleSets for the tests
// of the packages that consume them (enforcers, the agent's matcher).
package hostpolicytest

import (
	"fmt"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// HostPolicy is a KubeArmorHostPolicy named name for every host, with spec
// (indented by two spaces under spec:) as its body.
func HostPolicy(name, spec string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: %s
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
%s`, name, spec)
}

// Compile parses docs (as doc-0.yaml, doc-1.yaml, ...) and compiles them
// with opts. A document that does not parse fails the test.
func Compile(t testing.TB, opts hostpolicy.Options, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	var all []*hostpolicy.Policy
	for i, d := range docs {
		ps, diags := hostpolicy.Parse(fmt.Sprintf("doc-%d.yaml", i), []byte(d))
		if diags.HasErrors() {
			t.Fatalf("doc %d: %v", i, diags)
		}
		all = append(all, ps...)
	}
	return hostpolicy.Compile(all, opts)
}

// RuleID is the ID of the first rule of rs whose Value is value (a path,
// a protocol, a capability, ...); no such rule fails the test.
func RuleID(t testing.TB, rs *hostpolicy.RuleSet, value string) uint32 {
	t.Helper()
	for _, r := range rs.Rules {
		if r.Value == value {
			return r.ID
		}
	}
	t.Fatalf("no rule with value %q", value)
	return 0
}
