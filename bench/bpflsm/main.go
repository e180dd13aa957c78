// Command bpflsm-bench measures what the BPF-LSM enforcer costs the
// operations it hooks. It runs inside the scripts/vmtest guest (started by
// scripts/bench-bpflsm) and, in one boot, alternates three configurations
// round by round: (a) no agent, (b) the agent with 10 rules, (c) the agent
// with 1,000 rules. Each configuration runs an exec loop, an open/close loop
// and a TCP connect loop; the medians over rounds are compared as ratios to
// (a). It also reports the time from agent start to enforcing and the
// agent's memory. Budgets are printed beside the figures, never enforced.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	agent    string
	rounds   int
	target   time.Duration
	counts   map[string]int
	platform string
}

// config is one of the compared set-ups; rules == 0 means no agent.
type config struct {
	label string
	rules int
}

var configs = []config{{"(a) no agent", 0}, {"(b) 10 rules", 10}, {"(c) 1,000 rules", 1000}}

// budgets are issue 3's: overhead with 10 rules, per loop.
var budgets = map[string]float64{"exec": 3, "open": 5, "connect": 5}

const extraPointsFor1000 = 1.0

func main() {
	o := options{counts: map[string]int{}}
	flag.StringVar(&o.agent, "agent", "/usr/bin/kubearmor", "agent binary")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of a,b,c")
	flag.DurationVar(&o.target, "target", 2*time.Second, "length of one loop run when its count is calibrated")
	flag.StringVar(&o.platform, "platform", "", "where this runs, for the report header")
	execN := flag.Int("exec", 0, "exec operations per run (0: calibrate to -target)")
	openN := flag.Int("open", 0, "open/close operations per run (0: calibrate)")
	connN := flag.Int("connect", 0, "connect operations per run (0: calibrate)")
	flag.Parse()
	o.counts["exec"], o.counts["open"], o.counts["connect"] = *execN, *openN, *connN
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bpflsm-bench:", err)
		os.Exit(1)
	}
}

// samples holds per-op times: samples[config][loop] has one entry per round.
type samples map[string]map[string][]time.Duration

// agentFigures are one agent run's start-up and memory measurements.
type agentFigures struct {
	ready, enforcing time.Duration
	rssKiB, hwmKiB   int
}

func run(o options, out io.Writer) error {
	if err := prepareFiles(); err != nil {
		return err
	}
	for _, size := range []int{10, 1000} {
		n, err := writePolicies(policyDir(size), size)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("generated %d rules, want %d", n, size)
		}
	}
	if err := execOnce(probePath); err != nil {
		return fmt.Errorf("the probe must run without an agent: %w", err)
	}
	conn, closeConn, err := connectLoop()
	if err != nil {
		return err
	}
	defer closeConn()
	loops := []loop{{"exec", execLoop}, {"open", openLoop}, conn}

	for _, l := range loops {
		if o.counts[l.name] == 0 {
			n, err := calibrate(l, o.target)
			if err != nil {
				return err
			}
			o.counts[l.name] = n
		}
	}
	fmt.Fprintf(out, "ops per run: exec %d, open %d, connect %d; %d rounds of a,b,c\n",
		o.counts["exec"], o.counts["open"], o.counts["connect"], o.rounds)

	s := samples{}
	figs := map[int][]agentFigures{}
	for round := 1; round <= o.rounds; round++ {
		var line strings.Builder
		fmt.Fprintf(&line, "round %d/%d:", round, o.rounds)
		for _, c := range configs {
			var ag *agent
			if c.rules > 0 {
				ag, err = startAgent(o.agent, c.rules)
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(&line, " %s", c.label[:3])
			for _, l := range loops {
				d, err := perOp(l, o.counts[l.name])
				if err != nil {
					if ag != nil {
						ag.stop()
						err = fmt.Errorf("%w (with %d rules; agent log:\n%s)", err, c.rules, ag.logTail())
					}
					return err
				}
				if s[c.label] == nil {
					s[c.label] = map[string][]time.Duration{}
				}
				s[c.label][l.name] = append(s[c.label][l.name], d)
				fmt.Fprintf(&line, " %s %s", l.name, us(d))
			}
			if ag != nil {
				f := ag.figures
				f.rssKiB, f.hwmKiB = memory(ag.cmd.Process.Pid)
				if err := ag.stop(); err != nil {
					return err
				}
				figs[c.rules] = append(figs[c.rules], f)
			}
		}
		fmt.Fprintln(out, line.String())
	}
	report(out, o, loops, s, figs)
	return nil
}

