package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/runtimes/runtimetest"
)

// startAgent runs the daemon with extra flags; stop ends it (also called at
// the end of the test).
func startAgent(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", "/dev/null", "--host", "testhost", "--lsm", "none",
		"--socket", "", "--gRPC", "0"}, args...)...)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	if line := logs.waitFor(t, "monitor"); strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	return stop
}

// Events from inside Docker and containerd containers carry the container's
// identity; a host event at the same time carries none. Containers started
// before the agent are attributed, also after a restart.
func TestContainerIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if testing.Short() {
		t.Skip("starts dockerd and containerd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lab, err := runtimetest.Start(ctx)
	if errors.Is(err, runtimetest.ErrUnavailable) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	dockerID, err := lab.DockerRun(ctx, "web", map[string]string{"app": "web"}, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.CtrRun(ctx, "default", "c1", map[string]string{"tier": "db"}, "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "host-marker")
	os.WriteFile(marker, []byte("x"), 0o600)

	for round := 1; round <= 2; round++ { // the second round is an agent restart
		out := filepath.Join(t.TempDir(), "events.jsonl")
		stop := startAgent(t, "--policyDir", t.TempDir(), "--logPath", out, "--hostVisibility", "process,file",
			"--dockerSocket", lab.DockerSock, "--containerdSocket", lab.ContainerdSock)
		tail := &recordTail{path: out}

		// Repeat the operation until the event shows up: the runtimes are
		// connected asynchronously, so early events may precede discovery.
		find := func(what string, run func() error, want map[string]any) map[string]any {
			t.Helper()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if err := run(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				tail.read(t)
				for _, m := range tail.recs {
					ok := true
					for k, v := range want {
						got, has := m[k]
						ok = ok && (v == absent && !has || v != absent && got == v)
					}
					if ok {
						return m
					}
				}
				time.Sleep(300 * time.Millisecond)
			}
			t.Fatalf("round %d: %s: no event with %v", round, what, want)
			return nil
		}
		d := find("docker exec", func() error { _, err := lab.Docker(ctx, "exec", "web", "cat", "/etc/hostname"); return err },
			map[string]any{"Type": "ContainerLog", "Operation": "File", "Resource": "/etc/hostname", "ContainerID": dockerID,
				"ContainerName": "web", "PodName": "web", "NamespaceName": "container_namespace", "ContainerImage": runtimetest.DockerImage})
		if labels, _ := d["Labels"].(string); !strings.Contains(labels, "app=web") {
			t.Errorf("docker labels %q lack app=web", labels)
		}
		find("docker exec process", func() error { _, err := lab.Docker(ctx, "exec", "web", "true"); return err },
			map[string]any{"Type": "ContainerLog", "Operation": "Process", "ContainerName": "web"})
		c := find("ctr exec", func() error {
			_, err := lab.Ctr(ctx, "default", "task", "exec", "--exec-id", "e"+strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""), "c1", "sh", "-c", "echo x > /tmp/ka-probe; cat /tmp/ka-probe")
			return err
		}, map[string]any{"Type": "ContainerLog", "Operation": "File", "Resource": "/tmp/ka-probe", "ContainerID": "c1"})
		if labels, _ := c["Labels"].(string); !strings.Contains(labels, "tier=db") {
			t.Errorf("containerd labels %q lack tier=db", labels)
		}
		find("host cat", func() error { return exec.Command("cat", marker).Run() },
			map[string]any{"Type": "HostLog", "Operation": "File", "Resource": marker, "ContainerID": absent, "ContainerName": absent})
		stop()
	}
}
