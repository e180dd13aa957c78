package feeder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/peer/peertest"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestMain also runs the parts of tests that act as another user: the test
// binary re-executed as uid 65534 (peertest.Command) does one thing and
// prints its result.
func TestMain(m *testing.M) {
	if peertest.Role() == "" {
		os.Exit(m.Run())
	}
	os.Exit(child(peertest.Role(), peertest.Arg(0)))
}

func child(role, target string) int {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	switch role {
	case "policy": // karmor vm policy add, as karmor sends it
		resp, err := policypb.NewPolicyServiceClient(conn).HostPolicy(ctx, &policypb.Policy{Policy: []byte(karmorAddSleep)})
		if err != nil {
			fmt.Println(status.Code(err), status.Convert(err).Message())
			return 0
		}
		fmt.Println("Policy", resp.Status)
	case "status":
		_, err := statuspb.NewAgentStatusClient(conn).GetStatus(ctx, &emptypb.Empty{})
		fmt.Println(status.Code(err))
	case "watch": // one WatchAlerts stream: refused at once, or open
		sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer scancel()
		s, err := kubearmorpb.NewLogServiceClient(conn).WatchAlerts(sctx, &kubearmorpb.RequestMessage{Filter: "all"})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) == codes.DeadlineExceeded {
			fmt.Println("open")
		} else {
			fmt.Println(status.Code(err))
		}
	case "hold": // N streams that never read, until stdin closes
		n, _ := strconv.Atoi(peertest.Arg(1))
		c := kubearmorpb.NewLogServiceClient(conn)
		for range n {
			if _, err := c.WatchAlerts(context.Background(), &kubearmorpb.RequestMessage{Filter: "all"}); err != nil {
				fmt.Println("error", err)
				return 1
			}
		}
		fmt.Println("holding")
		io.Copy(io.Discard, os.Stdin)
	default:
		return 2
	}
	return 0
}

// asNobody runs role against target as uid 65534 (with extra groups) and
// returns what it printed.
func asNobody(t *testing.T, groups []uint32, role, target string, args ...string) string {
	t.Helper()
	cmd := peertest.Command(t, peertest.Nobody, peertest.Nobody, groups, role, append([]string{target}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s %s: %v: %s", role, target, err, out)
	}
	return strings.TrimSpace(string(out))
}

// holdAsNobody opens n stalled WatchAlerts streams as uid 65534 and keeps
// them until the test ends.
func holdAsNobody(t *testing.T, target string, n int) {
	t.Helper()
	cmd := peertest.Command(t, peertest.Nobody, peertest.Nobody, nil, "hold", target, strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "holding" {
		t.Fatalf("holder: %q", line)
	}
}

// logBuffer collects the agent's JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// find returns the first record with this message whose attributes include
// want.
func (l *logBuffer) find(msg string, want map[string]any) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(l.b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
				ok = false
			}
		}
		if ok {
			return rec
		}
	}
	return nil
}

