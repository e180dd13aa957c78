package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/export/otlp/otlptest"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// jsonLine is the line of the JSON-lines file (logPath) that contains
// every one of parts, or "".
func jsonLine(t *testing.T, path string, parts ...string) string {
	t.Helper()
	data, _ := os.ReadFile(path)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
next:
	for sc.Scan() {
		for _, p := range parts {
			if !bytes.Contains(sc.Bytes(), []byte(p)) {
				continue next
			}
		}
		return sc.Text()
	}
	return ""
}

// The running agent sends its alerts and logs to a real OpenTelemetry
// Collector, over gRPC, over HTTP and with mTLS: each record's body is the
// event's line in the JSON-lines file (karmor logs --json), with the
// attributes a pipeline filters on.
func TestOTLPExport(t *testing.T) {
	certs := otlptest.NewCerts(t, t.TempDir())
	for _, tc := range []struct {
		name     string
		protocol string
		mtls     bool
	}{
		{"grpc", "grpc", false},
		{"http", "http/protobuf", false},
		{"grpc-mtls", "grpc", true},
		{"http-mtls", "http/protobuf", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tls *otlptest.TLS
			if tc.mtls {
				tls = &otlptest.TLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCA: certs.CA}
			}
			col := otlptest.Start(t, tls)
			endpoint := col.GRPC
			if tc.protocol != "grpc" {
				endpoint = col.HTTP
			}
			args := []string{"--otlpEndpoint", endpoint, "--otlpProtocol", tc.protocol, "--otlpEvents", "both",
				"--hostVisibility", "process", "--alertThrottling=false"}
			if tc.mtls {
				args = append(args, "--otlpCACert", certs.CA, "--otlpClientCert", certs.ClientCert, "--otlpClientKey", certs.ClientKey)
			} else {
				args = append(args, "--otlpInsecure")
			}
			dir := t.TempDir()
			watch := filepath.Join(dir, "watched")
			os.MkdirAll(watch, 0o700)
			logPath := filepath.Join(dir, "events.jsonl")
			sock := startMonitored(t, dir, watch, logPath, args...)

			marker := filepath.Join(watch, "otlp-"+tc.name)
			var alert, log otlptest.Record
			col.Wait(30*time.Second, func(recs []otlptest.Record) bool {
				os.WriteFile(marker, nil, 0o600)                 // an alert (audit-watched)
				exec.Command("/bin/true", "otlp-"+tc.name).Run() // a log (process visibility)
				for _, r := range recs {
					switch {
					case r.EventName == "kubearmor.alert" && r.Attributes["kubearmor.resource"] == marker:
						alert = r
					case r.EventName == "kubearmor.log" && r.Attributes["kubearmor.resource"] == "/usr/bin/true otlp-"+tc.name:
						log = r
					}
				}
				return alert.Body != "" && log.Body != ""
			})
			if line := jsonLine(t, logPath, `"Resource":"`+marker+`"`, `"UpdatedTime":"`+alert.Time.UTC().Format("2006-01-02T15:04:05.000000Z")); line != alert.Body {
				t.Errorf("alert body is not the event's JSON line:\n body %s\n line %s", alert.Body, line)
			}
			pid := fmt.Sprint(log.Attributes["process.pid"])
			if line := jsonLine(t, logPath, `"Resource":"/usr/bin/true otlp-`+tc.name+`"`, `"HostPID":`+pid+`,`); line != log.Body {
				t.Errorf("log body is not the event's JSON line:\n body %s\n line %s", log.Body, line)
			}
			for k, v := range map[string]any{"kubearmor.policy_name": "audit-watched", "kubearmor.action": "Audit",
				"kubearmor.operation": "File", "kubearmor.type": "MatchedHostPolicy", "host.name": "testhost", "user.id": "0",
				"process.executable.path": alert.Attributes["process.executable.path"]} {
				if alert.Attributes[k] != v {
					t.Errorf("alert attribute %s = %v, want %v", k, alert.Attributes[k], v)
				}
			}
			if pid, _ := alert.Attributes["process.pid"].(int64); pid <= 0 {
				t.Errorf("alert process.pid = %v", alert.Attributes["process.pid"])
			}
			if log.Attributes["process.command_line"] != "/usr/bin/true otlp-"+tc.name || log.Attributes["kubearmor.operation"] != "Process" {
				t.Errorf("log attributes: %v", log.Attributes)
			}
			if alert.Resource["service.name"] != "kubearmor" || alert.Resource["host.name"] != "testhost" || alert.Resource["service.version"] == nil {
				t.Errorf("resource: %v", alert.Resource)
			}
			if s := findStage(agentStatus(t, sock), "exporter otlp "); s == nil || s.Passed == 0 || s.FailingSinceUnix != 0 {
				t.Errorf("status: OTLP exporter stage %v", s)
			}
		})
	}
}

