package feeder

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/export"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// stageNamed finds the stage whose name starts with prefix and contains
// none of not.
func stageNamed(t *testing.T, stages []*statuspb.Stage, prefix string, not ...string) *statuspb.Stage {
	t.Helper()
next:
	for _, st := range stages {
		for _, n := range not {
			if strings.Contains(st.Name, n) {
				continue next
			}
		}
		if strings.HasPrefix(st.Name, prefix) {
			return st
		}
	}
	t.Fatalf("no stage %q in %v", prefix, stages)
	return nil
}

func checkBalanced(t *testing.T, stages []*statuspb.Stage) {
	t.Helper()
	for _, st := range stages {
		if st.Received != st.Passed+st.Dropped+st.Filtered+st.Pending {
			t.Errorf("stage %q: received %d != passed %d + dropped %d + filtered %d + pending %d",
				st.Name, st.Received, st.Passed, st.Dropped, st.Filtered, st.Pending)
		}
	}
}

// An alert or log whose text protobuf refuses (invalid UTF-8) is dropped for
// each gRPC subscriber and counted there; the stream goes on and the next
// event arrives. (The pipeline escapes such text before it gets here: this
// is the guard behind it.)
func TestUnencodableEventDoesNotEndTheStream(t *testing.T) {
	a := startAgent(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := karmorLogs(t, ctx, dial(t, a.tcp), "all", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 1 && a.srv.logs.Len() == 1 })

	bad := sampleAlert("bad")
	bad.Resource = "/tmp/\xff"
	a.srv.PublishAlert(bad)
	a.srv.PublishAlert(sampleAlert("next"))
	badLog := sampleLog()
	badLog.Resource = "/tmp/\xfe"
	a.srv.PublishLog(badLog)
	next := sampleLog()
	next.Resource = "/next"
	a.srv.PublishLog(next)

	if got, err := s.alerts.Recv(); err != nil || got.PolicyName != "next" {
		t.Fatalf("WatchAlerts after an unencodable alert: %v, %v", got, err)
	}
	if got, err := s.logs.Recv(); err != nil || got.Resource != "/next" {
		t.Fatalf("WatchLogs after an unencodable log: %v, %v", got, err)
	}
	stages := a.srv.Status().Stages
	for _, kind := range []string{"alerts", "logs"} {
		st := stageNamed(t, stages, "subscriber "+kind+" ")
		if st.Dropped != 1 || st.Passed != 1 || !strings.Contains(st.State, "1 could not be encoded") {
			t.Errorf("%s subscriber: %+v", kind, st)
		}
	}
	checkBalanced(t, stages)
}

// noticeTap counts the drop notices RunSink writes into the exporter, so
// that the test can link the subscriber's count to the exporter's.
type noticeTap struct {
	*export.JSONLines
	notices atomic.Int64
}

func (n *noticeTap) WriteAlert(a *kubearmorpb.Alert) error {
	if a.Type == TypeSystemEvent {
		n.notices.Add(1)
	}
	return n.JSONLines.WriteAlert(a)
}

// The end-to-end accounting: a burst overflows a gRPC subscriber that does
// not read and an exporter whose disk is full. Per stage, what was received
// is what was passed on plus what was counted as dropped; and across the
// stages every published alert is either delivered or counted.
func TestAccountingBurstSlowSubscriberFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	os.WriteFile(filepath.Join(dir, "filler"), make([]byte, 32<<10), 0o600)

	const burst = 5000
	produced := event.Stage{Name: "test producer"}
	a := startAgent(t, func(o *Options) {
		o.QueueDepth = 100
		o.Stages = func() []event.Stage { return []event.Stage{produced} }
	})
	path := filepath.Join(dir, "alerts.json")
	j, err := export.OpenJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tap := &noticeTap{JSONLines: j}
	runSink(t, a.srv, "logPath "+path, tap, SinkOptions{Alerts: true})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := karmorLogs(t, ctx, dial(t, a.tcp), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 2 })

	// The burst, with the gRPC subscriber not reading.
	for i := range burst {
		al := sampleAlert("burst")
		al.HostPID = int32(i + 1)
		a.srv.PublishAlert(al)
	}
	produced.Received, produced.Passed = burst, burst

	// The subscriber now reads everything: alerts and drop notices.
	got, noticed := 0, 0
	for got+noticed < burst {
		m, err := s.alerts.Recv()
		if err != nil {
			t.Fatalf("after %d alerts and %d noticed drops: %v", got, noticed, err)
		}
		if m.Type == TypeSystemEvent && m.Operation == OperationAlertsDropped {
			n, _ := strconv.Atoi(m.EventData["Dropped"])
			noticed += n
			continue
		}
		got++
	}
	// The exporter catches up (its queue empties, its buffer is flushed).
	var stages []*statuspb.Stage
	deadline := time.Now().Add(10 * time.Second)
	for {
		stages = a.srv.Status().Stages
		sub := stageNamed(t, stages, "subscriber alerts logPath")
		exp := stageNamed(t, stages, "exporter logPath")
		if sub.Pending == 0 && exp.Pending == 0 && exp.Received == sub.Passed+uint64(tap.notices.Load()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter did not catch up: %+v %+v", sub, exp)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkBalanced(t, stages)

	th := stageNamed(t, stages, "throttle")
	grpcSub := stageNamed(t, stages, "subscriber alerts ", "logPath")
	sinkSub := stageNamed(t, stages, "subscriber alerts logPath")
	exp := stageNamed(t, stages, "exporter logPath")
	if th.Received != burst || th.Passed != burst {
		t.Errorf("throttle (off): %+v", th)
	}
	if grpcSub.Received != burst || grpcSub.Dropped == 0 || grpcSub.Passed != uint64(got) || grpcSub.Dropped != uint64(noticed) {
		t.Errorf("slow gRPC subscriber: %+v; the client got %d alerts and was told of %d drops", grpcSub, got, noticed)
	}
	if sinkSub.Received != burst {
		t.Errorf("exporter's queue: %+v", sinkSub)
	}
	if exp.Dropped == 0 || !strings.Contains(exp.State, "no space left on device") || exp.FailingSinceUnix == 0 {
		t.Errorf("exporter on a full disk: %+v", exp)
	}
	// Every line the exporter says it wrote is in the file, whole.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, alerts, notices := 0, 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", lines+1, err)
		}
		lines++
		if m["Type"] == TypeSystemEvent {
			notices++
		} else {
			alerts++
		}
	}
	if uint64(lines) != exp.Passed {
		t.Errorf("the file has %d lines, the exporter says it wrote %d", lines, exp.Passed)
	}
	// Across the stages: every alert of the burst was delivered to the
	// exporter's writer or counted as dropped on the way; of those it
	// received, every one was written or counted as lost.
	if sinkSub.Passed+sinkSub.Dropped != burst || exp.Received != sinkSub.Passed+uint64(tap.notices.Load()) {
		t.Errorf("burst %d: exporter queue passed %d + dropped %d; exporter received %d = %d + %d notices",
			burst, sinkSub.Passed, sinkSub.Dropped, exp.Received, sinkSub.Passed, tap.notices.Load())
	}
	t.Logf("burst %d: gRPC got %d, dropped %d; exporter queue passed %d, dropped %d; exporter wrote %d lines (%d alerts, %d notices), lost %d",
		burst, got, noticed, sinkSub.Passed, sinkSub.Dropped, exp.Passed, alerts, notices, exp.Dropped)
}
