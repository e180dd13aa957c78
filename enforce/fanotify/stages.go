package fanotify

import (
	"fmt"

	"github.com/armorhost/kubearmor/event"
)

// Stages is the tier's part of the agent's accounting of loss (it satisfies
// the agent's counted interface): verdicts queued for Run, and those lost
// because the queue was full. Decisions that missed the deadline were
// allowed (fail open); each is reported as an alert and counted in State.
func (e *Enforcer) Stages() []event.Stage {
	queued, dropped, pending := e.queued.Load(), e.dropped.Load(), uint64(len(e.events))
	st := event.Stage{Name: "fanotify verdicts", Received: queued, Dropped: dropped, Pending: pending}
	if done := dropped + pending; done <= queued {
		st.Passed = queued - done
	}
	switch late := e.late.Load(); {
	case dropped > 0 && late > 0:
		st.State = fmt.Sprintf("queue full: %d; decisions late, allowed (fail open): %d", dropped, late)
	case dropped > 0:
		st.State = fmt.Sprintf("queue full: %d", dropped)
	case late > 0:
		st.State = fmt.Sprintf("decisions late, allowed (fail open): %d", late)
	}
	return append([]event.Stage{st}, e.cache.stages()...)
}
