package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// auditDirPolicy audits every file opened under dir (the monitor's
// user-space matcher raises the alerts: lsm none).
func auditDirPolicy(dir string) string {
	return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: audit-watched
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  file:
    matchDirectories:
    - dir: ` + dir + `/
      recursive: true
  action: Audit
`
}

// startMonitored starts the daemon with the monitor, lsm none, a unix
// socket and logPath, auditing opens under watch; it skips when the
// monitor cannot load here.
func startMonitored(t *testing.T, dir, watch, logPath string, extra ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the monitor")
	}
	policies := filepath.Join(dir, "policies")
	os.MkdirAll(policies, 0o700)
	os.WriteFile(filepath.Join(policies, "audit.yaml"), []byte(auditDirPolicy(watch)), 0o600)
	sock := filepath.Join(dir, "run", "kubearmor.sock")
	args := append([]string{"--config", "/dev/null", "--host", "testhost", "--lsm", "none", "--socket", sock,
		"--gRPC", "0", "--policyDir", policies, "--logPath", logPath}, extra...)
	cmd := exec.Command(binary, args...)
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	if line := logs.waitFor(t, "monitor"); strings.Contains(line, "monitor unavailable") {
		t.Skipf("the monitor cannot load here: %s", line)
	}
	logs.waitFor(t, "kubearmor ready")
	return sock
}

// agentStatus runs `kubearmor status --json` against the daemon.
func agentStatus(t *testing.T, sock string) *statuspb.Status {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", "--addr", sock).Output()
	if err != nil {
		t.Fatalf("kubearmor status: %v\n%s", err, out)
	}
	var st statuspb.Status
	if err := protojson.Unmarshal(out, &st); err != nil {
		t.Fatalf("kubearmor status --json: %v\n%s", err, out)
	}
	return &st
}

func findStage(st *statuspb.Status, prefix string) *statuspb.Stage {
	for _, s := range st.Stages {
		if strings.HasPrefix(s.Name, prefix) {
			return s
		}
	}
	return nil
}

// A file whose name is not UTF-8 (`cat $'\xff'`) raises an alert through
// the real monitor: gRPC and the JSON file show the same escaped text
// (\xff), the gRPC stream stays open and the next alert arrives, and the
// status lists every stage of the path.
func TestInvalidUTF8EventKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	watch := filepath.Join(dir, "watched")
	os.MkdirAll(watch, 0o700)
	logPath := filepath.Join(dir, "alerts.jsonl")
	sock := startMonitored(t, dir, watch, logPath)

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := kubearmorpb.NewLogServiceClient(conn)
	stream, err := c.WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: 1}); err != nil {
		t.Fatal(err)
	}
	// The stream is registered once the status lists it.
	for deadline := time.Now().Add(10 * time.Second); findStage(agentStatus(t, sock), "subscriber alerts") == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the WatchAlerts subscriber never appeared in the status")
		}
		time.Sleep(50 * time.Millisecond)
	}

	bad := watch + "/\xff"
	next := watch + "/next"
	os.WriteFile(bad, nil, 0o600)
	time.Sleep(200 * time.Millisecond) // keep the order of the two alerts obvious
	os.WriteFile(next, nil, 0o600)

	escaped := watch + `/\xff`
	sawBad := false
	for {
		a, err := stream.Recv()
		if err != nil {
			t.Fatalf("WatchAlerts ended (saw the escaped alert: %v): %v", sawBad, err)
		}
		if a.Resource == escaped {
			sawBad = true
		}
		if a.Resource == next {
			break
		}
	}
	if !sawBad {
		t.Errorf("no alert for %q on gRPC", escaped)
	}
	rec := waitForRecord(t, &recordTail{path: logPath}, map[string]any{"PolicyName": "audit-watched", "Resource": escaped})
	if rec["Resource"] != escaped {
		t.Errorf("JSON file: %v", rec["Resource"])
	}

	st := agentStatus(t, sock)
	for _, name := range []string{"monitor kernel", "monitor reader", "pipeline", "throttle (alerts)", "subscriber alerts", "exporter logPath " + logPath} {
		s := findStage(st, name)
		if s == nil {
			t.Errorf("status has no stage %q: %v", name, st.Stages)
			continue
		}
		if s.Received == 0 {
			t.Errorf("stage %q received nothing: %v", name, s)
		}
	}
	if s := findStage(st, "subscriber alerts"); s != nil && s.Dropped != 0 {
		t.Errorf("the subscriber lost alerts: %v", s)
	}
}

// logPath on a tiny filesystem that fills: the lines lost are counted and
// the status says the exporter is failing; once space is freed, new lines
// arrive without a SIGHUP and the status says it is healthy.
func TestLogPathFullDiskRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	os.MkdirAll(disk, 0o700)
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer unix.Unmount(disk, unix.MNT_DETACH)
	filler := filepath.Join(disk, "filler")
	os.WriteFile(filler, make([]byte, 40<<10), 0o600)
	watch := filepath.Join(dir, "watched")
	os.MkdirAll(watch, 0o700)
	logPath := filepath.Join(disk, "alerts.jsonl")
	sock := startMonitored(t, dir, watch, logPath, "--alertThrottling=false", "--hostVisibility", "none")

	stageOf := func() *statuspb.Stage {
		s := findStage(agentStatus(t, sock), "exporter logPath")
		if s == nil {
			t.Fatal("status has no logPath exporter stage")
		}
		return s
	}
	var s *statuspb.Stage
	for i := 0; ; i++ {
		for k := 0; k < 50; k++ {
			os.WriteFile(filepath.Join(watch, "f"), nil, 0o600)
		}
		time.Sleep(20 * time.Millisecond)
		if s = stageOf(); s.FailingSinceUnix != 0 {
			break
		}
		if i > 500 {
			t.Fatalf("logPath never filled: %v", s)
		}
	}
	if s.Dropped == 0 || !strings.Contains(s.State, "no space left on device") {
		t.Errorf("full disk: %v", s)
	}

	os.Remove(filler)
	marker := filepath.Join(watch, "after-freeing")
	deadline := time.Now().Add(30 * time.Second)
	for s = stageOf(); s.FailingSinceUnix != 0; s = stageOf() {
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after space was freed: %v", s)
		}
		os.WriteFile(marker, nil, 0o600)
		time.Sleep(200 * time.Millisecond)
	}
	if s.State != "" {
		t.Errorf("recovered: %v", s)
	}
	os.WriteFile(marker, nil, 0o600)
	waitForRecord(t, &recordTail{path: logPath}, map[string]any{"Resource": marker})
}
