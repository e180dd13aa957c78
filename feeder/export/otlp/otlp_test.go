package otlp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/export/otlp"
	"github.com/armorhost/kubearmor/feeder/export/otlp/otlptest"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

func testAlert(i int) *kubearmorpb.Alert {
	return &kubearmorpb.Alert{
		Timestamp: 1764860000, UpdatedTime: fmt.Sprintf("2025-12-04T15:00:00.%06dZ", i), ClusterName: "default", HostName: "testhost",
		ContainerID: "c0ffee", ContainerName: "web", ContainerImage: "docker.io/library/nginx:1.27",
		HostPPID: 100, HostPID: int32(1000 + i), PPID: 1, PID: 7, UID: 1001, ParentProcessName: "/usr/bin/bash",
		ProcessName: "/usr/bin/cat", PolicyName: "block-shadow", Severity: "8", Tags: "CIS,PCI", ATags: []string{"CIS", "PCI"},
		Message: "shadow read", Type: "MatchedHostPolicy", Source: "/usr/bin/cat /etc/shadow", Operation: "File",
		Resource: "/etc/shadow", Data: "syscall=SYS_OPENAT flags=O_RDONLY", Enforcer: "BPFLSM", Action: "Block",
		Result: "Permission denied", Cwd: "/root",
	}
}

func testLog(i int) *kubearmorpb.Log {
	return &kubearmorpb.Log{
		Timestamp: 1764860000, UpdatedTime: fmt.Sprintf("2025-12-04T15:00:01.%06dZ", i), ClusterName: "default", HostName: "testhost",
		HostPPID: 1, HostPID: int32(2000 + i), UID: 0, ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/bash",
		Type: "HostLog", Source: "/usr/bin/bash", Operation: "Process", Resource: "/usr/bin/sleep 1", Data: "syscall=SYS_EXECVE", Result: "Passed",
	}
}

func quiet(t *testing.T, e *otlp.Exporter, want event.Stage) event.Stage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.Stage()
		if st.Received == want.Received && st.Passed == want.Passed && st.Dropped == want.Dropped && st.Pending == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage %+v, want received %d passed %d dropped %d", st, want.Received, want.Passed, want.Dropped)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Alerts and logs reach a real collector over gRPC and HTTP, plaintext and
// with mTLS: body = the karmor --json bytes, attributes by the semantic
// conventions, severity, time and resource.
func TestDeliversToCollector(t *testing.T) {
	certs := otlptest.NewCerts(t, t.TempDir())
	for _, tc := range []struct {
		name, protocol string
		mtls           bool
	}{
		{"grpc", otlp.GRPC, false},
		{"http", otlp.HTTPProtobuf, false},
		{"grpc-mtls", otlp.GRPC, true},
		{"http-mtls", otlp.HTTPProtobuf, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tls *otlptest.TLS
			o := otlp.Options{Protocol: tc.protocol, Insecure: !tc.mtls, Version: "v9.9.9", HostName: "testhost", HostID: "abc123"}
			if tc.mtls {
				tls = &otlptest.TLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCA: certs.CA}
				o.CAFile, o.CertFile, o.KeyFile = certs.CA, certs.ClientCert, certs.ClientKey
			}
			col := otlptest.Start(t, tls)
			o.Endpoint = col.GRPC
			if tc.protocol == otlp.HTTPProtobuf {
				o.Endpoint = col.HTTP
			}
			e, err := otlp.New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			a, l := testAlert(1), testLog(1)
			if err := e.WriteAlert(a); err != nil {
				t.Fatal(err)
			}
			if err := e.WriteLog(l); err != nil {
				t.Fatal(err)
			}
			recs := col.Wait(20*time.Second, func(r []otlptest.Record) bool { return len(r) >= 2 })
			quiet(t, e, event.Stage{Received: 2, Passed: 2})
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2", len(recs))
			}
			byEvent := map[string]otlptest.Record{}
			for _, r := range recs {
				byEvent[r.EventName] = r
			}
			ra, rl := byEvent["kubearmor.alert"], byEvent["kubearmor.log"]
			wantA, _ := json.Marshal(a)
			wantL, _ := json.Marshal(l)
			if ra.Body != string(wantA) {
				t.Errorf("alert body\n got %s\nwant %s", ra.Body, wantA)
			}
			if rl.Body != string(wantL) {
				t.Errorf("log body\n got %s\nwant %s", rl.Body, wantL)
			}
			for k, v := range map[string]any{
				"host.name": "testhost", "process.pid": int64(1001), "process.parent_pid": int64(100),
				"process.executable.path": "/usr/bin/cat", "process.command_line": "/usr/bin/cat /etc/shadow",
				"process.working_directory": "/root", "user.id": "1001",
				"container.id": "c0ffee", "container.name": "web", "container.image.name": "docker.io/library/nginx",
				"kubearmor.policy_name": "block-shadow", "kubearmor.severity": int64(8), "kubearmor.action": "Block",
				"kubearmor.result": "Permission denied", "kubearmor.operation": "File", "kubearmor.resource": "/etc/shadow",
				"kubearmor.type": "MatchedHostPolicy", "kubearmor.enforcer": "BPFLSM", "kubearmor.message": "shadow read",
				"kubearmor.cluster": "default", "kubearmor.parent_process_name": "/usr/bin/bash",
			} {
				if got := ra.Attributes[k]; fmt.Sprint(got) != fmt.Sprint(v) {
					t.Errorf("alert attribute %s = %v (%T), want %v", k, got, got, v)
				}
			}
			if got := fmt.Sprint(ra.Attributes["kubearmor.tags"]); got != "[CIS PCI]" {
				t.Errorf("kubearmor.tags = %s", got)
			}
			if got := fmt.Sprint(ra.Attributes["container.image.tags"]); got != "[1.27]" {
				t.Errorf("container.image.tags = %s", got)
			}
			if ra.SeverityNumber != 17 || ra.SeverityText != "ERROR" {
				t.Errorf("alert severity %d %q, want 17 ERROR (policy severity 8)", ra.SeverityNumber, ra.SeverityText)
			}
			if rl.SeverityNumber != 9 {
				t.Errorf("log severity %d, want 9 (INFO)", rl.SeverityNumber)
			}
			if got := rl.Attributes["process.command_line"]; got != "/usr/bin/sleep 1" {
				t.Errorf("exec log: process.command_line = %v, want the new command line", got)
			}
			if want, _ := time.Parse(time.RFC3339Nano, a.UpdatedTime); !ra.Time.Equal(want) {
				t.Errorf("alert time %v, want %v", ra.Time, want)
			}
			for k, v := range map[string]any{"service.name": "kubearmor", "service.version": "v9.9.9", "host.name": "testhost", "host.id": "abc123"} {
				if ra.Resource[k] != v {
					t.Errorf("resource %s = %v, want %v", k, ra.Resource[k], v)
				}
			}
		})
	}
}

