// Command bpflsm-bench measures what the BPF-LSM enforcer costs the
// operations it hooks. It runs inside the scripts/vmtest guest (started by
// scripts/bench-bpflsm) and, in one boot, alternates configurations round by
// round: (a) nothing attached, the floors (f) empty programs on the
// enforcer's hooks, (d) the same resolving paths and (r) one empty ring
// buffer record per event telemetry reports, (0) the agent with no rules,
// (b) with 10 rules, (c) with 1,000 rules, all three with hostVisibility
// none, and (t) with 10 rules and the default visibility. Each
// configuration runs an exec loop, an open/close loop, a TCP connect loop, a
// setuid(0) loop and a getpid loop; the medians over rounds are compared as
// ratios to (a). It also reports the time from agent start to enforcing,
// the agent's memory and, with -idle, its CPU while idle. Budgets (issue 19)
// are printed below the figures, never enforced.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	agent    string
	rounds   int
	reps     int
	chunk    time.Duration
	ref      time.Duration
	platform string
	only     string // letters of the configurations to run, for diagnosis
	// paired runs (a) again right before every other configuration of a
	// round and compares each with that run, not with the round's first:
	// what a configuration leaves behind (an agent's teardown, the kernel's
	// caches) then weighs on the comparison the same way on both sides.
	paired bool
	settle time.Duration
	idle   time.Duration // idle CPU window; 0: not measured
	// account: ops per measurement of the account (account.go) of
	// accountLoop instead of the rounds of loops; 0: no account.
	account     int
	accountLoop string
}

// config is one of the compared set-ups.
type config struct {
	letter     string
	label      string
	visibility string // the agent's --hostVisibility; "": no agent
	rules      int
	floor      floorKind
	args       []string // more agent flags
}

// The agent's telemetry scopes: none, or the packaged default.
const (
	noVisibility      = "none"
	defaultVisibility = "process,file,network,capabilities"
)

type floorKind int

const (
	noFloor floorKind = iota
	emptyFloor
	dpathFloor
	recordFloor
)

// configs in the order each round runs them. The floors (f, d) and the
// agent with no rules (0) tell apart what merely hooking costs, what
// resolving paths costs, what the running agent costs and what its rules
// cost; the record floor (r) is what reporting every event costs at least,
// which telemetry (t) is measured against.
var configs = []config{
	{"a", "(a) no agent", "", 0, noFloor, nil},
	{"f", "(f) empty programs", "", 0, emptyFloor, nil},
	{"d", "(d) d_path only", "", 0, dpathFloor, nil},
	{"r", "(r) record floor", "", 0, recordFloor, nil},
	{"0", "(0) agent, 0 rules", noVisibility, 0, noFloor, nil},
	{"b", "(b) 10 rules", noVisibility, 10, noFloor, nil},
	{"c", "(c) 1,000 rules", noVisibility, 1000, noFloor, nil},
	{"t", "(t) telemetry, 10 rules", defaultVisibility, 10, noFloor, nil},
	// (w): as (t) with every log built and written (JSON to /dev/null), as
	// when a SIEM pipeline or karmor logs takes them; (t) has nobody
	// watching, and the agent then counts what it need not build.
	{"w", "(w) telemetry watched, 10 rules", defaultVisibility, 10, noFloor, []string{"--logPath", "/dev/null"}},
}

func main() {
	var o options
	flag.StringVar(&o.agent, "agent", "/usr/bin/kubearmor", "agent binary")
	flag.IntVar(&o.rounds, "rounds", 8, "rounds of a,b,c (agent started anew for b and c in each)")
	flag.IntVar(&o.reps, "reps", 4, "chunks of each loop per configuration and round")
	flag.DurationVar(&o.chunk, "chunk", 250*time.Millisecond, "length of one chunk of a loop")
	flag.DurationVar(&o.ref, "ref", 80*time.Millisecond, "length of one reference chunk")
	flag.StringVar(&o.platform, "platform", "", "where this runs, for the report header")
	flag.StringVar(&o.only, "configs", "afdbc", "configurations to run in each round: a (no agent), f (empty programs on the enforcer's hooks), d (the same, resolving paths on exec and open), r (one empty ring buffer record per open, socket, connect, accept4, setuid and exec, fexit where the kernel takes it), 0 (agent, no rules), b (10 rules), c (1,000 rules), all with hostVisibility none, t (10 rules, default hostVisibility), w (as t, every log built and written to /dev/null)")
	flag.DurationVar(&o.idle, "idle", 0, "measure the idle agent's CPU (default visibility, 10 rules) over this window before the rounds; 0: not measured (meaningless with instruction counting)")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "time the agent settles after start before the idle window")
	flag.BoolVar(&o.paired, "paired", false, "run (a) again right before every other configuration and compare each with that run (doubles a round's time)")
	flag.IntVar(&o.account, "account", 0, "instead of the loops, split one loop's cost over no agent into BPF programs, agent CPU and the rest, for each agent configuration in -configs, with this many ops per measurement; 0: off")
	flag.StringVar(&o.accountLoop, "account-loop", "exec", "the loop -account splits: exec, open, setuid or getpid")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bpflsm-bench:", err)
		os.Exit(1)
	}
}

