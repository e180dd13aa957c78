package fanotify

import (
	"context"
	"fmt"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
	"github.com/armorhost/kubearmor/monitor"
)

// TestMeasureOverhead reports the latency the tier adds to an open+close
// and a fork+exec+wait on the root filesystem, as ratios to no agent: rounds
// alternate between no agent, the agent (in a child process, as it runs)
// and the agent with its allow cache off, with one Block file rule on a
// file of the root filesystem and one Block process rule, so that every
// exec and open there is marked and no rule concerns the files measured
// (/etc/hostname, /bin/true). Steady state: the first open of each file
// pays the round trip, the cache answers the rest. Medians of the rounds.
// It asserts only that the operations work; the figures go to the log.
// Run with FANOTIFY_MEASURE=1 (scripts/bench-fanotify). While it runs,
// every open on the root filesystem of this host is marked.
func TestMeasureOverhead(t *testing.T) {
	if os.Getenv("FANOTIFY_MEASURE") == "" {
		t.Skip("set FANOTIFY_MEASURE=1 to measure")
	}
	needRoot(t)
	const file, bin = "/etc/hostname", "/bin/true"
	doc := policy("measure", `  process:
    matchPaths:
    - path: /usr/local/sbin/kubearmor-bench-blocked
  file:
    matchPaths:
    - path: /etc/kubearmor-bench-blocked
  action: Block`)

	const rounds, opens, execs = 7, 20000, 300
	perOpen := func() float64 {
		start := time.Now()
		for i := 0; i < opens; i++ {
			fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
		}
		return float64(time.Since(start).Nanoseconds()) / opens
	}
	perExec := func() float64 {
		start := time.Now()
		for i := 0; i < execs; i++ {
			pid, err := syscall.ForkExec(bin, []string{bin}, &syscall.ProcAttr{})
			if err != nil {
				t.Fatal(err)
			}
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
				t.Fatalf("exec: %v %v", err, ws)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / execs
	}
	// The last arm adds the monitor as the agent runs it beside this tier
	// (process, file and network traced whatever the visibility, so that
	// it decides what fanotify cannot refuse), in its own process.
	arms := []struct {
		env     string
		monitor bool
	}{{"", false}, {"FANOTIFY_TEST_CACHE=on", false}, {"FANOTIFY_TEST_CACHE=off", false}, {"FANOTIFY_TEST_CACHE=on", true}}
	var open, exe [4][]float64 // no agent, agent, agent without the cache, agent and monitor
	for r := 0; r < rounds; r++ {
		for i, arm := range arms {
			var child, mon *childEnforcer
			if arm.env != "" {
				child = startChild(t, doc, "", arm.env)
			}
			if arm.monitor {
				mon = startMonitorChild(t)
			}
			if child != nil {
				// Warm-up: the first open and exec of each file pay the
				// round trip; the figures are the steady state.
				perOpen()
				perExec()
			}
			open[i] = append(open[i], perOpen())
			exe[i] = append(exe[i], perExec())
			for _, c := range []*childEnforcer{mon, child} {
				if c != nil {
					c.kill()
				}
			}
		}
	}
	report := func(what string, v [4][]float64, unit float64, u string) {
		base := median(v[0])
		t.Logf("%s: no agent %.2f %s; fanotify tier %.2f %s (x%.2f); without the allow cache %.2f %s (x%.2f); tier and monitor %.2f %s (x%.2f)",
			what, base/unit, u, median(v[1])/unit, u, median(v[1])/base, median(v[2])/unit, u, median(v[2])/base,
			median(v[3])/unit, u, median(v[3])/base)
	}
	report("open+close "+file, open, 1e3, "µs")
	report("fork+exec+wait "+bin, exe, 1e6, "ms")
}

// startMonitorChild runs the system monitor in a child process (it ignores
// its own process, so the workload must run elsewhere), decoding every
// event as the agent does, until killed.
func startMonitorChild(t *testing.T) *childEnforcer {
	t.Helper()
	return startChild(t, "", "", "FANOTIFY_TEST_CHILD=monitor")
}

// childMonitor is the monitor child: "ready" once attached.
func childMonitor() {
	m, err := monitor.Open(monitor.Options{Visibility: monitor.ScopeProcess | monitor.ScopeFile | monitor.ScopeNetwork,
		FailuresOf: monitor.ScopeCapabilities})
	if err != nil {
		fmt.Println("monitor:", err)
		return
	}
	fmt.Println("ready")
	var n int
	_ = m.Run(context.Background(), func(ev event.Event) { n++ })
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkReaderCheck is the agent's own work for an open no rule
// concerns (the common case): find the path of the event's fd, ask the
// table. The rest of the overhead TestMeasureOverhead reports is the
// kernel's round trip to the agent and back.
func BenchmarkReaderCheck(b *testing.B) {
	e := &Enforcer{}
	rs := compile(b, hostpolicy.Postures{}, policy("b", `  file:
    matchDirectories:
    - dir: /nonexistent/
      recursive: true
    matchPaths:
    - path: /etc/shadow
  action: Block`))
	e.table.Store(decide.New(rs, nil))
	// /etc/shadow is known by identity too: each check reads the event
	// file's identity (inodes.go).
	inodes := protect(rs, func(*hostpolicy.Rule) bool { return false })
	e.inodes.Store(&inodes)
	fd, err := unix.Open("/etc/hostname", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	for b.Loop() {
		if ok, _, _ := e.unconcerned(int32(fd), unix.FAN_OPEN_PERM); !ok {
			b.Fatal("a rule concerns /etc/hostname")
		}
	}
}
