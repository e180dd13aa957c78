package feeder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/feeder/throttle"
	"github.com/armorhost/kubearmor/hostpolicy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// ---- a real policy applier: one YAML file per policy, as the store does ----

type dirApplier struct {
	dir      string
	failName string // a policy name whose write fails, to produce Failure
	mu       sync.Mutex
}

func (d *dirApplier) ApplyHostPolicy(ev *hostpolicy.Event) (Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := ev.Policy.Metadata.Name
	if strings.ContainsAny(name, "/\x00") || name == "" || name[0] == '.' {
		return StatusInvalid, fmt.Errorf("policy name %q cannot be a file name", name)
	}
	path := filepath.Join(d.dir, name+".yaml")
	old, err := os.ReadFile(path)
	exists := err == nil
	if ev.Type == "DELETED" {
		if !exists {
			return StatusNotExist, nil
		}
		if err := os.Remove(path); err != nil {
			return StatusFailure, err
		}
		return StatusDeleted, nil
	}
	if name == d.failName {
		return StatusFailure, errors.New("no space left on device")
	}
	if exists && bytes.Equal(old, ev.YAML) && ev.Type == "ADDED" {
		return StatusApplied, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, ev.YAML, 0o600); err != nil {
		return StatusFailure, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return StatusFailure, err
	}
	if exists || ev.Type == "MODIFIED" {
		return StatusModified, nil
	}
	return StatusApplied, nil
}

func (d *dirApplier) Policies() []*hostpolicy.Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*hostpolicy.Policy
	files, _ := filepath.Glob(filepath.Join(d.dir, "*.yaml"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		ps, _ := hostpolicy.Parse(f, data)
		out = append(out, ps...)
	}
	return out
}

// ---- harness ----

type testAgent struct {
	srv    *Server
	tcp    string
	socket string
	done   chan error
	cancel context.CancelFunc
}

func startAgent(t *testing.T, mutate func(*Options)) *testAgent {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Cluster: "default", Host: "vm1", HostIP: "10.0.0.1",
		TCP:    "127.0.0.1:0",
		Socket: filepath.Join(dir, "run", "kubearmor.sock"),
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{srv: srv, socket: opts.Socket, done: make(chan error, 1), cancel: cancel}
	if addr := srv.TCPAddr(); addr != nil {
		a.tcp = addr.String()
	}
	go func() { a.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-a.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return a
}

// targets are the two ways karmor reaches the agent.
func (a *testAgent) targets() map[string]string {
	return map[string]string{"tcp": a.tcp, "unix": "unix://" + a.socket}
}

func dial(t testing.TB, target string) *grpc.ClientConn {
	t.Helper()
	// karmor: grpc.Dial / grpc.NewClient with insecure credentials, no options.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitUntil polls a condition that another goroutine will make true; the
// test's own timeout bounds it.
func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// karmorLogs replays `karmor logs` (karmor-client.md §4.3): open the streams
// first (messages, alerts, logs, as the flags ask), and only then the
// HealthCheck with a random nonce that must come back unchanged.
type karmorSession struct {
	alerts   grpc.ServerStreamingClient[kubearmorpb.Alert]
	logs     grpc.ServerStreamingClient[kubearmorpb.Log]
	messages grpc.ServerStreamingClient[kubearmorpb.Message]
}

func karmorLogs(t testing.TB, ctx context.Context, conn *grpc.ClientConn, logFilter string, msgs bool) *karmorSession {
	t.Helper()
	c := kubearmorpb.NewLogServiceClient(conn)
	s := &karmorSession{}
	var err error
	if msgs {
		if s.messages, err = c.WatchMessages(ctx, &kubearmorpb.RequestMessage{Filter: ""}); err != nil {
			t.Fatalf("WatchMessages: %v", err)
		}
	}
	if logFilter == "policy" || logFilter == "all" {
		if s.alerts, err = c.WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: logFilter}); err != nil {
			t.Fatalf("WatchAlerts: %v", err)
		}
	}
	if logFilter == "system" || logFilter == "all" {
		if s.logs, err = c.WatchLogs(ctx, &kubearmorpb.RequestMessage{Filter: logFilter}); err != nil {
			t.Fatalf("WatchLogs: %v", err)
		}
	}
	nonce := rand.Int31()
	reply, err := c.HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: nonce})
	if err != nil || reply.Retval != nonce {
		t.Fatalf("HealthCheck(%d) = %v, %v: karmor would fail the liveness check", nonce, reply, err)
	}
	return s
}

func sampleAlert(policy string) *kubearmorpb.Alert {
	return &kubearmorpb.Alert{
		HostPPID: 1582, HostPID: 2420, PPID: 1582, PID: 2420, UID: 1000,
		ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/sleep",
		PolicyName: policy, Severity: "1", Type: "MatchedHostPolicy", Source: "/usr/bin/bash",
		Operation: "Process", Resource: "/usr/bin/sleep", Data: "lsm=SECURITY_BPRM_CHECK",
		Enforcer: "BPFLSM", Action: "Block", Result: "Permission denied", Cwd: "/",
	}
}

