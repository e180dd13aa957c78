package agent

import (
	"log/slog"
	"os"

	bpflsm "github.com/armorhost/kubearmor/enforce/bpflsm"
)

// Lifecycle says what happens to the kernel objects when the agent exits
// (issue 21; docs/ARCHITECTURE.md, "Life cycle of kernel objects").
type Lifecycle struct {
	// DetachOnExit detaches every program and removes every pin when the
	// agent exits, whatever the reason. Off, the BPF-LSM enforcer stays
	// pinned and keeps enforcing the last rule set until the next agent
	// adopts it, `kubearmor detach` removes it, or the host reboots.
	DetachOnExit bool
	// PinRoot is where the BPF-LSM enforcer is pinned.
	PinRoot string
	// ObjectVersion overrides the BPF object's version (testing the upgrade
	// path with one build); "" is the embedded object's hash.
	ObjectVersion string
}

// DefaultLifecycle keeps the enforcer across exits only under systemd
// (INVOCATION_ID is set for every unit it runs), where the unit's
// ExecStopPost= decides to detach on a stop and not on a restart. A run from
// a shell detaches on exit: nothing is left behind that its user did not ask
// for.
func DefaultLifecycle() Lifecycle {
	return Lifecycle{DetachOnExit: os.Getenv("INVOCATION_ID") == "", PinRoot: bpflsm.DefaultPinRoot}
}

// SetLifecycle replaces DefaultLifecycle; call it before Run.
func (a *Agent) SetLifecycle(l Lifecycle) { a.life = l }

// unpinner is an enforcer whose kernel objects can outlive the agent.
type unpinner interface{ Unpin() error }

// adopter says what the enforcer took over from an earlier agent.
type adopter interface{ Adoption() string }

// releaseBPFLSM removes a BPF-LSM enforcer an earlier agent left pinned
// when this one runs another tier (lsm changed, or the BPF-LSM tier failed
// to load): its rules would otherwise hold, unseen and stale, until reboot.
func releaseBPFLSM(l Lifecycle, log *slog.Logger) {
	if l.PinRoot == "" {
		return
	}
	if _, err := os.Stat(l.PinRoot); err != nil {
		return
	}
	if err := bpflsm.Detach(l.PinRoot); err != nil {
		log.Error("cannot remove the BPF-LSM enforcer an earlier agent left pinned", "dir", l.PinRoot, "err", err)
		return
	}
	log.Warn("removed the BPF-LSM enforcer an earlier agent left pinned: this agent runs another tier", "dir", l.PinRoot)
}
