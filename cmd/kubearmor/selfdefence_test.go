package main

// Issue 12's acceptance on the host kernel: a running agent with the
// fanotify tier and a Block rule in force, attacked by an unprivileged local
// user (this test binary re-executed as uid 65534, attack_test.go). After
// every attack the agent must still run, answer, and enforce: a real open
// and a real exec of the blocked files are refused, and other opens and
// execs on the marked filesystem complete. Nothing passes or fails on how
// fast anything was; timeouts are hang guards only.
//
// The marked filesystem is a tmpfs mounted for the test, so a wedged agent
// can only stall the test's own files, never the host's.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/armorhost/kubearmor/feeder/client"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// hangGuard bounds every wait for something that should happen promptly.
const hangGuard = 30 * time.Second

// defended is an agent under attack and the files its policy names.
type defended struct {
	cmd       *exec.Cmd
	pid       int
	exited    chan struct{} // closed when the daemon process ended
	logs      *follower
	dir       string
	fs        string // the tmpfs the fanotify tier marks
	policies  string
	admin     string // the administrator's policy file, with the Block
	adminYAML []byte
	socket    string
	tcp       string
}

type defendedOpts struct {
	visibility string   // hostVisibility; "none" when empty
	config     []string // extra kubearmor.yaml lines
	nofile     uint64   // RLIMIT_NOFILE of the daemon (soft and hard); 0 = inherited
}

const adminPolicyTmpl = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: admin-block
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: testhost
  file:
    matchPaths:
    - path: %s/blocked.txt
  process:
    matchPaths:
    - path: %s/blocked-true
  action: Block
