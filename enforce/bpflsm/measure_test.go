package bpflsm

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// TestMeasure loads each program on its own and reports the verifier's
// work and the time it took, and the memory of the shared enforcer's maps.
// It asserts only that every program loads; the figures go to the log.
func TestMeasure(t *testing.T) {
	e := kernel(t)
	spec, err := loadEnforcer()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		coll := spec.Copy()
		for other := range coll.Programs {
			if other != name {
				delete(coll.Programs, other)
			}
		}
		start := time.Now()
		c, err := ebpf.NewCollection(coll)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		took := time.Since(start)
		info, err := c.Programs[name].Info()
		insns := uint32(0)
		if err == nil {
			insns, _ = info.VerifiedInstructions()
		}
		t.Logf("%-24s load %8v  verified insns %d", name, took.Round(time.Millisecond), insns)
		c.Close()
	}
	// Apply with 1,000 rules: file paths, directories and exec paths.
	var b strings.Builder
	b.WriteString("  file:\n    matchPaths:\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "    - path: /measure/file-%d\n", i)
	}
	b.WriteString("    matchDirectories:\n")
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&b, "    - dir: /measure/dir-%d/\n      recursive: true\n", i)
	}
	b.WriteString("  process:\n    matchPaths:\n")
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&b, "    - path: /measure/bin-%d\n", i)
	}
	b.WriteString("  action: Block\n")
	rs := compile(t, hostpolicy.Postures{}, policy("measure", b.String()))
	for round := 0; round < 2; round++ {
		start := time.Now()
		if _, err := e.Apply(rs); err != nil {
			t.Fatal(err)
		}
		t.Logf("Apply of %d rules (round %d): %v", len(rs.Rules), round, time.Since(start).Round(time.Millisecond))
	}
	defer e.Apply(compile(t, hostpolicy.Postures{}))

	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shared enforcer: load %v attach %v, map memory %d KiB: %v", st.LoadTime, st.AttachTime, st.MapMemoryKiB, st.MapMemory)
}