// openAgent starts an agent whose unix socket other users may reach (the
// test's stand-in for a socket group), logging to the returned buffer.
func openAgent(t *testing.T, mutate func(*Options)) (*testAgent, *logBuffer) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	dir, err := os.MkdirTemp("", "feeder-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	logs := &logBuffer{}
	a := startAgent(t, func(o *Options) {
		o.Socket = filepath.Join(dir, "kubearmor.sock")
		o.Log = slog.New(slog.NewJSONHandler(logs, nil))
		if mutate != nil {
			mutate(o)
		}
	})
	if err := os.Chmod(a.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	return a, logs
}

// PolicyService: uid 65534 is refused over loopback TCP (sock_diag) and
// over the unix socket (SO_PEERCRED, even with the socket opened to it);
// each refusal is logged with the peer; root is applied over both, with
// karmor's exact request, and the change is logged with root's uid and pid.
func TestPolicyServiceOnlyForRoot(t *testing.T) {
	policies := t.TempDir()
	a, logs := openAgent(t, func(o *Options) { o.Policies = &dirApplier{dir: policies} })
	file := filepath.Join(policies, "hsp-block-sleep.yaml")
	for name, target := range a.targets() {
		got := asNobody(t, nil, "policy", target)
		if !strings.HasPrefix(got, "PermissionDenied permission denied: policy changes are accepted only from root") || !strings.Contains(got, "uid 65534") {
			t.Errorf("%s: uid 65534 got %q, want PermissionDenied naming it", name, got)
		}
		if _, err := os.Stat(file); err == nil {
			t.Fatalf("%s: uid 65534 wrote a policy", name)
		}
		if logs.find("gRPC request refused", map[string]any{"rpc": "/policy.PolicyService/hostPolicy", "uid": 65534, "via": name}) == nil {
			t.Errorf("%s: refusal not logged with the peer:\n%s", name, logs.b.String())
		}
	}
	// Root, with karmor's defaults: localhost:PORT (karmor's
	// localhost:32767), 127.0.0.1:PORT and --gRPC unix://PATH.
	_, port, _ := net.SplitHostPort(a.tcp)
	for _, target := range []string{"localhost:" + port, a.tcp, "unix://" + a.socket} {
		via := "tcp"
		if strings.HasPrefix(target, "unix://") {
			via = "unix"
		}
		c := policypb.NewPolicyServiceClient(dial(t, target))
		for _, payload := range []string{karmorAddSleep, karmorDelete(karmorAddSleep)} {
			resp, err := c.HostPolicy(context.Background(), &policypb.Policy{Policy: []byte(payload)})
			if err != nil || (resp.Status != StatusApplied && resp.Status != StatusDeleted) {
				t.Fatalf("%s: root: %v %v", target, resp, err)
			}
		}
		for _, typ := range []string{"ADDED", "DELETED"} {
			rec := logs.find("PolicyService: host policy", map[string]any{"policy": "hsp-block-sleep", "type": typ, "status": map[string]string{"ADDED": "Applied", "DELETED": "Deleted"}[typ],
				"uid": 0, "via": via, "pid": os.Getpid(), "kind": "KubeArmorHostPolicy"})
			if rec == nil {
				t.Errorf("%s: root's %s not logged with uid and pid:\n%s", target, typ, logs.b.String())
			}
		}
	}
	if st := a.srv.AccessStats(); st.PolicyDenied != 2 {
		t.Errorf("PolicyDenied = %d, want 2", st.PolicyDenied)
	}
	if w := strings.Join(a.srv.Status().Warnings, "\n"); !strings.Contains(w, "refused calls: 2 PolicyService, 0 telemetry") {
		t.Errorf("status warnings do not count the refusals: %q", w)
	}
}

// Telemetry is root's and telemetryGroup's: over TCP group membership
// comes from the user database (nobody's primary group is nogroup), over
// the unix socket from the process's own groups (SO_PEERGROUPS).
func TestTelemetryGroup(t *testing.T) {
	tests := []struct {
		group  string
		groups []uint32 // the child's supplementary groups
		tcp    string   // expected result over TCP
		unix   string
	}{
		{"", nil, "PermissionDenied", "PermissionDenied"},
		{"root", nil, "PermissionDenied", "PermissionDenied"},
		{"no-such-group-kubearmor-test", nil, "PermissionDenied", "PermissionDenied"},
		{"nogroup", nil, "OK", "OK"},
		{"users", []uint32{100}, "PermissionDenied", "OK"},
		{TelemetryEveryone, nil, "OK", "OK"},
	}
	for _, tc := range tests {
		t.Run("group="+tc.group, func(t *testing.T) {
			a, logs := openAgent(t, func(o *Options) { o.TelemetryGroup = tc.group })
			if tc.group == "nogroup" {
				var st syscall.Stat_t
				if err := syscall.Stat(a.socket, &st); err != nil || st.Gid != 65534 {
					t.Errorf("socket group %d (%v), want telemetryGroup's 65534", st.Gid, err)
				}
			}
			for via, target := range a.targets() {
				want := map[string]string{"tcp": tc.tcp, "unix": tc.unix}[via]
				if got := asNobody(t, tc.groups, "status", target); got != want {
					t.Errorf("%s: GetStatus as uid 65534: %s, want %s", via, got, want)
				}
				wantWatch := map[string]string{"OK": "open", "PermissionDenied": "PermissionDenied"}[want]
				if got := asNobody(t, tc.groups, "watch", target); got != wantWatch {
					t.Errorf("%s: WatchAlerts as uid 65534: %s, want %s", via, got, wantWatch)
				}
				if got := asNobody(t, tc.groups, "policy", target); !strings.HasPrefix(got, "PermissionDenied") {
					t.Errorf("%s: telemetryGroup %q opened PolicyService: %s", via, tc.group, got)
				}
			}
			if tc.group == "no-such-group-kubearmor-test" && logs.find("telemetryGroup not found: alerts and logs are readable by root only", nil) == nil {
				t.Errorf("missing group not warned about:\n%s", logs.b.String())
			}
			// Root reads whatever the group.
			if _, err := statuspb.NewAgentStatusClient(dial(t, a.tcp)).GetStatus(context.Background(), &emptypb.Empty{}); err != nil {
				t.Errorf("root: %v", err)
			}
		})
	}
}

// maxStreamsPerUser holds across connections and topics for one uid;
// other users (root here) keep their own budget.
func TestStreamsPerUser(t *testing.T) {
	a, _ := openAgent(t, func(o *Options) { o.TelemetryGroup = TelemetryEveryone; o.MaxStreamsPerUser = 3 })
	holdAsNobody(t, a.tcp, 3)
	waitUntil(func() bool { return a.srv.alerts.Len() == 3 })
	if got := asNobody(t, nil, "watch", "unix://"+a.socket); got != "ResourceExhausted" {
		t.Fatalf("fourth stream of uid 65534: %s, want ResourceExhausted", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := karmorLogs(t, ctx, dial(t, a.tcp), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 4 })
	a.srv.PublishAlert(sampleAlert("p"))
	if _, err := s.alerts.Recv(); err != nil {
		t.Fatalf("root's stream: %v", err)
	}
	if st := a.srv.AccessStats(); st.StreamsRefusedUser != 1 {
		t.Errorf("StreamsRefusedUser = %d, want 1", st.StreamsRefusedUser)
	}
}

// Stalled streams of another user holding every ordinary subscriber slot
// do not keep root's CLI on the unix socket out.
func TestRootOnUnixGetsASlot(t *testing.T) {
	a, _ := openAgent(t, func(o *Options) {
		o.TelemetryGroup = TelemetryEveryone
		o.MaxSubscribers = 8 // one reserved
		o.MaxStreamsPerUser = 100
	})
	holdAsNobody(t, a.tcp, 7)
	waitUntil(func() bool { return a.srv.alerts.Len() == 7 })
	if got := asNobody(t, nil, "watch", "unix://"+a.socket); got != "ResourceExhausted" {
		t.Fatalf("uid 65534 took the reserved slot: %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := karmorLogs(t, ctx, dial(t, "unix://"+a.socket), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 8 })
	a.srv.PublishAlert(sampleAlert("p"))
	if got, err := s.alerts.Recv(); err != nil || got.PolicyName != "p" {
		t.Fatalf("root on the unix socket: %v %v", got, err)
	}
}

// A subscriber that stops reading is disconnected once its queue has been
// full with nothing delivered for subscriberStallTimeout: ResourceExhausted
// naming the bound, after what was already on its way; its drops stay
// counted.
func TestStalledSubscriberEvicted(t *testing.T) {
	const bound = 300 * time.Millisecond
	a := startAgent(t, func(o *Options) { o.QueueDepth = 4; o.SubscriberStallTimeout = bound })
	// A fixed window (no BDP growth) so the transport's buffers fill fast.
	conn, err := grpc.NewClient(a.tcp, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := kubearmorpb.NewLogServiceClient(conn).WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: "all"})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(func() bool { return a.srv.alerts.Len() == 1 })
	start := time.Now()
	for i := 0; a.srv.alerts.Len() == 1; i++ {
		al := sampleAlert(fmt.Sprintf("p%d", i%10)) // throttling is per policy
		al.Data = strings.Repeat("x", 4096)
		a.srv.PublishAlert(al)
		time.Sleep(time.Millisecond)
	}
	t.Logf("evicted %v after the first alert", time.Since(start))
	var got error
	for got == nil {
		_, got = s.Recv()
	}
	if status.Code(got) != codes.ResourceExhausted || !strings.Contains(got.Error(), "subscriberStallTimeout") {
		t.Fatalf("stalled subscriber ended with %v, want ResourceExhausted naming subscriberStallTimeout", got)
	}
	st := a.srv.AccessStats()
	if st.SubscribersEvicted != 1 || a.srv.FeederStatus().AlertsDropped == 0 {
		t.Errorf("evicted %d (want 1), dropped %d (want > 0)", st.SubscribersEvicted, a.srv.FeederStatus().AlertsDropped)
	}
}

// readUntilClosed reads a raw connection until the server closes it, and
// reports how long that took and whether the server wrote anything first.
func readUntilClosed(t *testing.T, c net.Conn, guard time.Duration) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(guard))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", guard)
	}
	return time.Since(start), int(n)
}