// The collector is down when the exporter starts and for a while after:
// the queue holds what arrives, the exporter fails (and says since when),
// and once the collector is up every held record is delivered.
func TestCollectorDownThenUp(t *testing.T) {
	col := otlptest.Start(t, nil)
	col.Stop()
	e, err := otlp.New(otlp.Options{Endpoint: col.GRPC, Protocol: otlp.GRPC, Insecure: true, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := range 300 {
		e.WriteAlert(testAlert(i))
		e.WriteLog(testLog(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stage().FailingSince.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("not failing with the collector down: %+v", e.Stage())
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := e.Stage()
	if !strings.Contains(st.State, "failing: grpc://"+col.GRPC) || st.Pending != 600 || st.Dropped != 0 {
		t.Errorf("while down: %+v", st)
	}
	col.Restart()
	quiet(t, e, event.Stage{Received: 600, Passed: 600})
	recs := col.Wait(10*time.Second, func(r []otlptest.Record) bool { return len(r) >= 600 })
	if len(recs) != 600 {
		t.Errorf("collector holds %d records, want 600", len(recs))
	}
	// Every event arrived once, as itself: batches are reused, and a
	// record must not carry another's body.
	want := map[string]bool{}
	for i := range 300 {
		a, _ := json.Marshal(testAlert(i))
		l, _ := json.Marshal(testLog(i))
		want[string(a)], want[string(l)] = true, true
	}
	for _, r := range recs {
		if !want[r.Body] {
			t.Fatalf("unexpected or repeated body %s", r.Body)
		}
		delete(want, r.Body)
	}
	if st := e.Stage(); st.State != "" || !st.FailingSince.IsZero() {
		t.Errorf("recovered: %+v", st)
	}
}

// Close sends what is queued, part-filled batches included, before it
// returns.
func TestCloseSendsQueued(t *testing.T) {
	col := otlptest.StartCounting(t)
	e, err := otlp.New(otlp.Options{Endpoint: col.GRPC, Protocol: otlp.GRPC, Insecure: true, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1050 {
		e.WriteLog(testLog(i))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if st := e.Stage(); st.Received != 1050 || st.Passed != 1050 || st.Dropped != 0 || st.Pending != 0 {
		t.Errorf("after Close: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for col.Counted() < 1050 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := col.Counted(); n != 1050 {
		t.Errorf("the collector counted %d records, want 1050", n)
	}
	// Written after Close: counted as dropped, never blocking.
	e.WriteAlert(testAlert(1))
	if st := e.Stage(); st.Received != 1051 || st.Dropped != 1 {
		t.Errorf("write after Close: %+v", st)
	}
}

// A full queue gives way to alerts: logs are dropped first, each counted,
// and the alerts all arrive.
func TestFullQueuePrefersAlerts(t *testing.T) {
	col := otlptest.Start(t, nil)
	col.Stop()
	e, err := otlp.New(otlp.Options{Endpoint: col.HTTP, Protocol: otlp.HTTPProtobuf, Insecure: true, BatchSize: 10, QueueLength: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The first batches are taken from the queue by the senders and
	// retried: wait for them, so that the queue's own bound is what the
	// rest meets.
	flying := 10 * otlp.Senders
	for i := range flying {
		e.WriteLog(testLog(i))
	}
	for e.Stage().FailingSince.IsZero() || otlp.InFlight(e) < flying {
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 150 {
		e.WriteLog(testLog(100 + i))
	}
	for i := range 60 {
		e.WriteAlert(testAlert(i))
	}
	// The queue holds 100 of the 150 logs, then each alert replaces the
	// oldest log: 60 alerts and 40 logs queued, 110 dropped.
	st := e.Stage()
	if st.Received != uint64(flying+210) || st.Pending != uint64(flying+100) || st.Dropped != 110 {
		t.Fatalf("full queue: %+v", st)
	}
	col.Restart()
	quiet(t, e, event.Stage{Received: uint64(flying + 210), Passed: uint64(flying + 100), Dropped: 110})
	recs := col.Wait(10*time.Second, func(r []otlptest.Record) bool { return len(r) >= flying+100 })
	alerts := 0
	for _, r := range recs {
		if r.EventName == "kubearmor.alert" {
			alerts++
		}
	}
	if len(recs) != flying+100 || alerts != 60 {
		t.Errorf("collector holds %d records, %d alerts; want %d and all 60 alerts", len(recs), alerts, flying+100)
	}
}

// A collector that refuses a request for good (HTTP 400) loses that batch,
// counted; one that is unavailable (503) is retried until it takes it.
func TestPermanentAndRetryableHTTPErrors(t *testing.T) {
	fail := 3
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("X-Token") != "s3cret":
			w.WriteHeader(http.StatusBadRequest)
		case fail > 0:
			fail--
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	endpoint := strings.TrimPrefix(srv.URL, "http://")

	bad, err := otlp.New(otlp.Options{Endpoint: endpoint, Protocol: otlp.HTTPProtobuf, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.WriteAlert(testAlert(1))
	st := quiet(t, bad, event.Stage{Received: 1, Dropped: 1})
	if !strings.Contains(st.State, "400") {
		t.Errorf("refused: %+v", st)
	}

	good, err := otlp.New(otlp.Options{Endpoint: srv.URL + "/v1/logs", Protocol: otlp.HTTPProtobuf, Insecure: true,
		Headers: map[string]string{"X-Token": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	good.WriteAlert(testAlert(1))
	quiet(t, good, event.Stage{Received: 1, Passed: 1})
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		o    otlp.Options
		want string
	}{
		{otlp.Options{Endpoint: "x:1", Protocol: "udp"}, `protocol "udp"`},
		{otlp.Options{Protocol: otlp.GRPC, Insecure: true}, "no endpoint"},
		{otlp.Options{Endpoint: "x:1", CAFile: "/nonexistent/ca.crt"}, "/nonexistent/ca.crt"},
		{otlp.Options{Endpoint: "x:1", CertFile: "/nonexistent/c.crt"}, "both"},
		{otlp.Options{Endpoint: "http://x:1", Protocol: otlp.HTTPProtobuf}, "http:// URL goes with insecure"},
	} {
		if _, err := otlp.New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
}

// BenchmarkExportGRPC: events through the exporter into a local collector
// over gRPC (run with -cpu 1: the exporter on one core; the collector, its
// own process, may use another). Reports events/s, the exporter's CPU per
// event (this process: building records, the SDK's transform and
// marshalling, gRPC, garbage collection), the collector's CPU per event,
// and the RSS the exporter added. Every event must reach the collector:
// its count of received records must equal the events written.
func BenchmarkExportGRPC(b *testing.B) {
	// alerts: a container alert with every field set (27 attributes);
	// logs: a host process log (15 attributes).
	for _, kind := range []string{"alerts", "logs"} {
		b.Run(kind, func(b *testing.B) {
			alerts, logs := make([]*kubearmorpb.Alert, 1000), make([]*kubearmorpb.Log, 1000)
			for i := range alerts {
				alerts[i], logs[i] = testAlert(i), testLog(i)
			}
			col := otlptest.StartCounting(b)
			debug.FreeOSMemory() // the RSS before is this run's own baseline
			rss0 := rssKB(b)
			e, err := otlp.New(otlp.Options{Endpoint: col.GRPC, Protocol: otlp.GRPC, Insecure: true,
				Version: "v1", HostName: "testhost", HostID: "abc123"})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			cpu0, colCPU0, wait0 := cpuTime(), col.CPU(), runDelay(b)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// Sustained rate, as the feeder's own bounded queue would
				// pace it: the producer waits while the exporter's queue
				// is more than half full, so that nothing is dropped.
				if i%256 == 0 {
					for e.Stage().Pending > otlp.DefaultQueueLength/2 {
						time.Sleep(100 * time.Microsecond)
					}
				}
				if kind == "alerts" {
					e.WriteAlert(alerts[i%len(alerts)])
				} else {
					e.WriteLog(logs[i%len(logs)])
				}
			}
			for st := e.Stage(); st.Passed+st.Dropped < uint64(b.N); st = e.Stage() {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu, colCPU, wait := cpuTime()-cpu0, col.CPU()-colCPU0, runDelay(b)-wait0
			rss := rssKB(b) - rss0
			st := e.Stage()
			if st.Dropped != 0 || st.Passed != uint64(b.N) {
				b.Fatalf("lost events: %+v", st)
			}
			deadline := time.Now().Add(10 * time.Second)
			for col.Counted() < b.N && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := col.Counted(); n != b.N {
				b.Fatalf("the collector counted %d records, want %d", n, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			// On a shared machine the exporter's threads wait for a CPU
			// while other processes hold both: how much says how far the
			// wall rate is from what a core of its own would give.
			b.ReportMetric(100*wait.Seconds()/elapsed.Seconds(), "%runqueue-wait")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
			b.ReportMetric(float64(colCPU.Nanoseconds())/float64(b.N), "collector-cpu-ns/event")
			b.ReportMetric(float64(rss)/1024, "added-RSS-MiB")
		})
	}
}

// BenchmarkRecord: building one event's record (the karmor --json body,
// the attributes, the SDK Record's setters), the exporter's own share of
// the work before the SDK exporter's.
func BenchmarkRecord(b *testing.B) {
	e, err := otlp.New(otlp.Options{Endpoint: "127.0.0.1:1", Protocol: otlp.GRPC, Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, kind := range []string{"alerts", "logs"} {
		b.Run(kind, func(b *testing.B) {
			a, l := testAlert(1), testLog(1)
			b.ReportAllocs()
			cpu0, n := cpuTime(), 0
			for b.Loop() {
				if kind == "alerts" {
					otlp.Record(e, a)
				} else {
					otlp.Record(e, l)
				}
				n++
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
		})
	}
}

// BenchmarkSDKExport is the floor under any exporter built on the SDK's
// OTLP gRPC exporter: its Export alone (the transform into OTLP messages,
// protobuf sizing and marshalling, the gRPC call) on ready-made batches of
// 512 records, into a local collector. cpu-ns/event is this process's CPU
// per record; profile it (-cpuprofile) to split the transform from the
// marshalling.
func BenchmarkSDKExport(b *testing.B) {
	for _, kind := range []string{"alerts", "logs"} {
		b.Run(kind, func(b *testing.B) {
			col := otlptest.StartCounting(b)
			e, err := otlp.New(otlp.Options{Endpoint: col.GRPC, Protocol: otlp.GRPC, Insecure: true, Version: "v1", HostName: "testhost"})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			batch := make([]sdklog.Record, 512)
			for i := range batch {
				if kind == "alerts" {
					batch[i] = otlp.Record(e, testAlert(i))
				} else {
					batch[i] = otlp.Record(e, testLog(i))
				}
			}
			exp, err := otlploggrpc.New(context.Background(), otlploggrpc.WithEndpoint(col.GRPC), otlploggrpc.WithInsecure())
			if err != nil {
				b.Fatal(err)
			}
			defer exp.Shutdown(context.Background())
			cpu0 := cpuTime()
			b.ResetTimer()
			n := 0
			for n < b.N {
				if err := exp.Export(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				n += len(batch)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used: on a
// shared machine wall times mostly measure the wait for a CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runDelay is how long this process's threads have waited on a run queue
// for a CPU (the second field of /proc/self/task/*/schedstat).
func runDelay(b *testing.B) time.Duration {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited
		}
		if f := strings.Fields(string(data)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

func rssKB(b *testing.B) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