// sample is one chunk: time per op, and the same in reference units (per-op
// time over the reference loop's time per iteration around it).
type sample struct {
	perOp time.Duration
	norm  float64
}

// results holds the chunks of every round: results[config][loop].
type results map[string]map[string][]sample

func (r results) add(cfg, loop string, s sample) {
	if r[cfg] == nil {
		r[cfg] = map[string][]sample{}
	}
	r[cfg][loop] = append(r[cfg][loop], s)
}

// agentFigures are one agent run's start-up, memory and CPU measurements.
type agentFigures struct {
	ready, enforcing time.Duration
	rssKiB, hwmKiB   int
	cpuPercent       float64 // agent CPU time over wall time while the loops ran
	// events is what the agent's pipeline received during its run and
	// dropped what any stage lost (kubearmor status): a configuration
	// whose agent falls behind loses events instead of slowing the loops,
	// which its per-op times alone would not show.
	events, dropped uint64
}

func run(o options, out io.Writer) error {
	if err := prepareFiles(); err != nil {
		return err
	}
	for _, size := range []int{0, 10, 1000} {
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
	if o.account > 0 {
		return account(o, o.accountLoop, o.account, out)
	}
	conn, closeConn, err := connectLoop()
	if err != nil {
		return err
	}
	defer closeConn()
	loops := []loop{{"exec", 1, execLoop}, {"open", 64, openLoop}, conn, {"setuid", 64, setuidLoop}, {"getpid", 256, getpidLoop}}
	fmt.Fprintf(out, "%d rounds of %s; per configuration and round %d chunks of %v per loop, each beside a %v reference chunk\n",
		o.rounds, strings.Join(strings.Split(o.only, ""), ","), o.reps, o.chunk, o.ref)
	idleMs := -1.0 // not measured
	if o.idle > 0 {
		if idleMs, err = measureIdle(o); err != nil {
			return err
		}
		fmt.Fprintf(out, "idle agent: %.2f ms of CPU per second over %v, after %v settling\n", idleMs, o.idle, o.settle)
	}

	res := results{}
	figs := map[string][]agentFigures{}
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			// One line per configuration as it ends, so a stalled run shows where.
			var line strings.Builder
			fmt.Fprintf(&line, "round %d/%d:", round, o.rounds)
			if !strings.Contains(o.only, c.letter) {
				continue
			}
			if o.paired && c.letter != "a" {
				pa := configs[0]
				pa.label = pairLabel(c)
				if err := measure(o, pa, loops, res); err != nil {
					return err
				}
			}
			var ag *agent
			var cpuBefore time.Duration
			detach := func() error { return nil }
			loopsStart := time.Now()
			fmt.Fprintf(&line, " %s", c.label[:3])
			switch {
			case c.floor == recordFloor:
				var via string
				if detach, via, err = attachRecordFloor(); err != nil {
					return err
				}
				fmt.Fprintf(&line, " via %s", via)
			case c.floor != noFloor:
				if detach, err = attachFloor(c.floor == dpathFloor); err != nil {
					return err
				}
			case c.visibility != "":
				ag, err = startAgent(o.agent, c.rules, c.visibility, c.args...)
				if err != nil {
					return err
				}
				cpuBefore = cpuTime(ag.cmd.Process.Pid)
				loopsStart = time.Now()
			}
			err = measure(o, c, loops, res)
			if derr := detach(); err == nil {
				err = derr
			}
			if err != nil {
				if ag != nil {
					_ = ag.stop()
					err = fmt.Errorf("%w (with %d rules; agent log:\n%s)", err, c.rules, ag.logTail())
				}
				return err
			}
			for _, l := range loops {
				last := res[c.label][l.name]
				fmt.Fprintf(&line, " %s %s", l.name, us(medianPerOp(last[len(last)-o.reps:])))
			}
			if ag != nil {
				f := ag.figures
				f.rssKiB, f.hwmKiB = memory(ag.cmd.Process.Pid)
				f.cpuPercent = 100 * float64(cpuTime(ag.cmd.Process.Pid)-cpuBefore) / float64(time.Since(loopsStart))
				var where string
				if f.events, f.dropped, where, err = ag.losses(o.agent); err != nil {
					_ = ag.stop()
					return err
				}
				if err := ag.stop(); err != nil {
					return err
				}
				figs[c.letter] = append(figs[c.letter], f)
				fmt.Fprintf(&line, " (ready %s)", secs(f.ready))
				if where != "" {
					fmt.Fprintf(&line, " (lost: %s)", where)
				}
			}
			fmt.Fprintln(out, line.String())
		}
	}
	report(out, o, loops, res, figs, idleMs)
	return nil
}

