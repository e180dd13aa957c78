package fanotify

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
)

// The kernel's verdicts (enum verdict, bpf/include/kubearmor.h) are
// event.Verdict: decode converts one to the other by number.
func TestVerdictsAreEventVerdicts(t *testing.T) {
	for c, e := range map[sockVerdict]event.Verdict{
		sockVerdictV_NONE:          event.VerdictNone,
		sockVerdictV_AUDIT:         event.VerdictAudit,
		sockVerdictV_BLOCK:         event.VerdictBlock,
		sockVerdictV_POSTURE_AUDIT: event.VerdictPostureAudit,
		sockVerdictV_POSTURE_BLOCK: event.VerdictPostureBlock,
	} {
		if event.Verdict(c) != e {
			t.Errorf("C verdict %d is event.Verdict %d (%v)", c, e, e)
		}
	}
}
