package agent

import (
	"context"
	"strings"

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

// opensOnly is an enforcer that decides file rules only when a file is
// opened or executed (the fanotify tier). It names the file operations it
// cannot refuse; the monitor's telemetry decides the file rules for them
// (Block as "Audit (Block)"), and status and the log list them.
type opensOnly interface {
	UnrefusedFileOps() []string
}

// unrefusedFileOps is what enf cannot refuse of the file operations, nil
// for an enforcer that decides them all.
func unrefusedFileOps(enf Enforcer) []string {
	if o, ok := enf.(opensOnly); ok {
		return o.UnrefusedFileOps()
	}
	return nil
}

// unrefusedText is the status warning and log message for ops.
func unrefusedText(enforcer string, ops []string) string {
	return enforcer + " cannot refuse these file operations: " + strings.Join(ops, ", ") +
		`; file rules on them are decided on the monitor's telemetry, Block and readOnly rules alerting as "Audit (Block)"`
}