func policyDir(size int) string { return fmt.Sprintf("%s/policies-%d", benchRoot, size) }

// calibrate finds a count that makes one run of l last about target.
func calibrate(l loop, target time.Duration) (int, error) {
	n := 1
	for {
		start := time.Now()
		if err := l.run(n); err != nil {
			return 0, fmt.Errorf("calibrate %s: %w", l.name, err)
		}
		took := time.Since(start)
		if took >= target/8 {
			return max(int(float64(n)*float64(target)/float64(took)), 1), nil
		}
		n *= 2
	}
}

// ---- the agent ---------------------------------------------------------------

type agent struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan error
	figures agentFigures
}

var rulesInForce = regexp.MustCompile(`(\d+) rules`)

// startAgent starts the agent on the policy directory of the given size and
// returns once it is enforcing: it logged "kubearmor ready" and an exec of
// the probe program is denied. Both times are measured from just before the
// process starts.
func startAgent(bin string, rules int) (*agent, error) {
	a := &agent{logPath: fmt.Sprintf("%s/agent-%d.log", benchRoot, rules), exited: make(chan error, 1)}
	logFile, err := os.Create(a.logPath)
	if err != nil {
		return nil, fmt.Errorf("agent log: %w", err)
	}
	defer logFile.Close()
	a.cmd = exec.Command(bin, "--lsm", "bpf", "--hostVisibility", "none", "--gRPC", "0", "--socket", "",
		"--policyDir", policyDir(rules))
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	go func() { a.exited <- a.cmd.Wait() }()

	deadline := time.After(3 * time.Minute)
	readyLine := ""
	for a.figures.ready == 0 || a.figures.enforcing == 0 {
		select {
		case err := <-a.exited:
			return nil, fmt.Errorf("agent exited during start-up (%v):\n%s", err, a.logTail())
		case <-deadline:
			a.stop()
			return nil, fmt.Errorf("agent not enforcing after 3 minutes:\n%s", a.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if a.figures.ready == 0 {
			if line := a.logLine("kubearmor ready"); line != "" {
				a.figures.ready = time.Since(start)
				readyLine = line
			}
		}
		if a.figures.enforcing == 0 {
			err := execOnce(probePath)
			if errors.Is(err, syscall.EACCES) {
				a.figures.enforcing = time.Since(start)
			} else if err != nil {
				a.stop()
				return nil, fmt.Errorf("probe: %w", err)
			}
		}
	}
	m := rulesInForce.FindStringSubmatch(readyLine)
	if !strings.Contains(readyLine, "BPFLSM") || m == nil || m[1] != strconv.Itoa(rules) {
		a.stop()
		return nil, fmt.Errorf("agent is not enforcing %d rules with BPF-LSM: %s", rules, readyLine)
	}
	return a, nil
}

// stop ends the agent with SIGTERM, as systemd would; it must exit cleanly.
func (a *agent) stop() error {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.exited:
		if err != nil {
			return fmt.Errorf("agent stopped with %v:\n%s", err, a.logTail())
		}
		return nil
	case <-time.After(time.Minute):
		_ = a.cmd.Process.Kill()
		<-a.exited
		return fmt.Errorf("agent ignored SIGTERM for a minute:\n%s", a.logTail())
	}
}

func (a *agent) logLine(text string) string {
	data, _ := os.ReadFile(a.logPath)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte(text)) {
			return string(line)
		}
	}
	return ""
}

