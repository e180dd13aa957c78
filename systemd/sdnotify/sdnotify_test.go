package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen stands in for systemd: a real unixgram socket whose path goes into
// NOTIFY_SOCKET, exactly as systemd passes it to a Type=notify service.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// next returns the next datagram, or "" if none is queued. The deadline only
// bounds a read of an already-sent datagram; no assertion depends on timing.
func next(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func TestNotifications(t *testing.T) {
	tests := []struct {
		name string
		call func() error
		want string // prefix of the datagram
	}{
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"reloading", Reloading, "RELOADING=1\nMONOTONIC_USEC="},
		{"status", func() error { return Status("enforcer=bpf-lsm policies=3") }, "STATUS=enforcer=bpf-lsm policies=3"},
		{"status newline flattened", func() error { return Status("a\nREADY=1\r") }, "STATUS=a READY=1 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := listen(t)
			if err := tt.call(); err != nil {
				t.Fatalf("call: %v", err)
			}
			got := next(t, conn)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("datagram %q, want prefix %q", got, tt.want)
			}
			if strings.HasPrefix(tt.name, "status") && strings.Contains(got, "\n") {
				t.Fatalf("status datagram %q contains a newline", got)
			}
		})
	}
}

func TestReloadingTimestampIsMonotonicNow(t *testing.T) {
	conn := listen(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	_, val, ok := strings.Cut(next(t, conn), "MONOTONIC_USEC=")
	if !ok {
		t.Fatal("no MONOTONIC_USEC")
	}
	usec, err := strconv.ParseInt(val, 10, 64)
	if err != nil || usec <= 0 {
		t.Fatalf("MONOTONIC_USEC=%q: want a positive integer (%v)", val, err)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if Enabled() {
		t.Fatal("Enabled with empty NOTIFY_SOCKET")
	}
	for name, f := range map[string]func() error{
		"Ready": Ready, "Stopping": Stopping, "Reloading": Reloading,
		"Status": func() error { return Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
}

func TestDeadSocketIsAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if err := Ready(); err == nil {
		t.Fatal("Ready to a missing socket returned nil")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name, usec, pid string
		want            time.Duration
		wantErr         bool
	}{
		{"unset", "", "", 0, false},
		{"30s", "30000000", "", 30 * time.Second, false},
		{"30s for us", "30000000", self, 30 * time.Second, false},
		{"meant for another pid", "30000000", "1", 0, false},
		{"garbage", "soon", "", 0, true},
		{"negative", "-5", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			w, err := NewWatchdog()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if w == nil {
				t.Fatal("nil watchdog")
			}
			if w.Interval() != tt.want {
				t.Fatalf("Interval = %v, want %v", w.Interval(), tt.want)
			}
			if w.BeatEvery() != tt.want/4 {
				t.Fatalf("BeatEvery = %v, want %v", w.BeatEvery(), tt.want/4)
			}
		})
	}
}

// The point of the watchdog: no pipeline progress, no ping.
func TestWatchdogPingsOnlyAfterProgress(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	w, err := NewWatchdog()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		beats    int
		wantPing bool
	}{
		{0, false}, // started, pipeline not yet running
		{1, true},
		{0, false}, // stuck
		{0, false},
		{5, true}, // recovered
		{1, true},
	}
	for i, s := range steps {
		for range s.beats {
			w.Beat()
		}
		pinged, err := w.Check()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if pinged != s.wantPing {
			t.Fatalf("step %d: pinged=%v, want %v", i, pinged, s.wantPing)
		}
		got := next(t, conn)
		if s.wantPing && got != "WATCHDOG=1" {
			t.Fatalf("step %d: datagram %q, want WATCHDOG=1", i, got)
		}
		if !s.wantPing && got != "" {
			t.Fatalf("step %d: unexpected datagram %q", i, got)
		}
	}
}

func TestDisabledWatchdogRunReturns(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	w, err := NewWatchdog()
	if err != nil {
		t.Fatal(err)
	}
	// A disabled Run must return without the context ever ending; if it
	// looped, this test would hang and the test binary's timeout would fail it.
	w.Run(context.Background(), nil)
}
