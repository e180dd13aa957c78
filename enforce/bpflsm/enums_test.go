package bpflsm

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
)

// The kernel's verdicts (enum verdict, bpf/include/kubearmor.h) are
// event.Verdict: decode converts one to the other by number.
func TestVerdictsAreEventVerdicts(t *testing.T) {
	for c, e := range map[enforcerVerdict]event.Verdict{
		enforcerVerdictV_NONE:          event.VerdictNone,
		enforcerVerdictV_AUDIT:         event.VerdictAudit,
		enforcerVerdictV_BLOCK:         event.VerdictBlock,
		enforcerVerdictV_POSTURE_AUDIT: event.VerdictPostureAudit,
		enforcerVerdictV_POSTURE_BLOCK: event.VerdictPostureBlock,
	} {
		if event.Verdict(c) != e {
			t.Errorf("C verdict %d is event.Verdict %d (%v)", c, e, e)
		}
	}
}
