package agent

import (
	"context"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// The agent's view of the parts other packages provide. Each is small on
// purpose: the concrete types live in their own packages (bpf/..., feeder,
// runtimes) and only need to satisfy these.

// Enforcer turns a RuleSet into kernel state and reports the kernel's verdicts.
type Enforcer interface {
	// Name is the Enforcer string of alerts: "BPFLSM", "AppArmor", ...
	Name() string
	// Apply replaces the rules in force with rs, in place: there is no window
	// in which neither the old nor the new rules are enforced. It returns the
	// rules it cannot enforce (rule ID -> reason); they are reported, never
	// silently dropped. On error the previous rules stay in force.
	Apply(rs *hostpolicy.RuleSet) (unenforced map[uint32]string, err error)
	// Run reads verdicts until ctx ends and hands each to emit, which never
	// blocks (the pipeline counts what it cannot take).
	Run(ctx context.Context, emit func(event.Event)) error
	// Close detaches every program and removes every pin: the host is left
	// as it was before the agent started.
	Close() error
}

// Monitor reports what happens on the host (telemetry), whatever the enforcer.
type Monitor interface {
	Run(ctx context.Context, emit func(event.Event)) error
	Close() error
}
