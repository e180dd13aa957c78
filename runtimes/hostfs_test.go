package runtimes

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func testHostFS(t *testing.T) *hostFS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: reads other processes' cgroups and opens cgroups by handle")
	}
	h, err := newHostFS("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	if h.cg2 == "" {
		t.Skip("no cgroup2 mount on this host")
	}
	return h
}

// A cgroup made here resolves from its id back to its path, as a kernel
// event's cgroup id would; a removed one does not.
func TestCgroupPathByHandle(t *testing.T) {
	h := testHostFS(t)
	rel := "/kubearmor-rt-test-" + strconv.Itoa(os.Getpid()) + "/docker/" + dockerID
	dir := filepath.Join(h.cg2, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("make a test cgroup: %v", err)
	}
	defer func() {
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
		os.Remove(filepath.Dir(filepath.Dir(dir)))
	}()
	id := h.cgroupID(rel)
	if id <= 1 {
		t.Fatalf("cgroupID(%s) = %d", rel, id)
	}
	got, err := h.cgroupPath(id)
	if err != nil {
		t.Fatal(err)
	}
	if got != rel {
		t.Fatalf("cgroupPath(%d) = %q, want %q", id, got, rel)
	}
	if root, err := h.cgroupPath(1); err != nil || root != "/" {
		t.Errorf("cgroupPath(1) = %q, %v; want the root", root, err)
	}
	os.Remove(dir)
	if p, err := h.cgroupPath(id); err == nil {
		t.Errorf("cgroupPath of a removed cgroup = %q, want an error", p)
	}
}

// Our own process: its keys are the host's.
func TestFillSelf(t *testing.T) {
	h := testHostFS(t)
	var c Container
	h.fill(&c, uint32(os.Getpid()), "")
	self, _ := os.ReadFile("/proc/self/cgroup")
	want, _ := UnifiedPath(string(self))
	if c.CgroupPath != want || c.CgroupID == 0 || c.PidNS == 0 || c.MntNS == 0 {
		t.Fatalf("fill(self) = %+v, want path %q and nonzero keys", c, want)
	}
}