// A client that connects and sends nothing is dropped after
// ConnectionTimeout, on TCP and on the unix socket, and counted.
func TestNoPrefaceDropped(t *testing.T) {
	a := startAgent(t, func(o *Options) { o.ConnectionTimeout = 300 * time.Millisecond })
	for network, addr := range map[string]string{"tcp": a.tcp, "unix": a.socket} {
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		took, _ := readUntilClosed(t, c, 10*time.Second)
		c.Close()
		if took < 250*time.Millisecond {
			t.Errorf("%s: closed after %v, before the timeout", network, took)
		}
	}
	waitUntil(func() bool { return a.srv.AccessStats().ConnectionsNoPreface == 2 })
}

// maxConnections is enforced at accept: the connection over the cap is
// closed at once (nothing written), counted, and root's unix socket still
// works; per user, maxConnectionsPerUser closes the extra one too.
func TestConnectionCaps(t *testing.T) {
	a := startAgent(t, func(o *Options) {
		o.MaxConnections = 3
		o.MaxConnectionsPerUser = 100
		o.ConnectionTimeout = 20 * time.Second
	})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", a.tcp)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitUntil(func() bool { return a.srv.AccessStats().Connections == 3 })
	c, err := net.Dial("tcp", a.tcp)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := readUntilClosed(t, c, 5*time.Second); n != 0 {
		t.Errorf("the server wrote %d bytes on a connection over the cap", n)
	}
	c.Close()
	if st := a.srv.AccessStats(); st.ConnectionsRefused != 1 {
		t.Errorf("ConnectionsRefused = %d, want 1", st.ConnectionsRefused)
	}
	if _, err := statuspb.NewAgentStatusClient(dial(t, "unix://"+a.socket)).GetStatus(context.Background(), &emptypb.Empty{}); err != nil {
		t.Fatalf("root on the unix socket at the cap: %v", err)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitUntil(func() bool { return a.srv.AccessStats().Connections <= 1 })
	if _, err := statuspb.NewAgentStatusClient(dial(t, a.tcp)).GetStatus(context.Background(), &emptypb.Empty{}); err != nil {
		t.Fatalf("TCP after the idle clients left: %v", err)
	}

	b := startAgent(t, func(o *Options) { o.MaxConnectionsPerUser = 2; o.ConnectionTimeout = 20 * time.Second })
	for range 2 {
		c, err := net.Dial("tcp", b.tcp)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Handshakes run concurrently: wait until both are admitted.
	waitUntil(func() bool {
		b.srv.access.mu.Lock()
		defer b.srv.access.mu.Unlock()
		return b.srv.access.conns["uid:0"] == 2
	})
	c, err = net.Dial("tcp", b.tcp)
	if err != nil {
		t.Fatal(err)
	}
	readUntilClosed(t, c, 5*time.Second)
	c.Close()
	if st := b.srv.AccessStats(); st.ConnectionsRefusedUser != 1 {
		t.Errorf("ConnectionsRefusedUser = %d, want 1", st.ConnectionsRefusedUser)
	}
	if _, err := statuspb.NewAgentStatusClient(dial(t, "unix://"+b.socket)).GetStatus(context.Background(), &emptypb.Empty{}); err != nil {
		t.Fatalf("root on the unix socket is not limited per user: %v", err)
	}
}
