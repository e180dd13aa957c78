package monitor

import (
	"fmt"
	"strings"

	"github.com/armorhost/kubearmor/event"
)

// Stages is the monitor's part of the agent's accounting of loss (it
// satisfies the agent's counted interface):
//
//   - "monitor kernel": records the programs produced; those the ring
//     buffer had no room for, and syscalls whose arguments the in-kernel
//     stash could not hold, are dropped there.
//   - "monitor reader": records read from the ring buffer; dropped when the
//     queue to the decoder is full or a record cannot be decoded; filtered
//     are records that carry no event (process bookkeeping) and records
//     still in flight.
func (m *Monitor) Stages() []event.Stage {
	s := m.Stats()
	kernel := event.Stage{Name: "monitor kernel", Received: s.Received + s.Lost + s.StashFull,
		Passed: s.Received, Dropped: s.Lost + s.StashFull}
	kernel.State = reasons(count{"ring buffer full", s.Lost}, count{"argument stash full", s.StashFull})
	reader := event.Stage{Name: "monitor reader", Received: s.Received, Passed: s.Emitted,
		Dropped: s.Dropped + s.DecodeErrors}
	if done := reader.Passed + reader.Dropped; done < reader.Received {
		reader.Filtered = reader.Received - done
	}
	reader.State = reasons(count{"queue full", s.Dropped}, count{"undecodable", s.DecodeErrors})
	return []event.Stage{kernel, reader}
}

// count is one reason for losses and how many.
type count struct {
	what string
	n    uint64
}

// reasons lists the non-zero counts as "what: n; what: n".
func reasons(cs ...count) string {
	var out []string
	for _, c := range cs {
		if c.n > 0 {
			out = append(out, fmt.Sprintf("%s: %d", c.what, c.n))
		}
	}
	return strings.Join(out, "; ")
}
