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

	"github.com/armorhost/kubearmor/bpf/monitor"
	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// TestMeasureOverhead reports the latency the tier adds to an exec and to
// an open on a filesystem it watches, as a ratio to no agent: rounds
// alternate between no enforcer and an enforcer (in a child process, as the
// agent runs) with a Block rule on another file of the same filesystem, so
// that every exec and open is decided and allowed. Medians of the rounds.
// It asserts only that the operations work; the figures go to the log.
// Run with FANOTIFY_MEASURE=1 (scripts/bench-fanotify).
func TestMeasureOverhead(t *testing.T) {
	if os.Getenv("FANOTIFY_MEASURE") == "" {
		t.Skip("set FANOTIFY_MEASURE=1 to measure")
	}
	needRoot(t)
	fs := scratchFS(t)
	bin := copyFile(t, "/bin/true", fs+"/bin/true")
	file := writeFile(t, fs+"/data/file", "x")
	other := writeFile(t, fs+"/data/other", "y")
	doc := policy("measure", `  process:
    matchPaths:
    - path: `+fs+`/bin/blocked
  file:
    matchPaths:
    - path: `+other+`
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
	// The third arm adds the monitor as the agent runs it beside this tier
	// (process, file and network traced whatever the visibility, so that
	// the monitor decides what fanotify cannot), in its own process.
	var offOpen, onOpen, monOpen, offExec, onExec, monExec []float64
	for r := 0; r < rounds; r++ {
		offOpen = append(offOpen, perOpen())
		offExec = append(offExec, perExec())
		child := startChild(t, doc, "")
		onOpen = append(onOpen, perOpen())
		onExec = append(onExec, perExec())
		mon := startMonitorChild(t)
		monOpen = append(monOpen, perOpen())
		monExec = append(monExec, perExec())
		mon.kill()
		child.kill()
	}
	mo, no, wo := median(offOpen), median(onOpen), median(monOpen)
	me, ne, we := median(offExec), median(onExec), median(monExec)
	t.Logf("open+close: no agent %.2f µs, fanotify tier %.2f µs: ratio %.2f (+%.2f µs); with the monitor %.2f µs: ratio %.2f (+%.2f µs over the tier)",
		mo/1e3, no/1e3, no/mo, (no-mo)/1e3, wo/1e3, wo/mo, (wo-no)/1e3)
	t.Logf("fork+exec+wait: no agent %.0f µs, fanotify tier %.0f µs: ratio %.2f (+%.0f µs); with the monitor %.0f µs: ratio %.2f (+%.0f µs over the tier)",
		me/1e3, ne/1e3, ne/me, (ne-me)/1e3, we/1e3, we/me, (we-ne)/1e3)
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
	fd, err := unix.Open("/etc/hostname", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	for b.Loop() {
		if !e.unconcerned(int32(fd), unix.FAN_OPEN_PERM) {
			b.Fatal("a rule concerns /etc/hostname")
		}
	}
}