func (a *agent) logTail() string {
	data, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return "  | " + strings.Join(lines[max(len(lines)-20, 0):], "\n  | ")
}

// memory reads VmRSS and VmHWM (KiB) from /proc/PID/status.
func memory(pid int) (rss, hwm int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// ---- the report ----------------------------------------------------------------

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d)/1e3) }

// overhead is b/a - 1 in percent.
func overhead(a, b time.Duration) float64 {
	if a == 0 {
		return 0
	}
	return (float64(b)/float64(a) - 1) * 100
}

// roundRange is the range of per-round overheads, a hint of the noise.
func roundRange(a, b []time.Duration) string {
	lo, hi := 0.0, 0.0
	for i := range min(len(a), len(b)) {
		r := overhead(a[i], b[i])
		if i == 0 || r < lo {
			lo = r
		}
		if i == 0 || r > hi {
			hi = r
		}
	}
	return fmt.Sprintf("[%+.0f..%+.0f]", lo, hi)
}

func verdict(ok bool) string {
	if ok {
		return "within"
	}
	return "OVER"
}

func report(out io.Writer, o options, loops []loop, s samples, figs map[int][]agentFigures) {
	a, b, c := configs[0].label, configs[1].label, configs[2].label
	fmt.Fprintln(out)
	fmt.Fprintf(out, "BPF-LSM overhead, medians of %d rounds (a,b,c alternating); %s\n", o.rounds, o.platform)
	fmt.Fprintln(out, "Absolute times are emulated; the ratios, measured side by side in one boot, are what count.")
	fmt.Fprintln(out, "Overhead = median(config)/median(a) - 1; [..] = range of per-round overheads.")
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-8s %-12s %-27s %-27s %s\n", "loop", "(a) no agent", "(b) 10 rules", "(c) 1,000 rules", "budget: b / c-b")
	for _, l := range loops {
		ma, mb, mc := median(s[a][l.name]), median(s[b][l.name]), median(s[c][l.name])
		ob, oc := overhead(ma, mb), overhead(ma, mc)
		fmt.Fprintf(out, "%-8s %-12s %-27s %-27s <=%.0f%% %s / <=%.0fpp %s (%+.1fpp)\n", l.name, us(ma),
			fmt.Sprintf("%s %+.1f%% %s", us(mb), ob, roundRange(s[a][l.name], s[b][l.name])),
			fmt.Sprintf("%s %+.1f%% %s", us(mc), oc, roundRange(s[a][l.name], s[c][l.name])),
			budgets[l.name], verdict(ob <= budgets[l.name]), extraPointsFor1000, verdict(oc-ob <= extraPointsFor1000), oc-ob)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-40s %-14s %s\n", "agent (medians of "+strconv.Itoa(o.rounds)+" starts)", "10 rules", "1,000 rules")
	row := func(name string, f func(agentFigures) string) {
		fmt.Fprintf(out, "%-40s %-14s %s\n", name, f(medianFigures(figs[10])), f(medianFigures(figs[1000])))
	}
	row(`start -> "kubearmor ready" logged`, func(f agentFigures) string { return secs(f.ready) })
	row("start -> probe exec denied", func(f agentFigures) string { return secs(f.enforcing) })
	row("VmRSS after the loops", func(f agentFigures) string { return mib(f.rssKiB) })
	row("VmHWM (peak RSS)", func(f agentFigures) string { return mib(f.hwmKiB) })
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
func mib(k int) string            { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

// medianFigures takes the median of each figure on its own.
func medianFigures(fs []agentFigures) agentFigures {
	var ready, enf, rss, hwm []time.Duration
	for _, f := range fs {
		ready, enf = append(ready, f.ready), append(enf, f.enforcing)
		rss, hwm = append(rss, time.Duration(f.rssKiB)), append(hwm, time.Duration(f.hwmKiB))
	}
	return agentFigures{ready: median(ready), enforcing: median(enf), rssKiB: int(median(rss)), hwmKiB: int(median(hwm))}
}
