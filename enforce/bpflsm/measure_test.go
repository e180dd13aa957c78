package bpflsm

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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
	// the memo's code is verified only when its addresses are set, as New sets them
	if _, err := setMemoAddresses(spec, "/proc/kallsyms"); err != nil {
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

// TestGateCost reports what the programs cost per exec of a static
// program and what enforce_file_open costs per open (the kernel's
// bpf_stats run time; with instruction counting, instructions) for paths
// of several depths and mounts, none of which a rule concerns, under rules
// like the benchmark's 10-rule set. It asserts only that
// the opens succeed; BPFLSM_COST=1 runs it (in a guest: scripts/vmtest).
func TestGateCost(t *testing.T) {
	if os.Getenv("BPFLSM_COST") == "" {
		t.Skip("BPFLSM_COST=1 measures the open hook's cost per path")
	}
	e := kernel(t)
	apply(t, e, hostpolicy.Postures{}, policy("gate-cost", `
  file:
    matchPaths:
    - path: /srv/bench-deny/f-0/secret.key
    matchDirectories:
    - dir: /var/bench-deny/d-0/
    matchPatterns:
    - pattern: /tmp/*/bench-deny-f0/*.key
  process:
    matchPaths:
    - path: /tmp/bench-cost/probe/denied
    - execname: bench-deny-tool-0
    matchDirectories:
    - dir: /opt/bench-deny-0/
    matchPatterns:
    - pattern: /tmp/*/bench-deny-x0/*.key
  action: Block
`))
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	dir := testDir(t)
	paths := []string{"/etc/hostname", filepath.Join(dir, "f"), filepath.Join(dir, "a/b/c/d/e/f/g/h"),
		"/tmp/bench-cost/data/sub/file.txt", "/root/bench-cost-file", "/var/tmp/c/file.txt"}
	for _, p := range paths[1:] {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The exec loop's share of every program: a static busybox as "true",
	// forked and executed with no files, as the benchmark's exec loop.
	progs := map[string]*ebpf.Program{}
	v := reflect.ValueOf(e.objs.enforcerPrograms)
	for i := 0; i < v.NumField(); i++ {
		if p, ok := v.Field(i).Interface().(*ebpf.Program); ok && p != nil {
			progs[v.Type().Field(i).Tag.Get("ebpf")] = p
		}
	}
	snapshot := func() map[string]*ebpf.ProgramStats {
		out := map[string]*ebpf.ProgramStats{}
		for name, p := range progs {
			if st, err := p.Stats(); err == nil {
				out[name] = st
			}
		}
		return out
	}
	tru := copyBusybox(t, filepath.Join(dir, "bin", "busybox-true"))
	const execs = 300
	s0 := snapshot()
	for i := 0; i < execs; i++ {
		pid, err := syscall.ForkExec(tru, []string{"true"}, &syscall.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			t.Fatalf("wait: %v, status %v", err, ws)
		}
	}
	s1 := snapshot()
	var names []string
	for name := range s1 {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if runs := s1[name].RunCount - s0[name].RunCount; runs > 0 {
			t.Logf("exec %-26s %5.2f runs %6d ns per exec", name, float64(runs)/execs, (s1[name].Runtime-s0[name].Runtime).Nanoseconds()/execs)
		}
	}

	prog := e.objs.EnforceFileOpen
	for _, p := range paths {
		const n = 2000
		s0, err := prog.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			syscall.Close(fd)
		}
		s1, _ := prog.Stats()
		runs := s1.RunCount - s0.RunCount
		if runs == 0 {
			t.Fatalf("%s: no runs", p)
		}
		t.Logf("%-40s %2d components  %6d ns per run (%d runs)", p, strings.Count(p, "/"), (s1.Runtime-s0.Runtime).Nanoseconds()/int64(runs), runs)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == "/tmp" || f[4] == "/" || strings.HasPrefix(dir, f[4]+"/")) {
			t.Logf("mount %s", l)
		}
	}
}
