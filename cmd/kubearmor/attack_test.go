package main

// The attacker of the self-defence tests (selfdefence_test.go on the host,
// vmtests/40-selfdefence.sh in the guest): the test binary re-executed with
// KUBEARMOR_TEST_ATTACK set, as root, dropping to an unprivileged uid before
// it opens a single socket, so every connection is owned by that uid for
// SO_PEERCRED and sock_diag alike. It reports on stdout, one key=value per
// line, so a Go test and a shell script read it the same way.
//
//	KUBEARMOR_TEST_ATTACK=1 kubearmor.test MODE [FLAGS]
//
// Modes:
//
//	churn   connect, subscribe to WatchAlerts, WatchLogs and WatchMessages, read
//	        one message, drop the connection (half of the time with RST);
//	        -cycles times or for -seconds, whichever ends first
//	policy  one PolicyService hostPolicy call (-op add|delete), karmor's bytes
//	stall   open -conns connections with -streams streams each, never read;
//	        print "ready", hold until SIGTERM, then read what is left
//	flood   hold -conns TCP connections that never send the HTTP/2 preface,
//	        reopening those the agent closes; print "ready", hold until SIGTERM
//	nofile  set RLIMIT_NOFILE to -n (soft and hard), then exec the rest of the
//	        command line (the agent under a small descriptor limit; stays root)

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/feeder/client"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// attackEnv selects the attacker in TestMain.
const attackEnv = "KUBEARMOR_TEST_ATTACK"

// attackMain runs one attacker mode and returns the exit status: 0 when the
// attack ran (what it achieved is in its output), 2 on a usage error, 3 when
// it could not drop privileges.
func attackMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "attack: want a mode: churn, policy, stall, flood, nofile")
		return 2
	}
	mode, args := args[0], args[1:]
	if mode == "nofile" {
		return attackNofile(args)
	}
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	uid := fs.Int("uid", 65534, "uid (and gid) to attack as; 0 stays root")
	target := fs.String("target", "", "agent address: HOST:PORT or unix:///PATH")
	cycles := fs.Int("cycles", 20000, "churn: connect/subscribe/disconnect cycles")
	seconds := fs.Int("seconds", 300, "churn: stop after this many seconds even if cycles remain")
	workers := fs.Int("workers", 2, "churn: concurrent churners")
	op := fs.String("op", "add", "policy: add or delete")
	name := fs.String("name", "attacker-policy", "policy: the policy's name")
	path := fs.String("path", "/etc/hostname", "policy: the file path of its rule")
	host := fs.String("host", "*", "policy: its kubearmor.io/hostname")
	action := fs.String("action", "Audit", "policy: its action")
	conns := fs.Int("conns", 64, "stall, flood: connections to hold")
	streams := fs.Int("streams", 64, "stall: streams per connection")
	if err := fs.Parse(args); err != nil || *target == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "attack: -target is required and no arguments are taken")
		return 2
	}
	if err := dropTo(*uid); err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		return 3
	}
	fmt.Printf("uid=%d\n", os.Getuid())
	switch mode {
	case "churn":
		attackChurn(*target, *cycles, time.Duration(*seconds)*time.Second, *workers)
	case "policy":
		return attackPolicy(*target, *op, karmorHostPolicy(*name, *host, *path, *action))
	case "stall":
		attackStall(*target, *conns, *streams)
	case "flood":
		attackFlood(*target, *conns)
	default:
		fmt.Fprintf(os.Stderr, "attack: unknown mode %q\n", mode)
		return 2
	}
	return 0
}

// dropTo becomes uid (gid the same, no supplementary groups). Go applies
// setuid to every thread of the process.
func dropTo(uid int) error {
	if uid == 0 {
		return nil
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(uid); err != nil {
		return fmt.Errorf("setgid %d: %w", uid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid {
		return fmt.Errorf("still uid %d/%d after setuid %d", os.Getuid(), os.Geteuid(), uid)
	}
	return nil
}

// attackNofile: nofile -n N -- PROGRAM ARGS...
func attackNofile(args []string) int {
	fs := flag.NewFlagSet("nofile", flag.ContinueOnError)
	n := fs.Uint64("n", 1024, "RLIMIT_NOFILE, soft and hard")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "attack nofile: -n N -- PROGRAM ARGS...")
		return 2
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: *n, Max: *n}); err != nil {
		fmt.Fprintln(os.Stderr, "attack nofile:", err)
		return 1
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, attackEnv+"=") {
			env = append(env, kv)
		}
	}
	prog, err := exec.LookPath(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "attack nofile:", err)
		return 1
	}
	err = syscall.Exec(prog, fs.Args(), env)
	fmt.Fprintln(os.Stderr, "attack nofile: exec:", err)
	return 1
}

