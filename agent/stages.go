package agent

import (
	"github.com/armorhost/kubearmor/event"
)

// counted is a part that accounts for the events passing through it: the
// monitor (kernel ring buffer, reader queue), the kernel enforcers (ring
// buffer, verdict queue). Parts that lose nothing need not satisfy it.
type counted interface {
	Stages() []event.Stage
}

// stages is the agent's part of the one accounting of loss, in the order
// events pass: the monitor's, the enforcer's, then the pipeline. The feeder
// appends throttling, subscribers and exporters.
func (a *Agent) stages() []event.Stage {
	a.mu.Lock()
	parts := []any{a.mon, a.enforcer}
	pipe := a.pipe
	a.mu.Unlock()
	var out []event.Stage
	for _, p := range parts {
		if c, ok := p.(counted); ok && c != nil {
			out = append(out, c.Stages()...)
		}
	}
	if pipe != nil {
		out = append(out, pipe.stage())
	}
	return out
}
