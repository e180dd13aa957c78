package bpflsm

import (
	"fmt"
	"strings"

	"github.com/armorhost/kubearmor/event"
)

// Stages is the enforcer's part of the agent's accounting of loss (it
// satisfies the agent's counted interface): verdicts the programs reported,
// those the ring buffer had no room for (dropped), and identical verdicts
// the rate limit held back (filtered: their number rides on the next alert
// as Suppressed). With pinned state (pin.go) the counters are those of the
// pinned maps, so they include what happened while no agent ran. The
// reader hands every record straight to the pipeline, whose queue is the
// next stage.
func (e *Enforcer) Stages() []event.Stage {
	st := event.Stage{Name: "BPF-LSM kernel"}
	var c [3]uint64 // C_EVENTS, C_SUPPRESSED, C_RINGBUF_FULL
	for i := range c {
		var perCPU []uint64
		if err := e.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			st.State = fmt.Sprintf("counters unreadable: %v", err)
			return []event.Stage{st}
		}
		for _, v := range perCPU {
			c[i] += v
		}
	}
	events, suppressed, full := c[0], c[1], c[2]
	e.mu.Lock()
	carried := e.carried
	e.mu.Unlock()
	st.Received, st.Passed, st.Dropped, st.Filtered = events+suppressed+full+carried, events, full+carried, suppressed
	var why []string
	if full > 0 {
		why = append(why, fmt.Sprintf("ring buffer full: %d", full))
	}
	if carried > 0 {
		why = append(why, fmt.Sprintf("left by the replaced object version in its ring buffer, counted, not decoded: %d", carried))
	}
	if suppressed > 0 {
		why = append(why, fmt.Sprintf("rate-limited duplicates: %d (counted in the next alert)", suppressed))
	}
	st.State = strings.Join(why, "; ")
	return []event.Stage{st}
}
