package agent

import (
	"strings"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/monitor"
	"github.com/armorhost/kubearmor/proctable"
)

// The monitor: telemetry and the process table the pipeline reads.

// The agent consumes the monitor through its Monitor interface.
var _ Monitor = (*monitor.Monitor)(nil)

// openMonitor starts the monitor on the visible scopes. With no kernel
// enforcer, the process, file and network rules are matched against
// telemetry (matcher), so those scopes are watched whatever is visible; the
// pipeline still publishes only the visible ones.
func (a *Agent) openMonitor(vis config.Visibility, kernelEnforcer bool) (*monitor.Monitor, *proctable.Table) {
	var scopes monitor.Scope
	for _, s := range []struct {
		on bool
		sc monitor.Scope
	}{{vis.Process, monitor.ScopeProcess}, {vis.File, monitor.ScopeFile}, {vis.Network, monitor.ScopeNetwork}, {vis.Capabilities, monitor.ScopeCapabilities}} {
		if s.on {
			scopes |= s.sc
		}
	}
	watched := scopes
	if !kernelEnforcer {
		watched |= monitor.ScopeProcess | monitor.ScopeFile | monitor.ScopeNetwork
	}
	// Failed setuid/setgid raise DefaultPosture alerts even when the
	// capabilities scope is not visible. The process table follows exec,
	// fork and exit whatever the scopes.
	// The pipeline takes what it has no use for undecoded; it is made
	// after the monitor (it reads the monitor's process table) and before
	// the monitor runs, which is when this is first called.
	unneeded := func(ev *event.Event) bool { return a.pipe.takeUnneeded(ev) }
	mon, err := monitor.Open(monitor.Options{Visibility: watched, FailuresOf: monitor.ScopeCapabilities, Unneeded: unneeded})
	if err != nil {
		a.log.Warn("monitor unavailable: no telemetry, and only kernel enforcer verdicts raise alerts", "err", err)
		procs := proctable.New(proctable.Options{ReadProcOnMiss: true})
		if _, err := procs.SeedFromProc(); err != nil {
			a.log.Warn("process table: cannot read /proc", "err", err)
		}
		return nil, procs
	}
	if missing := mon.Unwatched(); len(missing) > 0 {
		a.log.Info("monitor: syscalls this kernel has no tracepoint for", "syscalls", strings.Join(missing, ","))
	}
	hooks, note := mon.Hooks()
	switch {
	case note == "":
	case hooks == monitor.HooksTracepoints:
		// Telemetry is whole, but every syscall of every task now pays.
		a.log.Warn("monitor: "+note, "hooks", string(hooks))
	default: // e.g. kretprobes on the few entry points named twice in BTF
		a.log.Info("monitor: "+note, "hooks", string(hooks))
	}
	a.log.Info("monitor started", "visibility", scopes.String(), "hooks", string(hooks))
	a.mu.Lock()
	a.mon = mon
	a.mu.Unlock()
	return mon, mon.Table()
}
