package sdnotify

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog pings systemd's watchdog only while the event pipeline proves it
// is alive. A timer that pings unconditionally would keep a wedged agent
// "healthy" forever; tying pings to pipeline progress lets WatchdogSec
// restart an agent whose pipeline is stuck.
//
// The pipeline calls Beat whenever it finishes a unit of work and also from
// an idle ticker in the same select loop (every BeatEvery), so a quiet host
// counts as alive but a blocked loop does not.
type Watchdog struct {
	interval time.Duration
	beats    atomic.Uint64
	seen     uint64 // beats at the previous Check; only Check touches it
}

// NewWatchdog reads WATCHDOG_USEC (and WATCHDOG_PID) from the environment.
// Without them the watchdog is disabled: Interval is 0, Run returns at once
// and Beat stays a cheap counter increment.
func NewWatchdog() (*Watchdog, error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return &Watchdog{}, fmt.Errorf("systemd watchdog: %w", err)
	}
	return &Watchdog{interval: interval}, nil
}

// Interval is systemd's watchdog timeout, 0 when disabled.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// BeatEvery is how often the pipeline's idle ticker should call Beat: a
// quarter of the timeout, so a beat lands inside every half-interval Check
// window with room to spare. 0 when disabled.
func (w *Watchdog) BeatEvery() time.Duration { return w.interval / 4 }

// Beat records pipeline progress. Safe from any goroutine.
func (w *Watchdog) Beat() { w.beats.Add(1) }

// Check pings systemd if Beat was called since the previous Check, and
// reports whether it pinged. Run calls it every half interval; it is
// exported so the decision can be driven step by step. Call it from one
// goroutine only (Run's, if Run is used).
func (w *Watchdog) Check() (bool, error) {
	now := w.beats.Load()
	if now == w.seen {
		return false, nil
	}
	w.seen = now
	if err := send(daemon.SdNotifyWatchdog); err != nil {
		return false, err
	}
	return true, nil
}

// Run calls Check every half interval, as sd_watchdog_enabled(3) advises,
// until ctx is done. Send errors go to onError (which may be nil) and do not
// stop the loop. Run returns immediately when the watchdog is disabled.
func (w *Watchdog) Run(ctx context.Context, onError func(error)) {
	if w.interval <= 0 {
		return
	}
	ticker := time.NewTicker(w.interval / 2)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if _, err := w.Check(); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}
