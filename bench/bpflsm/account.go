package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// The account (-account N, -account-loop L) says where an operation's cost
// over no agent goes, for each agent configuration: the BPF programs' own run time
// (kernel.bpf_stats_enabled), the agent's CPU (its threads' schedstat run
// time), and the rest, which neither counts: the hooks' dispatch
// (trampolines, tracepoint entry), the kernel's work on the programs'
// behalf (ring buffer, task storage, RCU) and the scheduler's switches to
// the agent. With instruction counting a nanosecond is an instruction, so
// the three add up to what the loop pays. The exec budget of issue 19
// (3 points over the empty programs, ~9,000 instructions of the 293 µs
// loop) is judged against this split, and so are the reported calls'
// (setuid with telemetry: x1.5 the record floor).

// accountLoops are the loops an account can split, by name. Stopped is how
// many operations run while the agent is stopped: their records (exec: fork,
// exec and exit, ~500 bytes; the others one record of ~200 at most) must stay
// well under the ring's wakeup mark of 512 KiB, past which every record
// would wake the stopped reader.
var accountLoops = map[string]struct {
	run     func(n int) error
	stopped int
}{
	"exec":   {execLoop, 800},
	"open":   {openLoop, 2000},
	"setuid": {setuidLoop, 2000},
	"getpid": {getpidLoop, 2000},
}

// opAccount is one measurement of one configuration.
type opAccount struct {
	none, agent time.Duration            // wall per op: no agent, then the agent (statistics off)
	stopped     time.Duration            // wall per op with the agent stopped (SIGSTOP): the kernel's share alone
	agentCPU    time.Duration            // the agent's CPU per op (statistics on)
	progs       map[string]time.Duration // each program's run time per op, by name
	runs        map[string]float64       // each program's runs per op
}

func (e opAccount) programs() time.Duration {
	var t time.Duration
	for _, d := range e.progs {
		t += d
	}
	return t
}

// account runs the account of loop name for every agent configuration in
// o.only, o.rounds times, n operations per measurement, and prints medians.
func account(o options, name string, n int, out io.Writer) error {
	l, ok := accountLoops[name]
	if !ok {
		var names []string
		for k := range accountLoops {
			names = append(names, k)
		}
		sort.Strings(names)
		return fmt.Errorf("-account-loop %q: not one of %s", name, strings.Join(names, ", "))
	}
	byConfig := map[string][]opAccount{}
	var ran []config
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			if c.visibility == "" || !strings.Contains(o.only, c.letter) {
				continue
			}
			if round == 1 {
				ran = append(ran, c)
			}
			e, err := accountOnce(o, c, l.run, n, min(n, l.stopped))
			if err != nil {
				return err
			}
			byConfig[c.letter] = append(byConfig[c.letter], e)
			fmt.Fprintf(out, "round %d/%d: %s %s %s, no agent %s, agent stopped %s, programs %s, agent CPU %s\n", round, o.rounds,
				c.label[:3], name, us(e.agent), us(e.none), us(e.stopped), ns(e.programs()), ns(e.agentCPU))
		}
	}
	if len(ran) == 0 {
		return fmt.Errorf("-account needs an agent configuration (0, b, c, t or w) in -configs %q", o.only)
	}
	what := map[string]string{"exec": "fork+exec+wait of " + execPath, "open": "open+close of " + openPath,
		"setuid": "setuid(0) as root", "getpid": "getpid"}[name]
	fmt.Fprintf(out, "\n%s account, %d %s per measurement, medians of %d rounds; ns per op\n", name, n, what, o.rounds)
	fmt.Fprintf(out, "(with instruction counting, instructions): wall over no agent = BPF programs' own run time + agent CPU + rest;\n")
	fmt.Fprintf(out, "stopped: the wall with the agent stopped (its programs still run), the kernel's share alone.\n\n")
	fmt.Fprintf(out, "%-28s %12s %12s %12s %12s %12s %12s\n", "configuration", "no agent", "agent", "stopped", "programs", "agent CPU", "rest")
	for _, c := range ran {
		es := byConfig[c.letter]
		var none, ag, stopped, progs, cpu, rest []time.Duration
		for _, e := range es {
			none, ag, stopped = append(none, e.none), append(ag, e.agent), append(stopped, e.stopped)
			progs, cpu = append(progs, e.programs()), append(cpu, e.agentCPU)
			rest = append(rest, e.agent-e.none-e.programs()-e.agentCPU)
		}
		fmt.Fprintf(out, "%-28s %12s %12s %12s %12s %12s %12s\n", c.label, ns(median(none)), ns(median(ag)),
			ns(median(stopped)), ns(median(progs)), ns(median(cpu)), ns(median(rest)))
		names := map[string]bool{}
		for _, e := range es {
			for name := range e.progs {
				names[name] = true
			}
		}
		type row struct {
			name string
			d    time.Duration
			runs float64
		}
		var rows []row
		for name := range names {
			var ds []time.Duration
			var rs []float64
			for _, e := range es {
				ds, rs = append(ds, e.progs[name]), append(rs, e.runs[name])
			}
			rows = append(rows, row{name, median(ds), median(rs)})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].d > rows[j].d })
		for _, r := range rows {
			fmt.Fprintf(out, "    %-24s %5.2f runs %10s\n", r.name, r.runs, ns(r.d))
		}
	}
	return nil
}

