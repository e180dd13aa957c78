package bpflsm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// fakeContainer is the guest's stand-in for a container: a busybox shell
// started straight into its own cgroup2 directory (clone3 into the cgroup)
// and into fresh pid and mount namespaces. Commands are run through its
// stdin, so every exec happens inside.
type fakeContainer struct {
	cgroupID uint64
	pidNS    uint32
	mntNS    uint32
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Reader
}

// startContainer starts a fake container. With ownCgroup false it stays in
// the test's cgroup, so only its namespaces tell it apart from the host.
func startContainer(t *testing.T, name string, ownCgroup bool) *fakeContainer {
	t.Helper()
	c := &fakeContainer{}
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	if ownCgroup {
		dir := filepath.Join("/sys/fs/cgroup", "bpflsm-"+name)
		_ = os.Remove(dir)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cgroup2 is needed at /sys/fs/cgroup: %v", err)
		}
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove cgroup %s: %v", dir, err)
			}
		})
		fd, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(fd.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		c.cgroupID = st.Ino
		attr.UseCgroupFD, attr.CgroupFD = true, int(fd.Fd())
	}
	c.cmd = exec.Command(busybox, "sh")
	c.cmd.SysProcAttr = attr
	var err error
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = c.cmd.Stdout
	c.out = bufio.NewReader(stdout)
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start container %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.in.Close()
		_ = c.cmd.Wait()
	})
	pid := c.cmd.Process.Pid
	c.pidNS, c.mntNS = procNS(t, pid, "pid"), procNS(t, pid, "mnt")
	if c.pidNS == procNS(t, os.Getpid(), "pid") {
		t.Fatal("the fake container shares the test's pid namespace")
	}
	return c
}

func procNS(t *testing.T, pid int, kind string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// run execs path inside the container and returns the shell's exit code
// for it (126 when the exec is refused).
func (c *fakeContainer) run(t *testing.T, path string) int {
	t.Helper()
	if _, err := fmt.Fprintf(c.in, "%s true; echo rc=$?\n", path); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := c.out.ReadString('\n')
		if err != nil {
			t.Fatalf("container shell: %v", err)
		}
		var rc int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "rc=%d", &rc); err == nil {
			return rc
		}
	}
}