// measureIdle starts the agent with the default visibility and 10 rules,
// lets it settle, and returns its CPU time over the idle window in ms per
// second: what it costs with no workload (issue 19: at most upstream's
// 3-4 ms/s). Only meaningful when the guest clock is the host's.
func measureIdle(o options) (float64, error) {
	ag, err := startAgent(o.agent, 10, defaultVisibility)
	if err != nil {
		return 0, fmt.Errorf("idle: %w", err)
	}
	time.Sleep(o.settle)
	pid := ag.cmd.Process.Pid
	before, start := cpuTime(pid), time.Now()
	time.Sleep(o.idle)
	ms := msPerSecond(cpuTime(pid)-before, time.Since(start))
	if err := ag.stop(); err != nil {
		return 0, fmt.Errorf("idle: %w", err)
	}
	return ms, nil
}

// msPerSecond is CPU time over wall time, in ms per second.
func msPerSecond(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(cpu) / float64(time.Millisecond) / wall.Seconds()
}

// measure runs o.reps chunks of every loop, interleaved, each normalised by
// the mean of the reference chunks just before and just after it.
func measure(o options, c config, loops []loop, res results) error {
	for _, l := range loops { // warm caches and the emulator's translations
		if _, err := chunk(l, o.chunk/5); err != nil {
			return err
		}
	}
	ref, err := chunk(referenceLoop, o.ref)
	if err != nil {
		return err
	}
	for rep := 0; rep < o.reps; rep++ {
		for _, l := range loops {
			d, err := chunk(l, o.chunk)
			if err != nil {
				return err
			}
			after, err := chunk(referenceLoop, o.ref)
			if err != nil {
				return err
			}
			res.add(c.label, l.name, sample{perOp: d, norm: float64(d) / (float64(ref+after) / 2)})
			ref = after
		}
	}
	return nil
}

func policyDir(size int) string { return fmt.Sprintf("%s/policies-%d", benchRoot, size) }

// ---- the agent ---------------------------------------------------------------

type agent struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan error
	figures agentFigures
}

var rulesInForce = regexp.MustCompile(`(\d+) rules`)

