package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// supervisor runs the daemon's parts, each on its own goroutine. A part is
// either essential (the enforcer's and the monitor's kernel readers, the
// feeder, the policy watcher, the pipeline): the daemon is not doing its job
// without it, so its stop, with an error or without, while the daemon runs
// ends the daemon with that error (Run returns it, main exits 1 and systemd
// restarts the agent). Or it is optional (container runtimes, exporters,
// metrics): its error is logged and the daemon goes on.
type supervisor struct {
	ctx      context.Context
	log      func() *slog.Logger // the agent's logger of the moment
	wg       sync.WaitGroup
	failed   chan error  // the first essential part that stopped
	stopping atomic.Bool // the daemon is stopping: parts end as they are closed
}

func newSupervisor(ctx context.Context, log func() *slog.Logger) *supervisor {
	return &supervisor{ctx: ctx, log: log, failed: make(chan error, 1)}
}

// errStopped is the failure of an essential part that returned no error
// while the daemon was running: a reader that ended quietly is as dead as
// one that failed.
var errStopped = errors.New("stopped unexpectedly")

// essential runs a part the daemon cannot do without.
func (s *supervisor) essential(name string, f func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := f(s.ctx)
		if s.ctx.Err() != nil || s.stopping.Load() {
			return // the daemon is stopping: every part ends
		}
		if err == nil {
			err = errStopped
		}
		err = fmt.Errorf("%s: %w", name, err)
		s.log().Error("a part the daemon depends on stopped; stopping kubearmor", "part", name, "err", err)
		select {
		case s.failed <- err:
		default: // another part failed first; that one is reported
		}
	}()
}

// optional runs a part whose failure is reported and survived.
func (s *supervisor) optional(name string, f func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log().Error(name+" stopped", "err", err)
		}
	}()
}

// stop says the daemon is stopping. Run calls it before it closes the
// enforcer and the monitor, whose readers then return before ctx ends.
func (s *supervisor) stop() { s.stopping.Store(true) }

// Failed delivers the first essential part's failure.
func (s *supervisor) Failed() <-chan error { return s.failed }

// wait blocks until every part has returned.
func (s *supervisor) wait() { s.wg.Wait() }

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the limit in force. The Go runtime does the same at start (since Go 1.19),
// so this mostly confirms it; it must have happened before the feeder
// listens, since the feeder's connection bound is derived from it, and every
// kernel reader needs descriptors (the fanotify tier one per pending event).
// The unit file sets the hard limit (LimitNOFILE=).
func raiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = want.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, fmt.Errorf("raise RLIMIT_NOFILE from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = want
	}
	return lim.Cur, nil
}

// FileLimit is the RLIMIT_NOFILE soft limit Run raised and runs under (0
// before Run): bounds on connections are derived from it.
func (a *Agent) FileLimit() uint64 { return a.fileLimit.Load() }