`

// startDefended starts the daemon as root with the fanotify tier and the
// administrator's Block policy, a unix socket any local user can reach (so
// that the agent's own peer check, not the file mode, is what refuses),
// and loopback TCP on a free port.
func startDefended(t *testing.T, o defendedOpts) *defended {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the fanotify tier, a tmpfs, and an attacker that drops to uid 65534")
	}
	dir, err := os.MkdirTemp("", "kubearmor-selfdefence-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // uid 65534 must reach the socket below
	d := &defended{dir: dir, fs: filepath.Join(dir, "fs"), policies: filepath.Join(dir, "policies"),
		socket: filepath.Join(dir, "run", "kubearmor.sock"), exited: make(chan struct{})}
	d.admin = filepath.Join(d.policies, "admin-block.yaml")
	for _, p := range []string{d.fs, filepath.Dir(d.socket)} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Dir(d.socket), 0o777)
	if err := unix.Mount("tmpfs", d.fs, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs to mark (marking / would stall the host if the agent wedged): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d.fs, unix.MNT_DETACH) })
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(d.fs, "blocked.txt"), []byte("secret\n"), 0o644))
	must(os.WriteFile(filepath.Join(d.fs, "allowed.txt"), []byte("allowed\n"), 0o644))
	trueBin, err := os.ReadFile("/bin/true")
	must(err)
	must(os.WriteFile(filepath.Join(d.fs, "blocked-true"), trueBin, 0o755))
	must(os.WriteFile(filepath.Join(d.fs, "true"), trueBin, 0o755))
	must(os.Mkdir(d.policies, 0o700))
	d.adminYAML = fmt.Appendf(nil, adminPolicyTmpl, d.fs, d.fs)
	must(os.WriteFile(d.admin, d.adminYAML, 0o600))

	d.tcp = freeLoopbackPort(t)
	visibility := o.visibility
	if visibility == "" {
		visibility = "none"
	}
	cfg := []string{"cluster: test", "host: testhost", "lsm: fanotify", "socket: " + d.socket,
		`gRPC: "` + d.tcp + `"`, "policyDir: " + d.policies, "hostVisibility: " + visibility,
		"alertThrottling: false", "dockerSocket: none", "containerdSocket: none"}
	cfgFile := filepath.Join(dir, "kubearmor.yaml")
	must(os.WriteFile(cfgFile, []byte(strings.Join(append(cfg, o.config...), "\n")+"\n"), 0o600))

	args := []string{binary, "--config", cfgFile}
	var env []string
	if o.nofile > 0 {
		self, err := os.Executable()
		must(err)
		args = append([]string{self, "nofile", "-n", strconv.FormatUint(o.nofile, 10), "--"}, args...)
		env = []string{attackEnv + "=1"}
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Env = append(os.Environ(), env...)
	logs, started := pipeTo(t, func(w *os.File) { d.cmd.Stderr = w })
	d.logs = logs
	err = d.cmd.Start()
	started()
	must(err)
	d.pid = d.cmd.Process.Pid
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop(t) })

	line := d.logs.waitFor(t, "enforcer chosen")
	if !strings.Contains(line, "enforcer=Fanotify") {
		t.Skipf("the fanotify tier is not available here: %s", line)
	}
	d.logs.waitFor(t, "policies in force", "policies=admin-block")
	d.logs.waitFor(t, "kubearmor ready")
	must(os.Chmod(d.socket, 0o666))
	return d
}

// follower is a logWatcher over a pipe the test owns, so the last lines
// are read even after the writer is gone, and ended says when they all were.
type follower struct {
	*logWatcher
	ended chan struct{}
}

// pipeTo gives set the write end of a new pipe and follows the read end;
// call the returned function once the child started, to drop the test's
// copy of the write end (EOF then comes when the child exits).
func pipeTo(t *testing.T, set func(*os.File)) (*follower, func()) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	set(w)
	f := &follower{logWatcher: &logWatcher{more: make(chan struct{}, 1)}, ended: make(chan struct{})}
	go func() {
		defer close(f.ended)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f.mu.Lock()
			f.lines = append(f.lines, sc.Text())
			f.mu.Unlock()
			select {
			case f.more <- struct{}{}:
			default:
			}
		}
	}()
	return f, func() { w.Close() }
}

// has reports whether a line so far contains every part.
func (f *follower) has(parts ...string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func (f *follower) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n")
}

func freeLoopbackPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stop ends the daemon with SIGTERM; a daemon that does not stop is killed
// (which also releases every pending fanotify event).
func (d *defended) stop(t *testing.T) {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(hangGuard):
		t.Errorf("the daemon did not stop on SIGTERM; killed")
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// running fails the test if the daemon has exited.
func (d *defended) running(t *testing.T, when string) {
	t.Helper()
	select {
	case <-d.exited:
		t.Fatalf("%s: the daemon is gone (%v); log:\n%s", when, d.cmd.ProcessState, d.logs.text())
	default:
	}
	if d.logs.has("stopping kubearmor") {
		t.Fatalf("%s: the daemon is stopping; log:\n%s", when, d.logs.text())
	}
}

// answers: root gets `kubearmor status` over the unix socket, and the
// agent still reports the fanotify tier and the administrator's policy.
func (d *defended) answers(t *testing.T, when string) {
	t.Helper()
	c, err := client.Dial(d.socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("%s: status over the unix socket: %v", when, err)
	}
	if st.GetEnforcer() != "Fanotify" || !slices.ContainsFunc(st.GetPolicies(), func(p *statuspb.LoadedPolicy) bool { return p.GetName() == "admin-block" }) {
		t.Fatalf("%s: status reports enforcer %q, policies %v", when, st.GetEnforcer(), st.GetPolicies())
	}
}

// enforcing: the Block holds (an open and an exec of the blocked files are
// refused by the kernel) and other opens and execs on the marked filesystem
// complete.
func (d *defended) enforcing(t *testing.T, when string) {
	t.Helper()
	d.blockHolds(t, when)
	if data, err := d.open(t, when, "allowed.txt"); err != nil || string(data) != "allowed\n" {
		t.Errorf("%s: open of another file on the marked filesystem: %q, %v", when, data, err)
	}
	if err := d.exec(t, when, "true"); err != nil {
		t.Errorf("%s: exec of another program on the marked filesystem: %v", when, err)
	}
}

// blockHolds: an open and an exec of the blocked files are refused, and an
// open and an exec of the others complete (they may fail, they may not hang).
func (d *defended) blockHolds(t *testing.T, when string) {
	t.Helper()
	refused := func(err error) bool { return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) }
	if data, err := d.open(t, when, "blocked.txt"); !refused(err) {
		t.Errorf("%s: open of the blocked file: %q, %v; want EPERM or EACCES (the Block must hold)", when, data, err)
	}
	if err := d.exec(t, when, "blocked-true"); !refused(err) {
		t.Errorf("%s: exec of the blocked program: %v; want EPERM or EACCES", when, err)
	}
	if _, err := d.open(t, when, "allowed.txt"); err != nil {
		t.Logf("%s: open of another file: %v", when, err)
	}
	if err := d.exec(t, when, "true"); err != nil {
		t.Logf("%s: exec of another program: %v", when, err)
	}
}

// open reads a file of the marked filesystem under a hang guard: an agent
// that stopped answering permission events would leave it waiting.
func (d *defended) open(t *testing.T, when, name string) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := os.ReadFile(filepath.Join(d.fs, name))
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(hangGuard):
		t.Fatalf("%s: open of %s hangs: the agent no longer answers permission events", when, name)
	}
	return nil, nil
}

// exec runs a program of the marked filesystem under a hang guard.
func (d *defended) exec(t *testing.T, when, name string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	err := exec.CommandContext(ctx, filepath.Join(d.fs, name)).Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: exec of %s hangs: the agent no longer answers permission events", when, name)
	}
	return err
}

// healthy is the check after (and during) every attack.
func (d *defended) healthy(t *testing.T, when string) {
	t.Helper()
	d.running(t, when)
	d.answers(t, when)
	d.enforcing(t, when)
	d.running(t, when)
}

// attacker is one run of attack_test.go's attacker.
type attacker struct {
	cmd    *exec.Cmd
	out    *follower
	stderr strings.Builder
	done   chan struct{}
}

// attack starts the test binary as the attacker (it drops to uid 65534
// itself unless args say -uid 0).
func attack(t *testing.T, args ...string) *attacker {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{cmd: exec.Command(self, args...), done: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), attackEnv+"=1")
	a.cmd.Stderr = &a.stderr
	out, started := pipeTo(t, func(w *os.File) { a.cmd.Stdout = w })
	a.out = out
	err = a.cmd.Start()
	started()
	if err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
	})
	return a
}

// wait waits (at most guard) for the attacker to end and returns its
// key=value report.
func (a *attacker) wait(t *testing.T, guard time.Duration) map[string]string {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(guard):
		a.cmd.Process.Kill()
		t.Fatalf("attacker %v hangs; output so far:\n%s\n%s", a.cmd.Args[1:], a.out.text(), a.stderr.String())
	}
	if !a.cmd.ProcessState.Success() {
		t.Fatalf("attacker %v: %v\n%s\n%s", a.cmd.Args[1:], a.cmd.ProcessState, a.out.text(), a.stderr.String())
	}
	select { // the attacker is gone, so its output ends now
	case <-a.out.ended:
	case <-time.After(hangGuard):
		t.Fatalf("attacker %v: its output does not end", a.cmd.Args[1:])
	}
	return a.report()
}

// report parses the key=value lines printed so far.
func (a *attacker) report() map[string]string {
	m := map[string]string{}
	a.out.mu.Lock()
	defer a.out.mu.Unlock()
	for _, l := range a.out.lines {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// terminate asks a holding attacker (stall, flood) to leave and report.
func (a *attacker) terminate(t *testing.T) map[string]string {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	return a.wait(t, 2*hangGuard)
}

func count(m map[string]string, key string) int {
	n, _ := strconv.Atoi(m[key])
	return n
}

// envInt reads an integer override for a quick run.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// busy makes telemetry and alerts flow until the test ends: an open of the
// marked filesystem's files every few milliseconds.
func (d *defended) busy(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			os.ReadFile(filepath.Join(d.fs, "allowed.txt"))
			os.ReadFile(filepath.Join(d.fs, "blocked.txt"))
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// The first attack: connect, subscribe, vanish, 20,000 times (or 5
// minutes, whichever comes first; KUBEARMOR_TEST_CHURN_CYCLES and
// KUBEARMOR_TEST_CHURN_SECONDS shorten it for a quick run). Every user may
// subscribe here (telemetryGroup "*"), so each cycle is a live stream the
// agent is writing to when the client disappears (half of them with RST).
func TestSelfDefenceChurn(t *testing.T) {
	d := startDefended(t, defendedOpts{visibility: "process,file", config: []string{`telemetryGroup: "*"`}})
	d.busy(t)
	cycles := envInt(t, "KUBEARMOR_TEST_CHURN_CYCLES", 20000)
	seconds := envInt(t, "KUBEARMOR_TEST_CHURN_SECONDS", 300)
	a := attack(t, "churn", "-target", d.tcp, "-cycles", strconv.Itoa(cycles), "-seconds", strconv.Itoa(seconds))
	r := a.wait(t, time.Duration(seconds)*time.Second+2*time.Minute)
	t.Logf("churn as uid %s: %v", r["uid"], r)
	if r["uid"] != "65534" {
		t.Fatalf("the attacker runs as uid %q, want 65534", r["uid"])
	}
	if count(r, "outcome_Received") == 0 {
		t.Errorf("no churn cycle received a log: the attack did not reach a live stream: %v", r)
	}
	d.healthy(t, fmt.Sprintf("after %s churn cycles", r["cycles"]))
	// The same user can still subscribe: nothing was left holding its slots.
	if got := attack(t, "churn", "-target", d.tcp, "-cycles", "1").wait(t, time.Minute); got["outcome_Received"] != "1" {
		t.Errorf("a fresh subscription after the churn: %v", got)
	}
}

// PolicyService: an unprivileged user is refused over loopback TCP and over
// the unix socket, the policy directory is untouched and the refusal names
// the peer; root is served on both doors.
func TestSelfDefencePolicyService(t *testing.T) {
	d := startDefended(t, defendedOpts{})
	before := listDir(t, d.policies)
	for _, door := range []struct{ name, target string }{{"tcp", d.tcp}, {"unix", "unix://" + d.socket}} {
		for _, op := range []struct{ op, name string }{
			{"add", "attacker-policy"}, // a policy of its own
			{"delete", "admin-block"},  // the administrator's Block
		} {
			r := attack(t, "policy", "-target", door.target, "-op", op.op, "-name", op.name,
				"-host", "testhost", "-path", filepath.Join(d.fs, "allowed.txt")).wait(t, time.Minute)
			if r[op.op] != "PermissionDenied" {
				t.Errorf("%s %s of %s as uid %s: %s (%s %s), want PermissionDenied", door.name, op.op, op.name, r["uid"], r[op.op], r["status"], r["message"])
			}
		}
	}
	if after := listDir(t, d.policies); !slices.Equal(before, after) {
		t.Errorf("the policy directory changed: %v -> %v", before, after)
	}
	if data, err := os.ReadFile(d.admin); err != nil || string(data) != string(d.adminYAML) {
		t.Errorf("the administrator's policy file changed: %v\n%s", err, data)
	}
	// The refusal is logged with who tried (the uid the kernel reported).
	d.logs.waitFor(t, "PolicyService", "uid=65534")
	d.healthy(t, "after the refused policy changes")

	// Root, on both doors, with karmor's exact requests.
	for _, door := range []struct{ name, target string }{{"tcp", d.tcp}, {"unix", "unix://" + d.socket}} {
		name := "root-" + door.name
		conn, err := grpc.NewClient(client.Target(door.target), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		pc := policypb.NewPolicyServiceClient(conn)
		payload := karmorHostPolicy(name, "testhost", filepath.Join(d.fs, "allowed.txt"), "Audit")
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		resp, err := pc.HostPolicy(ctx, &policypb.Policy{Policy: []byte(payload)})
		if err != nil || resp.GetStatus() != policypb.PolicyStatus_Applied {
			t.Fatalf("root %s add: %v %v, want Applied", door.name, resp, err)
		}
		file := filepath.Join(d.policies, name+".yaml")
		if _, err := os.Stat(file); err != nil {
			t.Errorf("root %s add: %v", door.name, err)
		}
		d.logs.waitFor(t, "policies in force", name)
		d.logs.waitFor(t, "PolicyService", name, "uid=0")
		resp, err = pc.HostPolicy(ctx, &policypb.Policy{Policy: []byte(strings.Replace(payload, `"type":"ADDED"`, `"type":"DELETED"`, 1))})
		if err != nil || resp.GetStatus() != policypb.PolicyStatus_Deleted {
			t.Fatalf("root %s delete: %v %v, want Deleted", door.name, resp, err)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("root %s delete: the file is still there (%v)", door.name, err)
		}
	}
	d.healthy(t, "after root's policy changes")
}

func listDir(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Stalled subscribers of one user (every stream it can get, on both doors,
// never read) do not keep root from subscribing over the unix socket and
// receiving an alert, and are disconnected once stalled past
// subscriberStallTimeout. Twice: with the default per-user limits, and with
// them lifted so that the attacker takes every subscriber slot it can and
// only the slots reserved for root stand in its way.
func TestSelfDefenceStalledSubscribers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config []string
	}{
		{"per-user limits", nil},
		{"no per-user limits", []string{"maxConnectionsPerUser: 100000", "maxStreamsPerUser: 100000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDefended(t, defendedOpts{visibility: "process,file",
				config: append([]string{`telemetryGroup: "*"`, "subscriberStallTimeout: 3s"}, tc.config...)})
			d.busy(t)
			var attackers []*attacker
			for _, target := range []string{d.tcp, "unix://" + d.socket} {
				attackers = append(attackers, attack(t, "stall", "-target", target, "-conns", "48", "-streams", "16"))
			}
			accepted := 0
			for _, a := range attackers {
				a.out.waitFor(t, "ready")
				r := a.report()
				t.Logf("stall as uid %s against %s: %v", r["uid"], a.cmd.Args[3], r)
				accepted += count(r, "opened_Accepted")
			}
			if accepted == 0 {
				t.Fatal("the attacker got no stream at all: nothing was tested")
			}
			d.running(t, "with stalled subscribers")
			d.rootGetsAlert(t)
			d.healthy(t, "with stalled subscribers")

			// Stalled past the bound, they are disconnected with a reason.
			d.logs.waitFor(t, "subscriber disconnected: stalled")
			ended := 0
			for _, a := range attackers {
				r := a.terminate(t)
				t.Logf("stalled streams ended: %v", r)
				ended += count(r, "ended_ResourceExhausted")
			}
			if ended == 0 {
				t.Errorf("no stalled stream was ended with ResourceExhausted")
			}
			d.healthy(t, "after the stalled subscribers left")
		})
	}
}

// rootGetsAlert: root subscribes to alerts over the unix socket and
// receives the alert of a refused open.
func (d *defended) rootGetsAlert(t *testing.T) {
	t.Helper()
	conn, err := grpc.NewClient(client.Target(d.socket), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	alerts, err := kubearmorpb.NewLogServiceClient(conn).WatchAlerts(ctx, &kubearmorpb.RequestMessage{Filter: "policy"})
	if err != nil {
		t.Fatalf("root's WatchAlerts over the unix socket: %v", err)
	}
	go func() { // refused opens until root has its alert
		for ctx.Err() == nil {
			os.ReadFile(filepath.Join(d.fs, "blocked.txt"))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for {
		a, err := alerts.Recv()
		if err != nil {
			t.Fatalf("root's alert stream: %v", err)
		}
		if a.GetPolicyName() == "admin-block" && a.GetAction() == "Block" {
			return
		}
	}
}

// Holding TCP connections up to the agent's descriptor limit (idle, never
// sending the HTTP/2 preface) does not stop enforcement; after the attacker
// leaves, opens and execs work and the Block holds. The agent runs with a
// small RLIMIT_NOFILE so the limit is within an attacker's reach in a test,
// and with no per-user connection limit to speak of, so that only the
// global bound stands between the attacker and the descriptor limit:
//   - maxConnections derived (the default): the cap keeps the agent well
//     below its limit, so everything works while the attacker holds on, and
//     root still gets status over the unix socket;
//   - maxConnections above the limit (an administrator's mistake): the
//     agent does reach its descriptor limit, and the fanotify reader must
//     survive it (issue 12: it returned on EMFILE and every open on marked
//     filesystems hung). While it is there the Block holds and no open or
//     exec hangs, whatever else it answers; afterwards everything works.
func TestSelfDefenceConnectionFlood(t *testing.T) {
	const nofile = 512
	for _, tc := range []struct {
		name    string
		config  []string
		atLimit bool // the agent is expected to reach its descriptor limit
	}{
		{"maxConnections derived", nil, false},
		{"maxConnections above the descriptor limit", []string{"maxConnections: 100000"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDefended(t, defendedOpts{nofile: nofile, config: append([]string{"maxConnectionsPerUser: 100000"}, tc.config...)})
			if lim := daemonNofile(t, d.pid); lim != nofile {
				t.Fatalf("the daemon's RLIMIT_NOFILE is %d, want %d", lim, nofile)
			}

			// A connection that never sends the preface is dropped.
			idle, err := net.Dial("tcp", d.tcp)
			if err != nil {
				t.Fatal(err)
			}
			idle.SetReadDeadline(time.Now().Add(hangGuard))
			// The agent sends its SETTINGS, then must close the connection.
			if _, err := io.Copy(io.Discard, idle); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("an idle connection that sent no preface was not dropped within %s", hangGuard)
			}
			idle.Close()

			a := attack(t, "flood", "-target", d.tcp, "-conns", strconv.Itoa(nofile))
			a.out.waitFor(t, "ready")
			peak := d.settleFDs(t, nofile)
			t.Logf("flood as uid %s: %v; the daemon holds %d of %d descriptors", a.report()["uid"], a.report(), peak, nofile)
			if tc.atLimit {
				d.running(t, "at the descriptor limit")
				d.blockHolds(t, "at the descriptor limit")
				d.running(t, "at the descriptor limit")
			} else {
				d.healthy(t, "while the attacker holds connections")
				if d.logs.has("too many open files") {
					t.Errorf("the daemon ran out of descriptors:\n%s", d.logs.text())
				}
			}
			r := a.terminate(t)
			t.Logf("flood ended: %v", r)
			d.healthy(t, "after the attacker left")
		})
	}
}

func daemonNofile(t *testing.T, pid int) uint64 {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	return lim.Max
}

// settleFDs waits until the daemon's descriptor count stops growing (or
// reaches the limit) and returns it. It only paces the test; nothing passes
// or fails on it.
func (d *defended) settleFDs(t *testing.T, limit int) int {
	peak, still := 0, 0
	for end := time.Now().Add(hangGuard); time.Now().Before(end) && still < 10 && peak < limit; {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid))
		if err != nil {
			break
		}
		if len(entries) > peak {
			peak, still = len(entries), 0
		} else {
			still++
		}
		time.Sleep(200 * time.Millisecond)
	}
	return peak
}

// SIGPIPE, sent by anyone who may signal the daemon, is not a reason to stop.
func TestSelfDefenceSIGPIPE(t *testing.T) {
	d := startDefended(t, defendedOpts{})
	for range 3 {
		if err := d.cmd.Process.Signal(syscall.SIGPIPE); err != nil {
			t.Fatal(err)
		}
	}
	d.healthy(t, "after SIGPIPE")
	d.answers(t, "after SIGPIPE")
	d.running(t, "after SIGPIPE")
}