func containerRuleID(t *testing.T, rs *hostpolicy.RuleSet, policy string) uint32 {
	t.Helper()
	var ids []uint32
	for _, r := range rs.ContainerRules {
		if r.Policy == policy {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("container policy %s has %d rules, want 1", policy, len(ids))
	}
	return ids[0]
}

func containerPolicyDoc(name, labels, spec string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s
spec:
  selector:
    matchLabels:
%s%s`, name, labels, spec)
}

func info(name string) hostpolicy.ContainerInfo {
	return hostpolicy.ContainerInfo{Name: name, Identities: []string{
		"namespaceName=container_namespace", "kubearmor.io/container.name=" + name}}
}

// TestContainerPolicyScope: a container policy blocks an exec inside the
// container it selects, and nowhere else; host rules keep applying on the
// host and not inside known containers.
func TestContainerPolicyScope(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	inCtr := copyBusybox(t, filepath.Join(dir, "busybox-ctr"))
	onHost := copyBusybox(t, filepath.Join(dir, "busybox-host"))
	web := startContainer(t, "web", true)
	db := startContainer(t, "db", true)
	t.Cleanup(func() {
		if _, err := e.SetContainers(nil); err != nil {
			t.Errorf("SetContainers(nil): %v", err)
		}
	})

	rs := apply(t, e, hostpolicy.Postures{},
		containerPolicyDoc("ctr-block", "      kubearmor.io/container.name: web\n", `  process:
    matchPaths:
    - path: `+inCtr+`
  action: Block
`),
		policy("host-block", `
  process:
    matchPaths:
    - path: `+onHost+`
  action: Block
`))
	ctrID := containerRuleID(t, rs, "ctr-block")
	hostID := ruleID(t, rs, "host-block")

	// Before the containers are known, every task is a host task.
	if rc := web.run(t, inCtr); rc != 0 {
		t.Fatalf("container rule applied before SetContainers: rc=%d", rc)
	}
	if rc := web.run(t, onHost); rc != 126 {
		t.Fatalf("host rule inside an unknown container: rc=%d, want 126", rc)
	}

	un, err := e.SetContainers([]hostpolicy.Container{
		{ID: "web", CgroupID: web.cgroupID, Info: info("web")},
		{ID: "db", CgroupID: db.cgroupID, Info: info("db")},
	})
	if err != nil || len(un) != 0 {
		t.Fatalf("SetContainers: %v %v", un, err)
	}

	if rc := web.run(t, inCtr); rc != 126 {
		t.Errorf("exec in the selected container: rc=%d, want 126 (permission denied)", rc)
	}
	ev := wantVerdict(t, ctrID, event.VerdictBlock, event.OpProcess, inCtr)
	if ev.CgroupID != web.cgroupID || ev.PidNS != web.pidNS || ev.MntNS != web.mntNS {
		t.Errorf("event identity: cgroup %d pidns %d mntns %d, want %d %d %d", ev.CgroupID, ev.PidNS, ev.MntNS, web.cgroupID, web.pidNS, web.mntNS)
	}
	if ev.PID == ev.HostPID {
		t.Errorf("PID %d is not the namespace's own", ev.PID)
	}
	wantAllowed(t, run(inCtr, "true"), "the container's rule on the host")
	if rc := db.run(t, inCtr); rc != 0 {
		t.Errorf("exec in a container the policy does not select: rc=%d", rc)
	}
	// Host policies are for the host only.
	wantDenied(t, run(onHost, "true"), "the host rule on the host")
	wantVerdict(t, hostID, event.VerdictBlock, event.OpProcess, onHost)
	if rc := web.run(t, onHost); rc != 0 {
		t.Errorf("host rule inside a known container: rc=%d, want 0", rc)
	}
	if rc := db.run(t, onHost); rc != 0 {
		t.Errorf("host rule inside a known container without policies: rc=%d, want 0", rc)
	}

	// The rules follow the containers: once web is gone from the list, its
	// processes are host tasks again.
	if _, err := e.SetContainers([]hostpolicy.Container{{ID: "db", CgroupID: db.cgroupID, Info: info("db")}}); err != nil {
		t.Fatal(err)
	}
	if rc := web.run(t, inCtr); rc != 0 {
		t.Errorf("container rule after the container left: rc=%d", rc)
	}
	// And a policy change reaches running containers.
	if _, err := e.SetContainers([]hostpolicy.Container{{ID: "web", CgroupID: web.cgroupID, Info: info("web")}}); err != nil {
		t.Fatal(err)
	}
	if rc := web.run(t, inCtr); rc != 126 {
		t.Errorf("exec in the container after it came back: rc=%d, want 126", rc)
	}
	apply(t, e, hostpolicy.Postures{})
	if rc := web.run(t, inCtr); rc != 0 {
		t.Errorf("exec after the policy was removed: rc=%d, want 0", rc)
	}
	flush(t)
}

// TestContainerPolicyByNamespaces: a container whose cgroup id is unknown
// is recognised by its pid and mount namespaces.
func TestContainerPolicyByNamespaces(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	blocked := copyBusybox(t, filepath.Join(dir, "busybox-ns"))
	ctr := startContainer(t, "ns", false)
	t.Cleanup(func() {
		if _, err := e.SetContainers(nil); err != nil {
			t.Errorf("SetContainers(nil): %v", err)
		}
	})
	rs := apply(t, e, hostpolicy.Postures{},
		containerPolicyDoc("ns-block", "      app: ns\n", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block
`))
	id := containerRuleID(t, rs, "ns-block")
	ci := info("ns")
	ci.Identities = append(ci.Identities, "app=ns")
	if _, err := e.SetContainers([]hostpolicy.Container{{ID: "ns", PidNS: ctr.pidNS, MntNS: ctr.mntNS, Info: ci}}); err != nil {
		t.Fatal(err)
	}
	if rc := ctr.run(t, blocked); rc != 126 {
		t.Errorf("exec in the container: rc=%d, want 126", rc)
	}
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpProcess, blocked)
	if ev.PidNS != ctr.pidNS || ev.MntNS != ctr.mntNS {
		t.Errorf("event namespaces %d/%d, want %d/%d", ev.PidNS, ev.MntNS, ctr.pidNS, ctr.mntNS)
	}
	wantAllowed(t, run(blocked, "true"), "the container's rule on the host")
}

// TestContainerAllowList: an Allow rule puts only the selected container
// in allow-list mode, with the container posture; the host is untouched.
func TestContainerAllowList(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	allowed := copyBusybox(t, filepath.Join(dir, "busybox-allowed"))
	other := copyBusybox(t, filepath.Join(dir, "busybox-other"))
	ctr := startContainer(t, "allow", true)
	t.Cleanup(func() {
		if _, err := e.SetContainers(nil); err != nil {
			t.Errorf("SetContainers(nil): %v", err)
		}
	})
	docs := []string{containerPolicyDoc("ctr-allow", "      kubearmor.io/container.name: allow\n", `  process:
    matchPaths:
    - path: `+allowed+`
    - path: `+busybox+`
  action: Allow
`), sentinelPolicy}
	rs := hostpolicytest.Compile(t, hostpolicy.Options{Host: "*", ContainerPostures: hostpolicy.Postures{File: "block"}}, docs...)
	if un, err := e.Apply(rs); err != nil || len(un) != 0 {
		t.Fatalf("Apply: %v %v", un, err)
	}
	t.Cleanup(func() { _, _ = e.Apply(compile(t, hostpolicy.Postures{})) })
	if _, err := e.SetContainers([]hostpolicy.Container{{ID: "allow", CgroupID: ctr.cgroupID, Info: info("allow")}}); err != nil {
		t.Fatal(err)
	}
	if rc := ctr.run(t, allowed); rc != 0 {
		t.Errorf("allowed exec in the container: rc=%d", rc)
	}
	if rc := ctr.run(t, other); rc != 126 {
		t.Errorf("exec outside the allow-list in the container: rc=%d, want 126", rc)
	}
	waitEvent(t, "posture block in the container", func(ev event.Event) bool {
		return ev.Resource == other && ev.Verdict == event.VerdictPostureBlock && ev.CgroupID == ctr.cgroupID
	})
	wantAllowed(t, run(other, "true"), "the container's allow-list on the host")
}
