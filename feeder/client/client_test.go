package client

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

func startAgent(t *testing.T) (*feeder.Server, string, context.CancelFunc) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "kubearmor.sock")
	srv, err := feeder.New(feeder.Options{Cluster: "default", Host: "vm1", TCP: "127.0.0.1:0", Socket: sock,
		Status: func() *statuspb.Status {
			return &statuspb.Status{Enforcer: "BPFLSM", Policies: []*statuspb.LoadedPolicy{{Name: "hsp-block-sleep", Rules: 1, Action: "Block", File: "/etc/kubearmor/policies/hsp-block-sleep.yaml"}}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, sock, cancel
}

func subscribers(srv *feeder.Server) int { return len(srv.FeederStatus().Subscribers) }

func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func alert() *kubearmorpb.Alert {
	return &kubearmorpb.Alert{Timestamp: 1795458092, UpdatedTime: "2026-11-23T18:21:32.591892521Z", HostPID: 1000, PID: 1000, UID: 0,
		ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/sleep", PolicyName: "hsp-block-sleep", Type: "MatchedHostPolicy",
		Operation: "Process", Resource: "/usr/bin/sleep 1", Action: "Block", Result: "Permission denied", Message: "blocked sleep"}
}

func logEvent() *kubearmorpb.Log {
	return &kubearmorpb.Log{Timestamp: 1795458092, UpdatedTime: "2026-11-23T18:21:32Z", HostPID: 7, UID: 1000, ProcessName: "/usr/bin/cat",
		Type: "HostLog", Operation: "File", Resource: "/etc/hostname", Result: "Passed"}
}

func TestWatchJSONWithLimit(t *testing.T) {
	srv, sock, _ := startAgent(t)
	for _, addr := range []string{sock, "unix://" + sock, srv.TCPAddr().String()} {
		c, err := Dial(addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		errc := make(chan error, 1)
		go func() {
			errc <- c.Watch(context.Background(), &out, WatchOptions{Filter: FilterPolicy, JSON: true, Limit: 2})
		}()
		waitUntil(func() bool { return subscribers(srv) == 1 })
		srv.PublishLog(logEvent()) // not asked for
		for range 3 {
			srv.PublishAlert(alert())
		}
		if err := <-errc; err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		filled := alert() // the agent fills ClusterName and HostName
		filled.ClusterName, filled.HostName = "default", "vm1"
		want, _ := json.Marshal(filled)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 2 || lines[0] != string(want) || lines[1] != string(want) {
			t.Errorf("%s: output:\n%s\nwant twice:\n%s", addr, out.String(), want)
		}
		c.Close()
		waitUntil(func() bool { return subscribers(srv) == 0 })
	}
}

func TestWatchAllHumanView(t *testing.T) {
	srv, sock, _ := startAgent(t)
	c, _ := Dial(sock, nil)
	defer c.Close()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Watch(ctx, &out, WatchOptions{Filter: FilterAll, Messages: true}) }()
	waitUntil(func() bool { return subscribers(srv) == 3 })
	srv.PublishAlert(alert())
	srv.PublishLog(logEvent())
	waitUntil(func() bool { return strings.Count(out.String(), "\n") == 3 }) // status message, alert, log
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Watch after cancel: %v", err)
	}
	got := out.String()
	for _, want := range []string{
		"  default  vm1  [INFO]  status: enforcer BPFLSM, 1 policies, 1 rules, 0 not enforced\n",
		` MatchedHostPolicy hsp-block-sleep Block "Permission denied" Process /usr/bin/sleep 1 | pid=1000 uid=0 /usr/bin/sleep <- /usr/bin/bash msg="blocked sleep"` + "\n",
		" HostLog Passed File /etc/hostname | pid=7 uid=1000 /usr/bin/cat\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestWatchWhenAgentStops(t *testing.T) {
	srv, sock, stop := startAgent(t)
	c, _ := Dial(sock, nil)
	defer c.Close()
	errc := make(chan error, 1)
	go func() { errc <- c.Watch(context.Background(), &syncBuffer{}, WatchOptions{Filter: FilterSystem}) }()
	waitUntil(func() bool { return subscribers(srv) == 1 })
	stop()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Watch when the agent stops: %v", err)
	}
}

func TestWatchErrors(t *testing.T) {
	c, _ := Dial(filepath.Join(t.TempDir(), "missing.sock"), nil)
	defer c.Close()
	if err := c.Watch(context.Background(), &syncBuffer{}, WatchOptions{}); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("no agent: %v", err)
	}
	if err := c.Watch(context.Background(), &syncBuffer{}, WatchOptions{Filter: "foo"}); err == nil {
		t.Error("accepted filter foo")
	}
}

func TestStatus(t *testing.T) {
	srv, sock, _ := startAgent(t)
	srv.PublishAlert(alert())
	c, _ := Dial(sock, nil)
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteStatus(&b, st)
	for _, want := range []string{"Host:       vm1 (cluster default)", "Enforcer:   BPFLSM", "Policies:   1 loaded, 1 rules, 0 rules not enforced",
		"hsp-block-sleep", "Events:     1 alerts, 0 logs, 0 messages published", "Subscribers: 0",
		"Stages:     received, passed on, dropped", "  throttle (alerts)                        1, 1, 0  ok"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestFormatSystemEvents(t *testing.T) {
	tests := []struct {
		v    any
		f    func(any) string
		want string
	}{
		{&kubearmorpb.Alert{Type: "SystemEvent", Operation: "AlertThreshold", PolicyName: "DefaultPosture", MaxAlertsPerSec: 10, DroppingAlertsInterval: 30},
			FormatAlert, "SystemEvent DefaultPosture: more than 10 alerts/s, dropping its alerts for 30s"},
		{&kubearmorpb.Alert{Type: "SystemEvent", Operation: "AlertsDropped", Message: "5 alerts were dropped"}, FormatAlert, "SystemEvent AlertsDropped: 5 alerts were dropped"},
		{&kubearmorpb.Log{Type: "SystemEvent", Operation: "LogsDropped", Data: "dropped=5"}, FormatLog, "SystemEvent LogsDropped: dropped=5"},
		{&kubearmorpb.Alert{Type: "MatchedHostPolicy"}, FormatAlert, "MatchedHostPolicy - - - - - | pid=0 uid=0 -"},
	}
	for _, tc := range tests {
		got := tc.f(tc.v)
		if _, rest, _ := strings.Cut(got, " "); !strings.HasSuffix(rest, tc.want) {
			t.Errorf("got %q, want suffix %q", got, tc.want)
		}
	}
}
