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

// The exec account (-account N) says where an exec's cost over no agent
// goes, for each agent configuration: the BPF programs' own run time
// (kernel.bpf_stats_enabled), the agent's CPU (its threads' schedstat run
// time), and the rest, which neither counts: the hooks' dispatch
// (trampolines, tracepoint entry), the kernel's work on the programs'
// behalf (ring buffer, task storage, RCU) and the scheduler's switches to
// the agent. With instruction counting a nanosecond is an instruction, so
// the three add up to what the exec loop pays. The exec budget of issue 19
// (3 points over the empty programs, ~9,000 instructions of the 293 µs
// loop) is judged against this split.

// execAccount is one measurement of one configuration.
type execAccount struct {
	none, agent time.Duration            // wall per exec: no agent, then the agent (statistics off)
	stopped     time.Duration            // wall per exec with the agent stopped (SIGSTOP): the kernel's share alone
	agentCPU    time.Duration            // the agent's CPU per exec (statistics on)
	progs       map[string]time.Duration // each program's run time per exec, by name
	runs        map[string]float64       // each program's runs per exec
}

func (e execAccount) programs() time.Duration {
	var t time.Duration
	for _, d := range e.progs {
		t += d
	}
	return t
}

// account runs the exec account for every agent configuration in o.only,
// o.rounds times, n execs per measurement, and prints medians.
func account(o options, n int, out io.Writer) error {
	byConfig := map[string][]execAccount{}
	var ran []config
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			if c.visibility == "" || !strings.Contains(o.only, c.letter) {
				continue
			}
			if round == 1 {
				ran = append(ran, c)
			}
			e, err := accountOnce(o, c, n)
			if err != nil {
				return err
			}
			byConfig[c.letter] = append(byConfig[c.letter], e)
			fmt.Fprintf(out, "round %d/%d: %s exec %s, no agent %s, agent stopped %s, programs %s, agent CPU %s\n", round, o.rounds,
				c.label[:3], us(e.agent), us(e.none), us(e.stopped), ns(e.programs()), ns(e.agentCPU))
		}
	}
	if len(ran) == 0 {
		return fmt.Errorf("-account needs an agent configuration (0, b, c or t) in -configs %q", o.only)
	}
	fmt.Fprintf(out, "\nExec account, %d fork+exec+wait of %s per measurement, medians of %d rounds; ns per exec\n", n, execPath, o.rounds)
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
			rows = append(rows, row{name, median(ds), medianFloat(rs)})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].d > rows[j].d })
		for _, r := range rows {
			fmt.Fprintf(out, "    %-24s %5.2f runs %10s\n", r.name, r.runs, ns(r.d))
		}
	}
	return nil
}

// accountOnce measures configuration c once: the exec loop with no agent,
// then with the agent (statistics off, for its wall time), with statistics
// on (which cost two clock reads per program run) for the split, and with
// the agent stopped.
func accountOnce(o options, c config, n int) (execAccount, error) {
	var e execAccount
	var err error
	if e.none, err = timeExecs(n); err != nil {
		return e, err
	}
	ag, err := startAgent(o.agent, c.rules, c.visibility)
	if err != nil {
		return e, err
	}
	defer ag.stop()
	if e.agent, err = timeExecs(n); err != nil {
		return e, err
	}
	stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
	if err != nil {
		return e, fmt.Errorf("enable BPF run-time statistics: %w", err)
	}
	pid := ag.cmd.Process.Pid
	before, cpuBefore := programStats(), schedRunTime(pid)
	if err := execLoop(n); err != nil { // no warm-up here: exactly n execs between the two readings
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
	// the switches to it are gone. Few enough execs that the records stay
	// under the ring's wakeup mark (an eighth of 4 MiB), past which every
	// record would wake the reader.
	if err := ag.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return e, fmt.Errorf("stop the agent: %w", err)
	}
	e.stopped, err = timeExecs(stoppedExecs(n))
	if cerr := ag.cmd.Process.Signal(syscall.SIGCONT); err == nil && cerr != nil {
		err = fmt.Errorf("continue the agent: %w", cerr)
	}
	if err != nil {
		return e, err
	}
	return e, nil
}

// stoppedExecs is how many execs run while the agent is stopped: at most
// 800, whose records (fork, exec, exit: ~500 bytes with telemetry's few
// more) stay well under the ring's wakeup mark of 512 KiB.
func stoppedExecs(n int) int { return min(n, 800) }

// timeExecs warms up, then times n execs of the loop's program.
func timeExecs(n int) (time.Duration, error) {
	if err := execLoop(n / 10); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := execLoop(n); err != nil {
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