// accountOnce measures configuration c once: the loop with no agent,
// then with the agent (statistics off, for its wall time), with statistics
// on (which cost two clock reads per program run) for the split, and with
// the agent stopped.
func accountOnce(o options, c config, run func(int) error, n, stoppedOps int) (opAccount, error) {
	var e opAccount
	var err error
	if e.none, err = timeOps(run, n); err != nil {
		return e, err
	}
	ag, err := startAgent(o.agent, c.rules, c.visibility, c.args...)
	if err != nil {
		return e, err
	}
	defer ag.stop()
	if e.agent, err = timeOps(run, n); err != nil {
		return e, err
	}
	stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
	if err != nil {
		return e, fmt.Errorf("enable BPF run-time statistics: %w", err)
	}
	pid := ag.cmd.Process.Pid
	before, cpuBefore := programStats(), schedRunTime(pid)
	if err := run(n); err != nil { // no warm-up here: exactly n ops between the two readings
		stats.Close()
		return e, err
	}
	// The reader drains the ring every 10 ms: let it take the last records.
	time.Sleep(50 * time.Millisecond)
	after, cpuAfter := programStats(), schedRunTime(pid)
	stats.Close() // off for the wall time below: each run pays two clock reads with it on
	e.agentCPU = (cpuAfter - cpuBefore) / time.Duration(n)
	e.progs, e.runs = map[string]time.Duration{}, map[string]float64{}
	for id, a := range after {
		b := before[id]
		if a.runs == b.runs {
			continue
		}
		// The fexit path loads one copy of a program per function: summed by name.
		e.progs[a.name] += (a.runtime - b.runtime) / time.Duration(n)
		e.runs[a.name] += float64(a.runs-b.runs) / float64(n)
	}
	// Last, the agent stopped (after SIGCONT it has a backlog to decode,
	// which would weigh on a measurement after it): its programs still
	// run and write records, nobody reads them, and the agent's CPU and
	// the switches to it are gone. Few enough ops that the records stay
	// under the ring's wakeup mark (accountLoops).
	if err := ag.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return e, fmt.Errorf("stop the agent: %w", err)
	}
	e.stopped, err = timeOps(run, stoppedOps)
	if cerr := ag.cmd.Process.Signal(syscall.SIGCONT); err == nil && cerr != nil {
		err = fmt.Errorf("continue the agent: %w", cerr)
	}
	if err != nil {
		return e, err
	}
	return e, nil
}

// timeOps warms up, then times n ops of run.
func timeOps(run func(int) error, n int) (time.Duration, error) {
	if err := run(n / 10); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := run(n); err != nil {
		return 0, err
	}
	return time.Since(start) / time.Duration(n), nil
}

type progStat struct {
	name    string
	runs    uint64
	runtime time.Duration
}

// programStats reads every loaded program's run count and time.
func programStats() map[ebpf.ProgramID]progStat {
	out := map[ebpf.ProgramID]progStat{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded meanwhile
		}
		info, err := p.Info()
		st, err2 := p.Stats()
		if err == nil && err2 == nil {
			out[id] = progStat{info.Name, st.RunCount, st.Runtime}
		}
		p.Close()
	}
}

// schedRunTime is the CPU time of all of a process's threads, from their
// schedstat (nanoseconds, unlike /proc/PID/stat's 10 ms ticks).
func schedRunTime(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(v)
		}
	}
	return sum
}

func ns(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }
