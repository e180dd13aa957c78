package export

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// tinyTmpfs mounts a 64 KiB tmpfs on a temporary directory (tests run as
// root), so a real write fails with ENOSPC.
func tinyTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func balanced(t *testing.T, what string, st event.Stage) {
	t.Helper()
	if st.Received != st.Passed+st.Dropped+st.Filtered+st.Pending {
		t.Errorf("%s: received %d != passed %d + dropped %d + filtered %d + pending %d", what,
			st.Received, st.Passed, st.Dropped, st.Filtered, st.Pending)
	}
}

// A full disk loses lines, counted, and says so; once space is freed the
// exporter writes again by itself (no SIGHUP, no Reopen), and the file
// holds only whole lines.
func TestJSONLinesRecoversFromFullDisk(t *testing.T) {
	dir := tinyTmpfs(t)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alerts.json")
	j, err := OpenJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()

	var flushErr error
	for i := 0; i < 1000 && flushErr == nil; i++ {
		if err := j.WriteAlert(karmorAlert); err != nil {
			t.Fatal(err)
		}
		if i%7 == 6 {
			flushErr = j.Flush()
		}
	}
	if flushErr == nil || !strings.Contains(flushErr.Error(), "no space left on device") {
		t.Fatalf("the tmpfs never filled: %v", flushErr)
	}
	st := j.Stage()
	if !strings.HasPrefix(st.State, "failing: ") || !strings.Contains(st.State, "no space left") || st.FailingSince.IsZero() || st.Dropped == 0 {
		t.Fatalf("after ENOSPC: %+v", st)
	}
	balanced(t, "full", st)
	// Lines while failing, before the next attempt is due, are lost and counted.
	j.WriteAlert(karmorAlert)
	j.Flush()
	if got := j.Stage(); got.Dropped != st.Dropped+1 {
		t.Errorf("a line during the backoff: dropped %d, want %d", got.Dropped, st.Dropped+1)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	marker := &kubearmorpb.Alert{PolicyName: "after-the-disk-was-freed"}
	deadline := time.Now().Add(3 * maxBackoff)
	for j.Stage().State != "" {
		if time.Now().After(deadline) {
			t.Fatalf("still failing %s after space was freed: %+v", 3*maxBackoff, j.Stage())
		}
		time.Sleep(50 * time.Millisecond)
		j.WriteAlert(marker)
		j.Flush()
	}
	st = j.Stage()
	balanced(t, "recovered", st)
	if st.Pending != 0 || !st.FailingSince.IsZero() {
		t.Errorf("recovered: %+v", st)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if uint64(len(lines)) != st.Passed {
		t.Errorf("file has %d lines, exporter says %d written", len(lines), st.Passed)
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %d is not whole JSON: %v: %.80q", i+1, err, l)
		}
	}
	if !bytes.HasSuffix(data, []byte(`"PolicyName":"after-the-disk-was-freed"}`+"\n")) {
		t.Errorf("the line written after recovery is not at the end: %.200q", data[max(0, len(data)-200):])
	}
}

// A removed log file (a directory deleted and re-created) is re-created at
// the next attempt after a failure.
func TestJSONLinesReopensAfterFailure(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	os.Mkdir(sub, 0o700)
	path := filepath.Join(sub, "alerts.json")
	j, err := OpenJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Make the next write fail for real: the descriptor is closed under it.
	j.mu.Lock()
	j.f.Close()
	j.mu.Unlock()
	os.RemoveAll(sub)
	j.WriteAlert(karmorAlert)
	if err := j.Flush(); err == nil {
		t.Fatal("a write to a closed file succeeded")
	}
	if st := j.Stage(); st.State == "" || st.Dropped != 1 {
		t.Fatalf("after the failure: %+v", st)
	}
	os.Mkdir(sub, 0o700)
	time.Sleep(minBackoff + 50*time.Millisecond)
	j.WriteAlert(karmorAlert)
	if err := j.Flush(); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != karmorLine+"\n" {
		t.Errorf("re-created file: %q", data)
	}
	st := j.Stage()
	if st.State != "" || st.Passed != 1 || st.Dropped != 1 {
		t.Errorf("after recovery: %+v", st)
	}
	balanced(t, "reopened", st)
}

// Syslog: a vanished server loses messages, counted; while failing it does
// not try again before the backoff; when the server is back, it recovers.
func TestSyslogRecovers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("unixgram", sock)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := listen()
	s, err := NewSyslog(SyslogOptions{Address: "unix://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteAlert(karmorAlert); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	os.Remove(sock)
	if err := s.WriteAlert(karmorAlert); err == nil {
		t.Fatal("a send to a removed socket succeeded")
	}
	if err := s.WriteAlert(karmorAlert); err != nil {
		t.Errorf("within the backoff a message is counted, not attempted: %v", err)
	}
	st := s.Stage()
	if !strings.HasPrefix(st.State, "failing: ") || st.Dropped != 2 || st.Passed != 1 || st.FailingSince.IsZero() {
		t.Fatalf("server gone: %+v", st)
	}
	balanced(t, "gone", st)

	srv = listen()
	defer srv.Close()
	time.Sleep(minBackoff + 50*time.Millisecond)
	if err := s.WriteAlert(&kubearmorpb.Alert{PolicyName: "back"}); err != nil {
		t.Fatalf("server back: %v", err)
	}
	buf := make([]byte, 64<<10)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := srv.ReadFrom(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte(`"PolicyName":"back"`)) {
		t.Fatalf("server back: %v %q", err, buf[:n])
	}
	st = s.Stage()
	if st.State != "" || st.Passed != 2 || st.Dropped != 2 {
		t.Errorf("recovered: %+v", st)
	}
	balanced(t, "recovered", st)
}
