// Package conformance is the one table of what a RuleSet means: cases of
// (policies, postures, an operation and its subject) and the verdict, the
// deciding rule and the alert's key fields every tier must produce. Each
// tier runs the same table through a small Tier of its own, in its own
// tests: the decision engine (hostpolicy/decide), the monitor-only matcher
// (agent), the fanotify tier on the host kernel (enforce/fanotify); the
// BPF-LSM and AppArmor tiers can run it in the VM the same way (a test
// binary built with go test -c). A case a tier cannot express names the
// tier in Gaps, with the reason kubearmor status gives for it.
//
// The kernel enforcer's decide() (enforce/bpflsm/c/enforcer.bpf.c) is the
// reference: where copies disagreed, the table says what it does.
package conformance

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// Root stands, in policies and operations, for the directory a tier runs
// the table under (a real directory on a marked filesystem for kernel
// tiers, any absolute path for the engine).
const Root = "$ROOT"

// Kind is the kind of operation.
type Kind int

const (
	Exec       Kind = iota + 1 // Program starts Object
	Open                       // Program opens Object (Write: for writing)
	Socket                     // Program makes an AF_INET socket of SockType and Proto
	Capability                 // Program uses the capability Object ("net_raw")
)

func (k Kind) String() string {
	return [...]string{"", "exec", "open", "socket", "capability"}[k]
}

// Op is one operation and its subject.
type Op struct {
	Kind    Kind
	Program string // the program doing it (for Exec, the one starting Object)
	Object  string // the file, program or capability

	SockType string // Socket: "stream", "dgram", "raw"
	Proto    string // Socket: "tcp", "udp", "icmp"; "" for none

	Write bool   // Open: for writing
	Dir   bool   // Open: Object is a directory, opened by itself
	UID   uint32 // the subject's uid
	Owner bool   // the subject's uid owns Object
	TTY   bool   // the subject has a controlling terminal

	// Container is the name of the container the subject runs in, "" for
	// the host.
	Container string
}

// Under replaces Root in the op's paths.
func (o Op) Under(root string) Op {
	o.Program = strings.ReplaceAll(o.Program, Root, root)
	o.Object = strings.ReplaceAll(o.Object, Root, root)
	return o
}

// Want is the expected decision.
type Want struct {
	Verdict event.Verdict
	// Rule names the deciding rule, "policy#i" for the i-th rule the
	// policy compiles to (rule order), "" for none or a default posture.
	Rule string
}

// Alert is the key fields of the alert a decision raises.
type Alert struct {
	Action     string
	Result     string
	PolicyName string
}

// ActionUnenforced is the Action of a Block rule, or block posture, that
// a tier reports without enforcing it (the monitor-only tier).
const ActionUnenforced = "Audit (Block)"

// Alert is the alert the decision raises, none for VerdictNone. enforced
// says the tier enforces what it decides; denied is the alert's Result of
// a denial on that tier ("Permission denied" for EACCES).
func (w Want) Alert(enforced bool, denied string) (Alert, bool) {
	a := Alert{Action: hostpolicy.ActionAudit, Result: "Passed", PolicyName: strings.SplitN(w.Rule, "#", 2)[0]}
	switch w.Verdict {
	case event.VerdictNone:
		return Alert{}, false
	case event.VerdictAudit:
	case event.VerdictPostureAudit:
		a.PolicyName = "DefaultPosture"
	case event.VerdictBlock, event.VerdictPostureBlock:
		if w.Verdict == event.VerdictPostureBlock {
			a.PolicyName = "DefaultPosture"
		}
		if enforced {
			a.Action, a.Result = hostpolicy.ActionBlock, denied
		} else {
			a.Action = ActionUnenforced
		}
	}
	return a, true
}

// Case is one row of the table.
type Case struct {
	Name     string
	Policies []string // YAML documents; Root stands for the tier's directory
	Postures hostpolicy.Postures
	// ContainerPostures are the default postures inside containers.
	ContainerPostures hostpolicy.Postures
	Op                Op
	Want              Want
	// Gaps: tier name -> why the tier cannot decide this case, as
	// kubearmor status says it.
	Gaps map[string]string
	// Fix names the behaviour this case fixed where the copies of the rule
	// semantics disagreed (for the closing note), "" if none.
	Fix string
}

