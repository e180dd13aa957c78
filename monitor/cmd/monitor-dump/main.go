// Command monitor-dump runs the system monitor alone and prints each event,
// attributed by the process table, as one JSON line. It is a debugging and
// measuring aid (RSS, event rates), not part of the agent.
//
//	monitor-dump [-visibility process,file,network,capabilities] [-quiet] [-stats 10s]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/monitor"
	"github.com/armorhost/kubearmor/proctable"
)

type line struct {
	*event.Event
	proctable.Attribution
	Result string
}

func main() {
	visibility := flag.String("visibility", "default", "scopes to report: process,file,network,capabilities | default | none")
	failures := flag.String("failures", "capabilities", "scopes whose failed syscalls are reported even when not visible")
	quiet := flag.Bool("quiet", false, "count events, print nothing per event")
	every := flag.Duration("stats", 0, "print counters and RSS to stderr at this interval (0: only at exit)")
	flag.Parse()

	if err := run(*visibility, *failures, *quiet, *every); err != nil {
		fmt.Fprintln(os.Stderr, "monitor-dump:", err)
		os.Exit(1)
	}
}

func run(visibility, failures string, quiet bool, every time.Duration) error {
	vis, err := monitor.ParseVisibility(visibility)
	if err != nil {
		return err
	}
	fail, err := monitor.ParseVisibility(failures)
	if err != nil {
		return err
	}
	m, err := monitor.Open(monitor.Options{Visibility: vis, FailuresOf: fail})
	if err != nil {
		return err
	}
	defer m.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if every > 0 {
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					printStats(m)
				}
			}
		}()
	}

	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	enc := json.NewEncoder(out)
	err = m.Run(ctx, func(ev event.Event) {
		if quiet {
			return
		}
		enc.Encode(line{Event: &ev, Attribution: m.Table().Describe(&ev), Result: event.ResultText(ev.Retval)})
	})
	out.Flush()
	printStats(m)
	return err
}

func printStats(m *monitor.Monitor) {
	fmt.Fprintf(os.Stderr, "%+v table=%+v rss=%s\n", m.Stats(), m.Table().Stats(), rss())
}

func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}
