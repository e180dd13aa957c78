package monitor

import (
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/armorhost/kubearmor/kernelfs"
)

// maxVerified bounds the instructions the verifier may process for any one
// of the monitor's programs. Verification is part of the agent's start,
// and an emulated guest pays for it many times over: two path walks that
// each added a bpf_loop after another, inlined, once doubled the exec
// programs' figure (sys_exit_exec 47,196 -> 122,221 on 6.18), which put
// ~20 s on the agent's start in a 6.12 guest and made the CI's AppArmor
// guests there miss their start wait (docs/benchmarks.md, "Lifecycle
// records in the kernel"). The walks are global functions now, verified
// once per program: the largest today is kret_exec's ~15,400, and the
// bound leaves room for twice that, not for an inlined walk's multiple.
const maxVerified = 30_000

// TestVerifierCost loads each program the host kernel accepts on its own
// and reads the verifier's count. Kernels verify differently (6.1 checks a
// bpf_loop callback once, 6.12 and later until its states converge), so
// the bound holds on the kernels that iterate, from 6.13 on: the host's.
func TestVerifierCost(t *testing.T) {
	requireKernel(t)
	if !kernelfs.ReleaseAtLeast(kernelfs.Release(), 6, 13) {
		t.Skip("the bound is for kernels from 6.13 (this one verifies bpf_loop callbacks differently)")
	}
	spec, err := loadMonitorBPF()
	if err != nil {
		t.Fatal(err)
	}
	processed := regexp.MustCompile(`processed (\d+) insns`)
	loaded := 0
	for name, ps := range spec.Programs {
		if ps.Type == ebpf.Tracing && ps.AttachType != ebpf.AttachTraceRawTp {
			continue // fentry/fexit: the host refuses them; their bodies are the tracepoint programs'
		}
		coll, err := ebpf.NewCollectionWithOptions(
			&ebpf.CollectionSpec{Maps: spec.Maps, Programs: map[string]*ebpf.ProgramSpec{name: ps}, Variables: spec.Variables},
			ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
		if err != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				t.Errorf("%s: %v", name, err)
			} else {
				t.Logf("%s: not loaded here: %v", name, err)
			}
			continue
		}
		m := processed.FindStringSubmatch(coll.Programs[name].VerifierLog)
		coll.Close()
		if m == nil {
			t.Errorf("%s: no instruction count in the verifier's log", name)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		loaded++
		if n > maxVerified {
			t.Errorf("%s: the verifier processed %d instructions, more than %d", name, n, maxVerified)
		} else {
			t.Logf("%s: %d instructions verified", name, n)
		}
	}
	if loaded == 0 {
		t.Fatal("no program loaded")
	}
}
