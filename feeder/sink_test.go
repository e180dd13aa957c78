package feeder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/armorhost/kubearmor/feeder/export"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

func runSink(t *testing.T, srv *Server, name string, sink Sink, o SinkOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	before := srv.alerts.Len() + srv.logs.Len()
	go func() { done <- srv.RunSink(ctx, name, sink, o) }()
	want := before
	if o.Alerts {
		want++
	}
	if o.Logs {
		want++
	}
	waitUntil(func() bool { return srv.alerts.Len()+srv.logs.Len() == want })
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestJSONLinesExporterGetsEverything(t *testing.T) {
	srv, err := New(Options{Cluster: "default", Host: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubearmor.json")
	j, err := export.OpenJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, srv, "logPath", j, SinkOptions{Alerts: true, Logs: true, QueueDepth: 100})
	for i := range 50 {
		a := sampleAlert("p")
		a.HostPID = int32(i + 1) // 0 would be omitted, as karmor omits it
		srv.PublishAlert(a)
		srv.PublishLog(sampleLog())
	}
	var lines []map[string]any
	waitUntil(func() bool {
		data, _ := os.ReadFile(path)
		data = data[:bytes.LastIndexByte(data, '\n')+1] // a buffer flush may end mid-line
		lines = lines[:0]
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("not JSON: %q", sc.Text())
			}
			lines = append(lines, m)
		}
		return len(lines) == 100
	})
	alerts := 0
	for _, m := range lines {
		if _, ok := m["PPID"]; !ok {
			t.Fatalf("line without PPID: %v", m)
		}
		if _, ok := m["UID"]; !ok {
			t.Fatalf("line without UID: %v", m)
		}
		if m["Type"] == "MatchedHostPolicy" {
			if m["HostPID"] != float64(alerts+1) || m["PolicyName"] != "p" || m["HostName"] != "vm1" {
				t.Fatalf("alert %d: %v", alerts, m)
			}
			alerts++
		}
	}
	if alerts != 50 {
		t.Fatalf("%d alerts in the file", alerts)
	}
}

// gateSink blocks every write until the test opens the gate: a disk that
// has stopped.
type gateSink struct {
	gate    chan struct{}
	mu      sync.Mutex
	alerts  []*kubearmorpb.Alert
	entered chan struct{}
	once    sync.Once
}

func (g *gateSink) WriteAlert(a *kubearmorpb.Alert) error {
	g.once.Do(func() { close(g.entered) })
	<-g.gate
	g.mu.Lock()
	g.alerts = append(g.alerts, a)
	g.mu.Unlock()
	return nil
}
func (g *gateSink) WriteLog(*kubearmorpb.Log) error { return nil }
func (g *gateSink) Flush() error                    { return nil }

func (g *gateSink) accounted() (n uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.alerts {
		if a.Type == TypeSystemEvent && a.Operation == OperationAlertsDropped {
			d, _ := strconv.ParseUint(a.EventData["Dropped"], 10, 64)
			n += d
		} else {
			n++
		}
	}
	return n
}

func TestStuckExporterNeverBlocksThePipeline(t *testing.T) {
	srv, _ := New(Options{Host: "vm1"})
	stuck := &gateSink{gate: make(chan struct{}), entered: make(chan struct{})}
	runSink(t, srv, "stuck", stuck, SinkOptions{Alerts: true, QueueDepth: 10})
	var buf bytes.Buffer
	healthy := export.NewJSONLines(&buf)
	runSink(t, srv, "healthy", healthy, SinkOptions{Alerts: true, QueueDepth: 1000})

	srv.PublishAlert(sampleAlert("p"))
	<-stuck.entered // the exporter holds the first alert and is stuck writing it
	const total = 1000
	for range total - 1 {
		srv.PublishAlert(sampleAlert("p")) // would hang here if the exporter could block the pipeline
	}
	// Stuck: 1 in the write, 10 queued, the rest dropped.
	var stuckStats, healthyStats uint64
	for _, sub := range srv.FeederStatus().Subscribers {
		switch sub.Name {
		case "stuck":
			stuckStats = sub.Dropped
		case "healthy":
			healthyStats = sub.Dropped
		}
	}
	if stuckStats != total-11 || healthyStats != 0 {
		t.Fatalf("dropped: stuck %d (want %d), healthy %d (want 0)", stuckStats, total-11, healthyStats)
	}
	close(stuck.gate)
	waitUntil(func() bool { return stuck.accounted() == total })
	stuck.mu.Lock()
	last := stuck.alerts[len(stuck.alerts)-1]
	stuck.mu.Unlock()
	if last.Operation != OperationAlertsDropped || last.EventData["Dropped"] != strconv.Itoa(total-11) {
		t.Errorf("last record written by the stuck exporter: %v", last)
	}
}