// attackDial makes a connection with no retries hidden behind it: a refused
// connection fails the first RPC.
func attackDial(target string, rst bool) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if rst {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			network := "tcp"
			if strings.HasPrefix(target, "unix://") {
				network, addr = "unix", strings.TrimPrefix(target, "unix://")
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // close sends RST: the agent's next write fails with EPIPE/ECONNRESET
			}
			return c, err
		}))
	}
	return grpc.NewClient(client.Target(target), opts...)
}

// attackTally counts outcomes by name, safely from several goroutines.
type attackTally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *attackTally) add(k string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
	t.mu.Unlock()
}

// print writes prefix_KEY=N lines in a stable order.
func (t *attackTally) print(prefix string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s_%s=%d\n", prefix, k, t.m[k])
	}
}

func attackCode(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}

// attackChurn is the attack of issue 12: subscribe and vanish, as fast as it can.
func attackChurn(target string, cycles int, limit time.Duration, workers int) {
	var next atomic.Int64
	var outcomes attackTally
	deadline := time.Now().Add(limit)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(cycles) || time.Now().After(deadline) {
					return
				}
				outcomes.add(attackChurnOnce(target, i%2 == 0))
			}
		})
	}
	wg.Wait()
	n := min(next.Load(), int64(cycles))
	fmt.Printf("cycles=%d\n", n)
	outcomes.print("outcome")
}