func sampleLog() *kubearmorpb.Log {
	return &kubearmorpb.Log{
		HostPPID: 1, HostPID: 77, PID: 77, UID: 0, ProcessName: "/usr/bin/cat", ParentProcessName: "/usr/bin/bash",
		Type: "HostLog", Source: "/usr/bin/cat /etc/hostname", Operation: "File", Resource: "/etc/hostname",
		Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", Result: "Passed", Cwd: "/root/",
	}
}

// ---- LogService ----

func TestKarmorLogsReplay(t *testing.T) {
	a := startAgent(t, nil)
	filters := []struct {
		filter           string
		msgs             bool
		wantAlert, wantL bool
	}{
		{"policy", false, true, false}, // karmor's default
		{"system", false, false, true},
		{"all", false, true, true},
		{"all", true, true, true},
	}
	for name, target := range a.targets() {
		for _, f := range filters {
			t.Run(fmt.Sprintf("%s/%s/msgs=%v", name, f.filter, f.msgs), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				conn := dial(t, target)
				before := a.srv.alerts.Len() + a.srv.logs.Len() + a.srv.messages.Len()
				s := karmorLogs(t, ctx, conn, f.filter, f.msgs)
				want := before
				for _, b := range []bool{f.wantAlert, f.wantL, f.msgs} {
					if b {
						want++
					}
				}
				waitUntil(func() bool { return a.srv.alerts.Len()+a.srv.logs.Len()+a.srv.messages.Len() == want })

				a.srv.PublishAlert(sampleAlert("hsp-block-sleep"))
				a.srv.PublishLog(sampleLog())
				a.srv.PublishMessage(LevelInfo, "hello")
				if f.wantAlert {
					got, err := s.alerts.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if got.PolicyName != "hsp-block-sleep" || got.ClusterName != "default" || got.HostName != "vm1" || got.Timestamp == 0 || !strings.HasSuffix(got.UpdatedTime, "Z") {
						t.Errorf("alert = %v", got)
					}
				}
				if f.wantL {
					got, err := s.logs.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if got.Type != "HostLog" || got.Resource != "/etc/hostname" || got.HostName != "vm1" {
						t.Errorf("log = %v", got)
					}
				}
				if f.msgs {
					got, err := s.messages.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if got.Type != "Message" || got.Level != "INFO" || got.Message != "hello" || got.HostIP != "10.0.0.1" {
						t.Errorf("message = %v", got)
					}
				}
				cancel()
				waitUntil(func() bool { return a.srv.alerts.Len()+a.srv.logs.Len()+a.srv.messages.Len() == before })
			})
		}
	}
}

// Upstream uses the filter only as a gate: a refused filter ends the stream
// at once with no error (karmor would print "Error: EOF").
func TestStreamFilterGate(t *testing.T) {
	a := startAgent(t, nil)
	c := kubearmorpb.NewLogServiceClient(dial(t, a.tcp))
	ctx := context.Background()
	for _, f := range []string{"system", "", "foo", "POLICY"} {
		s, err := c.WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("WatchAlerts{%q}: %v, want EOF", f, err)
		}
	}
	for _, f := range []string{"policy", "", "foo"} {
		s, err := c.WatchLogs(ctx, &kubearmorpb.RequestMessage{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("WatchLogs{%q}: %v, want EOF", f, err)
		}
	}
}

func TestHealthCheckEchoesEveryNonce(t *testing.T) {
	a := startAgent(t, nil)
	c := kubearmorpb.NewLogServiceClient(dial(t, a.tcp))
	for _, n := range []int32{0, 1, -1, 2147483647, -2147483648, rand.Int31()} {
		r, err := c.HealthCheck(context.Background(), &kubearmorpb.NonceMessage{Nonce: n})
		if err != nil || r.Retval != n {
			t.Errorf("HealthCheck(%d) = %v, %v", n, r, err)
		}
	}
}

func TestGRPCHealthV1(t *testing.T) {
	a := startAgent(t, nil)
	for _, target := range a.targets() {
		c := healthpb.NewHealthClient(dial(t, target))
		for _, svc := range []string{"", "feeder.LogService", "policy.PolicyService", "policy.ProbeService", "agentstatus.AgentStatus"} {
			r, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("%s: health %q = %v, %v", target, svc, r, err)
			}
		}
	}
}

func TestShutdownEndsStreamsWithUnavailable(t *testing.T) {
	a := startAgent(t, nil)
	conn := dial(t, a.tcp)
	s := karmorLogs(t, context.Background(), conn, "all", true)
	waitUntil(func() bool { return a.srv.alerts.Len() == 1 && a.srv.logs.Len() == 1 && a.srv.messages.Len() == 1 })
	a.cancel()
	for name, recv := range map[string]func() error{
		"alerts":   func() error { _, err := s.alerts.Recv(); return err },
		"logs":     func() error { _, err := s.logs.Recv(); return err },
		"messages": func() error { _, err := s.messages.Recv(); return err },
	} {
		if err := recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s after shutdown: %v, want Unavailable", name, err)
		}
	}
}

