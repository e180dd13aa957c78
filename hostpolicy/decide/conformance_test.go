package decide_test

import (
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/conformance"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// engine runs the conformance table against the decision engine itself:
// the facts of each operation are the case's, nothing is touched.
type engine struct{ rs *hostpolicy.RuleSet }

func (*engine) Name() string       { return "engine" }
func (*engine) Enforces() bool     { return true }
func (*engine) DenyResult() string { return "Permission denied" }

func (e *engine) Apply(_ *testing.T, rs *hostpolicy.RuleSet) map[uint32]string {
	e.rs = rs
	return nil
}

type opFacts struct{ op conformance.Op }

func (f opFacts) Write() bool { return f.op.Write }
func (f opFacts) Owner() bool { return f.op.Owner }
func (f opFacts) TTY() bool   { return f.op.TTY }

func (e *engine) Do(t *testing.T, op conformance.Op) conformance.Outcome {
	table := decide.New(e.rs, nil)
	if op.Container != "" {
		table = decide.ForContainer(e.rs, hostpolicy.ContainerInfo{Name: op.Container}, nil)
	}
	var d decide.Decision
	switch op.Kind {
	case conformance.Exec:
		d = table.Exec(op.Object, op.Program, opFacts{op})
	case conformance.Open:
		d = table.Path(hostpolicy.CategoryFile, op.Object, op.Program, op.Dir, opFacts{op})
	case conformance.Socket:
		d = table.Network(op.SockType, op.Proto, op.Program, opFacts{op})
	case conformance.Capability:
		d = table.Capability(op.Object, op.Program, opFacts{op})
	default:
		t.Fatalf("operation %v", op.Kind)
	}
	return conformance.Outcome{Verdict: d.Verdict, RuleID: d.RuleID(), Denied: d.Deny}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, "/conformance", &engine{})
}