func attackChurnOnce(target string, rst bool) string {
	conn, err := attackDial(target, rst)
	if err != nil {
		return "DialError"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	// The connection goes first, with the streams still open, as a killed
	// client's would.
	defer func() { conn.Close(); cancel() }()
	lc := kubearmorpb.NewLogServiceClient(conn)
	req := &kubearmorpb.RequestMessage{Filter: "all"}
	if _, err := lc.WatchAlerts(ctx, req); err != nil {
		return attackCode(err)
	}
	if _, err := lc.WatchLogs(ctx, req); err != nil {
		return attackCode(err)
	}
	msgs, err := lc.WatchMessages(ctx, req)
	if err != nil {
		return attackCode(err)
	}
	// The agent greets every WatchMessages subscriber with its status: one
	// message proves the subscriptions are live and that the agent is
	// writing to this connection when it goes away.
	if _, err := msgs.Recv(); err != nil {
		return attackCode(err)
	}
	return "Received"
}

// karmorHostPolicy is what `karmor vm policy add` sends for a host policy
// with one file rule (karmor-client.md §5).
func karmorHostPolicy(name, host, path, action string) string {
	return fmt.Sprintf(`{"type":"ADDED","object":{"metadata":{"name":%q},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":%q}},"process":{},"file":{"matchPaths":[{"path":%q}]},"network":{},"capabilities":{},"syscalls":{},"device":{},"action":%q},"status":{}}}`,
		name, host, path, action)
}

func attackPolicy(target, op, payload string) int {
	switch op {
	case "add":
	case "delete":
		payload = strings.Replace(payload, `"type":"ADDED"`, `"type":"DELETED"`, 1)
	default:
		fmt.Fprintf(os.Stderr, "attack policy: -op must be add or delete, not %q\n", op)
		return 2
	}
	conn, err := attackDial(target, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attack policy:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := policypb.NewPolicyServiceClient(conn).HostPolicy(ctx, &policypb.Policy{Policy: []byte(payload)})
	fmt.Printf("%s=%s\n", op, attackCode(err))
	if err != nil {
		fmt.Printf("message=%s\n", strings.ReplaceAll(status.Convert(err).Message(), "\n", " "))
	} else {
		fmt.Printf("status=%s\n", resp.GetStatus())
	}
	return 0
}

// headerOrStatus waits for a stream's headers. A stream the agent refused
// has none (a trailers-only response: Header returns no metadata and no
// error), and its status is what the next Recv returns.
func headerOrStatus(st grpc.ClientStream, recv func() error) error {
	md, err := st.Header()
	if err == nil && md == nil {
		if err = recv(); err == nil {
			err = errors.New("a message after a trailers-only response")
		}
	}
	return err
}

// attackHold blocks until SIGTERM or SIGINT.
func attackHold() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	signal.Stop(sig)
}

// attackStall takes every stream it can and never reads one. An accepted stream
// is one the agent has not refused within 3 seconds of opening it.
func attackStall(target string, conns, perConn int) {
	type held struct {
		recv func() error
	}
	var (
		mu      sync.Mutex
		streams []held
		opened  attackTally
		all     []*grpc.ClientConn
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		conn, err := attackDial(target, false)
		if err != nil {
			opened.add("DialError")
			continue
		}
		all = append(all, conn)
		lc := kubearmorpb.NewLogServiceClient(conn)
		for s := 0; s < perConn; s++ {
			req := &kubearmorpb.RequestMessage{Filter: "all"}
			var recv func() error
			var header func() error
			if s%2 == 0 {
				st, err := lc.WatchLogs(ctx, req)
				if err != nil {
					opened.add(attackCode(err))
					continue
				}
				recv = func() error { _, err := st.Recv(); return err }
				header = func() error { return headerOrStatus(st, recv) }
			} else {
				st, err := lc.WatchAlerts(ctx, req)
				if err != nil {
					opened.add(attackCode(err))
					continue
				}
				recv = func() error { _, err := st.Recv(); return err }
				header = func() error { return headerOrStatus(st, recv) }
			}
			// A refusal arrives as the stream's status without headers;
			// an accepted stream sends headers with its first event or
			// sends nothing yet. An accepted stream's messages stay unread.
			wg.Go(func() {
				done := make(chan error, 1)
				go func() { done <- header() }()
				select {
				case err := <-done:
					if err != nil {
						opened.add(attackCode(err))
						return
					}
				case <-time.After(3 * time.Second): // nothing yet: not refused
				}
				opened.add("Accepted")
				mu.Lock()
				streams = append(streams, held{recv: recv})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	opened.print("opened")
	fmt.Println("ready")
	attackHold()

	// Read what each stream has left, to see how the agent ended it.
	var ended attackTally
	for _, s := range streams {
		wg.Go(func() {
			for {
				if err := s.recv(); err != nil {
					ended.add(attackCode(err))
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		ended.add("StillOpen") // the others: never ended by the agent
	}
	ended.print("ended")
	for _, c := range all {
		c.Close()
	}
}

// attackFlood holds conns TCP connections that never send a byte. A connection
// the agent closes is reopened after a short pause, so the pressure stays
// while the attacker runs.
func attackFlood(target string, conns int) {
	var (
		open, dialFail, closedByAgent atomic.Int64
		wg                            sync.WaitGroup
	)
	stop := make(chan struct{})
	var mu sync.Mutex
	live := map[net.Conn]bool{}
	stopped := false
	hold := func(first chan<- struct{}) {
		defer wg.Done()
		signalled := false
		for {
			c, err := net.DialTimeout("tcp", target, 5*time.Second)
			if !signalled {
				first <- struct{}{}
				signalled = true
			}
			if err != nil {
				dialFail.Add(1)
			} else {
				open.Add(1)
				mu.Lock()
				if stopped {
					mu.Unlock()
					c.Close()
					return
				}
				live[c] = true
				mu.Unlock()
				// The agent speaks first (its HTTP/2 SETTINGS); read and
				// discard until it closes (or resets) the connection, or
				// until stop.
				io.Copy(io.Discard, c)
				open.Add(-1)
				select {
				case <-stop:
					return
				default:
				}
				closedByAgent.Add(1)
				mu.Lock()
				delete(live, c)
				mu.Unlock()
				c.Close()
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	first := make(chan struct{}, conns)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go hold(first)
	}
	for i := 0; i < conns; i++ {
		<-first
	}
	fmt.Printf("held=%d\ndialfail=%d\nready\n", open.Load(), dialFail.Load())
	attackHold()
	close(stop)
	mu.Lock()
	stopped = true
	for c := range live {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	fmt.Printf("closed_by_agent=%d\ndialfail=%d\n", closedByAgent.Load(), dialFail.Load())
}