// Compile compiles the case's policies with Root replaced by root.
func (c Case) Compile(t testing.TB, root string) *hostpolicy.RuleSet {
	t.Helper()
	docs := make([]string, len(c.Policies))
	for i, d := range c.Policies {
		docs[i] = strings.ReplaceAll(d, Root, root)
	}
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: c.Postures, ContainerPostures: c.ContainerPostures}, docs...)
}

// RuleID resolves Want.Rule in rs, 0 for "".
func (c Case) RuleID(t testing.TB, rs *hostpolicy.RuleSet) uint32 {
	t.Helper()
	id, err := ruleID(rs, c.Want.Rule)
	if err != nil {
		t.Fatalf("case %s: %v", c.Name, err)
	}
	return id
}

func ruleID(rs *hostpolicy.RuleSet, ref string) (uint32, error) {
	if ref == "" {
		return 0, nil
	}
	name, idx, ok := strings.Cut(ref, "#")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil {
		return 0, fmt.Errorf("rule %q: want policy#index", ref)
	}
	n := 0
	for _, rules := range [][]hostpolicy.Rule{rs.Rules, rs.ContainerRules} {
		for _, r := range rules {
			if r.Policy == name {
				if n == i {
					return r.ID, nil
				}
				n++
			}
		}
	}
	return 0, fmt.Errorf("rule %q: policy %s has %d rules", ref, name, n)
}

// Outcome is what a tier decided for one operation.
type Outcome struct {
	Verdict event.Verdict
	RuleID  uint32
	Denied  bool   // the operation failed
	Alert   *Alert // the alert the tier raised, when its runner builds one
}

// Tier is one enforcement tier under test.
type Tier interface {
	// Name is the tier's key in Case.Gaps: "engine", "monitor",
	// "fanotify", "bpflsm", "apparmor".
	Name() string
	// Enforces says whether the tier's Block verdicts deny; DenyResult is
	// the alert Result of a denial ("Permission denied").
	Enforces() bool
	DenyResult() string
	// Apply puts rs in force and returns the rules it cannot enforce, by
	// rule ID, with the reason.
	Apply(t *testing.T, rs *hostpolicy.RuleSet) map[uint32]string
	// Do performs op (paths already under the tier's root) and reports
	// the decision.
	Do(t *testing.T, op Op) Outcome
}

// Run runs every case of the table against tier, with Root standing for
// root. A case declared a gap for the tier is skipped, after checking that
// the tier reports the declared reason for one of the case's rules. A reason
// starting "unreported:" is a gap the tier does not report in kubearmor
// status (a finding to fix, listed in docs/ARCHITECTURE.md); a runner that
// cannot run a case safely skips it itself, saying why.
func Run(t *testing.T, root string, tier Tier) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			rs := c.Compile(t, root)
			unenforced := tier.Apply(t, rs)
			if why, ok := c.Gaps[tier.Name()]; ok {
				if !strings.HasPrefix(why, "unreported:") && !reported(unenforced, why) {
					t.Errorf("declared gap %q, but %s reports %v", why, tier.Name(), unenforced)
				}
				t.Skipf("gap: %s", why)
			}
			got := tier.Do(t, c.Op.Under(root))
			want := c.Want
			id := c.RuleID(t, rs)
			if got.Verdict != want.Verdict || got.RuleID != id {
				t.Errorf("%s: got verdict %d rule %d, want verdict %d rule %d (%s)", c.Op.Kind, got.Verdict, got.RuleID, want.Verdict, id, want.Rule)
			}
			deny := tier.Enforces() && (want.Verdict == event.VerdictBlock || want.Verdict == event.VerdictPostureBlock)
			if got.Denied != deny {
				t.Errorf("denied=%v, want %v", got.Denied, deny)
			}
			if got.Alert != nil {
				wa, _ := want.Alert(tier.Enforces(), tier.DenyResult())
				if *got.Alert != wa {
					t.Errorf("alert %+v, want %+v", *got.Alert, wa)
				}
			}
		})
	}
}

// Gap is a reason a tier reports, or a reason of the runner's.
func reported(unenforced map[uint32]string, why string) bool {
	for _, r := range unenforced {
		if r == why {
			return true
		}
	}
	return false
}