// The collector is down when the agent starts, comes up, is stopped for
// 10 s in mid-stream and restarted, while alerts keep coming: the agent
// keeps running and answering, retries, delivers what its queue held, and
// counts exactly what it dropped: every alert (the JSON-lines file has them
// all) is either at the collector or counted as dropped by the exporter.
func TestOTLPCollectorFaults(t *testing.T) {
	col := otlptest.Start(t, nil)
	col.Stop() // down at agent start
	dir := t.TempDir()
	watch := filepath.Join(dir, "watched")
	os.MkdirAll(watch, 0o700)
	logPath := filepath.Join(dir, "alerts.jsonl")
	// A queue smaller than 10 s of alerts, so that the outage loses some.
	sock := startMonitored(t, dir, watch, logPath, "--otlpEndpoint", col.GRPC, "--otlpInsecure",
		"--otlpQueueLength", "500", "--otlpBatchSize", "100", "--alertThrottling=false", "--hostVisibility", "none")

	var stop atomic.Bool
	var written atomic.Int64
	done := make(chan struct{})
	go func() { // about 200 alerts a second
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			os.WriteFile(filepath.Join(watch, "f"+strconv.Itoa(i%100)), nil, 0o600)
			written.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	stage := func() *statuspb.Stage {
		s := findStage(agentStatus(t, sock), "exporter otlp grpc://"+col.GRPC)
		if s == nil {
			t.Fatalf("status has no OTLP exporter stage")
		}
		return s
	}
	waitFor := func(what string, ok func(*statuspb.Stage) bool) *statuspb.Stage {
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := stage()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: stage %v", what, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s := waitFor("failing while the collector is down at start", func(s *statuspb.Stage) bool { return s.FailingSinceUnix != 0 && s.Received > 0 })
	t.Logf("down at start: %v", s)

	col.Restart()
	waitFor("recovered once the collector is up", func(s *statuspb.Stage) bool { return s.FailingSinceUnix == 0 && s.Passed > 0 })
	time.Sleep(2 * time.Second)

	col.Stop()
	waitFor("failing once the collector stops", func(s *statuspb.Stage) bool { return s.FailingSinceUnix != 0 })
	time.Sleep(10 * time.Second)
	s = stage()
	t.Logf("after 10 s down: %v", s)
	if s.Dropped == 0 {
		t.Errorf("10 s of alerts into a queue of 500 dropped nothing: %v", s)
	}
	agentStatus(t, sock) // still answering

	col.Restart()
	waitFor("recovered after the restart", func(s *statuspb.Stage) bool { return s.FailingSinceUnix == 0 })
	time.Sleep(2 * time.Second)
	stop.Store(true)
	<-done
	// Quiet: everything received is delivered or dropped.
	var last uint64
	s = waitFor("quiet", func(s *statuspb.Stage) bool {
		q := s.Pending == 0 && s.Received == last && s.Received == s.Passed+s.Dropped
		last = s.Received
		return q
	})
	t.Logf("end: %v (%d files written)", s, written.Load())

	recs := col.Wait(20*time.Second, func(r []otlptest.Record) bool { return uint64(len(r)) >= s.Passed })
	if uint64(len(recs)) != s.Passed {
		t.Errorf("the collector holds %d records, the exporter counts %d delivered", len(recs), s.Passed)
	}
	// Every alert the agent raised reached the exporter.
	data, _ := os.ReadFile(logPath)
	if n := uint64(bytes.Count(data, []byte("\n"))); n != s.Received {
		t.Errorf("the JSON-lines file holds %d alerts, the OTLP exporter received %d", n, s.Received)
	}
	if sub := findStage(agentStatus(t, sock), "subscriber alerts otlp"); sub != nil && sub.Dropped != 0 {
		t.Errorf("the exporter's feeder queue dropped: %v", sub)
	}
}