func TestWatchMessagesStartsWithStatus(t *testing.T) {
	a := startAgent(t, func(o *Options) {
		o.Status = func() *statuspb.Status {
			return &statuspb.Status{
				Enforcer:   "BPFLSM",
				Policies:   []*statuspb.LoadedPolicy{{Name: "p1", Rules: 3}, {Name: "p2", Rules: 2}},
				Unenforced: []*statuspb.UnenforcedRule{{Policy: "p2", Rule: "network.matchProtocols[0] icmp", Reason: "BPF-LSM cannot match ICMP"}},
				Warnings:   []string{"hostVisibility is none"},
			}
		}
	})
	s := karmorLogs(t, context.Background(), dial(t, "unix://"+a.socket), "", true)
	var got []string
	for range 3 {
		m, err := s.messages.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Level+" "+m.Message)
	}
	want := []string{
		"INFO status: enforcer BPFLSM, 2 policies, 5 rules, 1 not enforced",
		"WARN hostVisibility is none",
		"WARN policy p2: rule network.matchProtocols[0] icmp is not enforced: BPF-LSM cannot match ICMP",
	}
	if !slices.Equal(got, want) {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAgentStatusService(t *testing.T) {
	a := startAgent(t, func(o *Options) {
		o.Status = func() *statuspb.Status { return &statuspb.Status{Enforcer: "AppArmor", Version: "1.2.3"} }
	})
	s := karmorLogs(t, context.Background(), dial(t, a.tcp), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 1 })
	a.srv.PublishAlert(sampleAlert("p"))
	if _, err := s.alerts.Recv(); err != nil {
		t.Fatal(err)
	}
	st, err := statuspb.NewAgentStatusClient(dial(t, "unix://"+a.socket)).GetStatus(context.Background(), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Enforcer != "AppArmor" || st.Version != "1.2.3" || st.Host != "vm1" || st.Cluster != "default" {
		t.Errorf("status = %v", st)
	}
	f := st.Feeder
	if f.AlertsPublished != 1 || len(f.Subscribers) != 1 || f.Subscribers[0].Kind != "alerts" || f.Subscribers[0].Delivered != 1 {
		t.Errorf("feeder status = %v", f)
	}
}

// ---- throttling through the server ----

func TestServerThrottlesPerPolicy(t *testing.T) {
	now := time.Unix(1717259989, 0)
	a := startAgent(t, func(o *Options) {
		o.Now = func() time.Time { return now }
		o.Throttle = throttle.Config{Enabled: true, MaxPerSec: 2, Sec: 30}
	})
	s := karmorLogs(t, context.Background(), dial(t, a.tcp), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 1 })
	for range 5 {
		a.srv.PublishAlert(postureAlert())
	}
	a.srv.PublishAlert(sampleAlert("hsp-block-sleep"))
	var got []string
	for range 4 {
		al, err := s.alerts.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s/%s/%s/%d/%d", al.PolicyName, al.Type, al.Operation, al.MaxAlertsPerSec, al.DroppingAlertsInterval))
	}
	want := []string{
		"DefaultPosture/MatchedHostPolicy/File/0/0",
		"DefaultPosture/MatchedHostPolicy/File/0/0",
		"DefaultPosture/SystemEvent/AlertThreshold/2/30",
		"hsp-block-sleep/MatchedHostPolicy/Process/0/0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if st := a.srv.FeederStatus(); st.AlertsThrottled != 3 || st.ThrottledByPolicy["DefaultPosture"] != 3 {
		t.Errorf("throttle counters: %v", st)
	}
}

func postureAlert() *kubearmorpb.Alert {
	return &kubearmorpb.Alert{PolicyName: "DefaultPosture", Type: "MatchedHostPolicy", Operation: "File", Resource: "/tmp/x", Enforcer: "eBPF Monitor", Action: "Audit", Result: "Passed"}
}

func TestReflectionListsServices(t *testing.T) {
	a := startAgent(t, nil)
	stream, err := reflectionpb.NewServerReflectionClient(dial(t, a.tcp)).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"feeder.LogService", "policy.PolicyService", "policy.ProbeService", "agentstatus.AgentStatus", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v; %s missing", names, want)
		}
	}
}

func TestSubscriberLimitOverGRPC(t *testing.T) {
	a := startAgent(t, func(o *Options) { o.MaxSubscribers = 2 })
	c := kubearmorpb.NewLogServiceClient(dial(t, a.tcp))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		if _, err := c.WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: "policy"}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(func() bool { return a.srv.alerts.Len() == 2 })
	s, err := c.WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third subscriber: %v, want ResourceExhausted", err)
	}
	// Logs have their own limit.
	l, _ := c.WatchLogs(ctx, &kubearmorpb.RequestMessage{Filter: "system"})
	waitUntil(func() bool { return a.srv.logs.Len() == 1 })
	a.srv.PublishLog(sampleLog())
	if _, err := l.Recv(); err != nil {
		t.Fatal(err)
	}
}