// startAgent starts the agent on the policy directory of the given size,
// with the given telemetry scopes, and returns once it is enforcing: it logged "kubearmor ready" and an exec of
// the probe program is denied. Both times are measured from just before the
// process starts.
func startAgent(bin string, rules int, visibility string, args ...string) (*agent, error) {
	a := &agent{logPath: fmt.Sprintf("%s/agent-%d-%s.log", benchRoot, rules, visibility), exited: make(chan error, 1)}
	logFile, err := os.Create(a.logPath)
	if err != nil {
		return nil, fmt.Errorf("agent log: %w", err)
	}
	defer logFile.Close()
	a.cmd = exec.Command(bin, append([]string{"--lsm", "bpf", "--hostVisibility", visibility, "--gRPC", "0", "--socket", agentSocket,
		"--policyDir", policyDir(rules)}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	go func() { a.exited <- a.cmd.Wait() }()

	deadline := time.After(3 * time.Minute)
	readyLine := ""
	// With no rules there is nothing to enforce: ready is the last sign.
	for a.figures.ready == 0 || (rules > 0 && a.figures.enforcing == 0) {
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
		if rules > 0 && a.figures.enforcing == 0 {
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

// agentSocket is where the benchmark's agent serves status (root only).
const agentSocket = benchRoot + "/agent.sock"

// losses asks the running agent (bin status --json) what its pipeline
// received and what all its stages dropped: the kernel ring buffer, the
// reader's queue, the pipeline, subscribers and exporters; where says
// which stages lost how many.
func (a *agent) losses(bin string) (received, dropped uint64, where string, err error) {
	out, err := exec.Command(bin, "status", "--json", "--addr", agentSocket).Output()
	if err != nil {
		return 0, 0, "", fmt.Errorf("agent status: %w", err)
	}
	return stageLosses(out)
}

// stageLosses reads status --json: the pipeline stage's received, and the
// sum of every stage's dropped (int64s are JSON strings in protojson).
func stageLosses(statusJSON []byte) (received, dropped uint64, where string, err error) {
	var st struct {
		Stages []struct {
			Name     string `json:"name"`
			Received uint64 `json:"received,string"`
			Dropped  uint64 `json:"dropped,string"`
		} `json:"stages"`
	}
	if err := json.Unmarshal(statusJSON, &st); err != nil {
		return 0, 0, "", fmt.Errorf("agent status: %w", err)
	}
	var lost []string
	for _, s := range st.Stages {
		if s.Name == "pipeline" {
			received = s.Received
		}
		if s.Dropped > 0 {
			dropped += s.Dropped
			lost = append(lost, fmt.Sprintf("%s %d", s.Name, s.Dropped))
		}
	}
	return received, dropped, strings.Join(lost, ", "), nil
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

// cpuTime is a process's user+system CPU time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is [0],
	// utime [11] and stime [12], in clock ticks (USER_HZ, 100 on Linux).
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ---- the report ----------------------------------------------------------------

// number is what median takes: durations, counts and ratios.
type number interface {
	~int | ~int64 | ~uint64 | ~float64
}

// median is the middle value of xs, the mean of the two middle ones for an
// even count, 0 for none; xs is left as it is.
func median[T number](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianPerOp(ss []sample) time.Duration { return time.Duration(medianOf(ss, wallTime)) }

// A measureOf picks one figure of a sample.
type measureOf func(sample) float64

func wallTime(s sample) float64 { return float64(s.perOp) }
func refUnits(s sample) float64 { return s.norm }

func medianOf(ss []sample, m measureOf) float64 {
	var fs []float64
	for _, s := range ss {
		fs = append(fs, m(s))
	}
	return median(fs)
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fus", float64(d)/1e3) }

// overhead is b/a - 1 in percent.
func overhead(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return (b/a - 1) * 100
}

// pairedOverhead compares each round's median with (a)'s in the same round,
// which cancels load changes slower than a round, and returns the median
// and range of those per-round overheads. Chunks are stored round by round,
// reps to a round.
func pairedOverhead(base, other []sample, reps int, m measureOf) (med, lo, hi float64) {
	var per []float64
	for i := 0; (i+1)*reps <= min(len(base), len(other)); i++ {
		a := medianOf(base[i*reps:(i+1)*reps], m)
		b := medianOf(other[i*reps:(i+1)*reps], m)
		per = append(per, overhead(a, b))
	}
	if len(per) == 0 {
		return 0, 0, 0
	}
	lo, hi = per[0], per[0]
	for _, v := range per {
		lo, hi = min(lo, v), max(hi, v)
	}
	return median(per), lo, hi
}

func report(out io.Writer, o options, loops []loop, res results, figs map[string][]agentFigures, idleMs float64) {
	var ran []config
	for _, c := range configs {
		if strings.Contains(o.only, c.letter) {
			ran = append(ran, c)
		}
	}
	base := configs[0].label
	fmt.Fprintln(out)
	fmt.Fprintf(out, "BPF-LSM overhead; %s\n", o.platform)
	fmt.Fprintln(out, "Absolute times are emulated (with instruction counting, 1 ns per instruction); only ratios measured side by side count.")
	fmt.Fprintln(out, "Per loop: median per-op time over all chunks; overhead = median over rounds of (this config's median")
	fmt.Fprintln(out, "per-op time in the round / (a)'s in the same round) - 1; [..] the range of those per-round overheads.")
	if o.paired {
		fmt.Fprintln(out, "Paired: each configuration against the (a) run right before it in the same round.")
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "wall: per-op time. ref: per-op time in reference units (over a user-space loop's time per")
	fmt.Fprintln(out, "iteration just before and after the chunk), which cancels the host's speed swings within a round")
	fmt.Fprintln(out, "and, as the loop shares the CPU with it, the agent's own CPU use (reported below): what the hooks")
	fmt.Fprintln(out, "add to the operation itself.")
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-14s", "loop")
	for _, c := range ran {
		w := 26
		if c.letter == "a" {
			w = 12
		}
		fmt.Fprintf(out, " %-*s", w, c.label[:min(len(c.label), w)])
	}
	fmt.Fprintln(out)
	overWall := map[string]map[string]float64{} // by loop and config, for the budgets
	for _, l := range loops {
		for _, m := range []struct {
			name string
			of   measureOf
			unit func(float64) string
		}{
			{"wall", wallTime, func(v float64) string { return us(time.Duration(v)) }},
			{"ref", refUnits, func(v float64) string { return fmt.Sprintf("%.3g", v) }},
		} {
			sa := res[base][l.name]
			fmt.Fprintf(out, "%-14s", l.name+" "+m.name)
			over := map[string]float64{}
			if m.name == "wall" && len(sa) > 0 {
				overWall[l.name] = over
			}
			for _, c := range ran {
				sc := res[c.label][l.name]
				if c.letter == "a" {
					fmt.Fprintf(out, " %-12s", m.unit(medianOf(sc, m.of)))
					continue
				}
				if pa := res[pairLabel(c)][l.name]; o.paired && len(pa) > 0 {
					sa = pa
				}
				paired, lo, hi := pairedOverhead(sa, sc, o.reps, m.of)
				over[c.letter] = paired
				fmt.Fprintf(out, " %-26s", fmt.Sprintf("%s %+.1f%% [%+.0f..%+.0f]", m.unit(medianOf(sc, m.of)), paired, lo, hi))
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintln(out)
	if strings.ContainsAny(o.only, agentLetters()) {
		reportAgent(out, ran, figs)
	}
	reportBudgets(out, overWall, idleMs)
}

// pairLabel names the (a) run made right before c with -paired.
func pairLabel(c config) string { return "(a) before " + c.letter }

// agentLetters are the configurations that run the agent.
func agentLetters() string {
	var s string
	for _, c := range configs {
		if c.visibility != "" {
			s += c.letter
		}
	}
	return s
}

// reportAgent prints the agent's start-up, memory and CPU by configuration.
func reportAgent(out io.Writer, ran []config, figs map[string][]agentFigures) {
	fmt.Fprintf(out, "%-44s", "agent (medians over rounds)")
	for _, c := range ran {
		if c.visibility != "" {
			fmt.Fprintf(out, " %-20s", c.label[4:])
		}
	}
	fmt.Fprintln(out)
	row := func(name string, f func(agentFigures) string) {
		fmt.Fprintf(out, "%-44s", name)
		for _, c := range ran {
			if c.visibility != "" {
				fmt.Fprintf(out, " %-20s", f(medianFigures(figs[c.letter])))
			}
		}
		fmt.Fprintln(out)
	}
	row(`start -> "kubearmor ready" logged`, func(f agentFigures) string { return secs(f.ready) })
	row("start -> probe exec denied", func(f agentFigures) string {
		if f.enforcing == 0 {
			return "-"
		}
		return secs(f.enforcing)
	})
	row("VmRSS after the loops", func(f agentFigures) string { return mib(f.rssKiB) })
	row("VmHWM (peak RSS)", func(f agentFigures) string { return mib(f.hwmKiB) })
	row("agent CPU while the loops ran", func(f agentFigures) string { return fmt.Sprintf("%.1f%%", f.cpuPercent) })
	row("events received, lost (kubearmor status)", func(f agentFigures) string {
		return fmt.Sprintf("%d, %d", f.events, f.dropped)
	})
	fmt.Fprintln(out)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
func mib(k int) string            { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

// medianFigures takes the median of each figure on its own.
func medianFigures(fs []agentFigures) agentFigures {
	var ready, enf []time.Duration
	var rss, hwm []int
	var cpu []float64
	var events, dropped []uint64
	for _, f := range fs {
		ready, enf = append(ready, f.ready), append(enf, f.enforcing)
		rss, hwm = append(rss, f.rssKiB), append(hwm, f.hwmKiB)
		cpu = append(cpu, f.cpuPercent)
		events, dropped = append(events, f.events), append(dropped, f.dropped)
	}
	return agentFigures{ready: median(ready), enforcing: median(enf), rssKiB: median(rss), hwmKiB: median(hwm),
		cpuPercent: median(cpu), events: median(events), dropped: median(dropped)}
}
