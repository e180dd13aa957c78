package export

import (
	"sync"
	"time"

	"github.com/armorhost/kubearmor/event"
)

// Backoff between attempts once an exporter fails: a full disk or an
// unreachable log server is retried on its own, soon at first and then at
// most every maxBackoff, without a SIGHUP. Lines that arrive while the
// exporter waits are not attempted: they are counted as lost.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// health is an exporter's accounting and failure state: lines received,
// written and lost, and since when (and why) it is failing. Safe for
// concurrent use: the exporter's goroutine writes, status reads.
type health struct {
	now func() time.Time

	mu       sync.Mutex
	received uint64
	written  uint64
	lost     uint64
	pending  uint64
	err      error // the last failure; nil when healthy
	since    time.Time
	retryAt  time.Time
	backoff  time.Duration
}

func (h *health) clock() time.Time {
	if h.now == nil {
		return time.Now()
	}
	return h.now()
}

// receive counts n lines handed to the exporter and says whether they may
// be attempted now; if not (failing, and the next attempt is not due) they
// are counted as lost.
func (h *health) receive(n uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.received += n
	if h.err != nil && h.clock().Before(h.retryAt) {
		h.lost += n
		return false
	}
	return true
}

// due says whether an attempt may be made now.
func (h *health) due() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err == nil || !h.clock().Before(h.retryAt)
}

// failing says whether the last attempt failed.
func (h *health) failing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err != nil
}

func (h *health) setPending(n uint64) {
	h.mu.Lock()
	h.pending = n
	h.mu.Unlock()
}

// wrote records written lines; a write that succeeds ends a failure.
func (h *health) wrote(n uint64) (recovered bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.written += n
	if h.err != nil {
		h.err, h.since, h.backoff = nil, time.Time{}, 0
		return true
	}
	return false
}

// failed records n lines lost to err and schedules the next attempt.
func (h *health) failed(n uint64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lost += n
	now := h.clock()
	if h.err == nil {
		h.since, h.backoff = now, minBackoff
	} else {
		h.backoff = min(2*h.backoff, maxBackoff)
	}
	h.err = err
	h.retryAt = now.Add(h.backoff)
}

// drop counts n lines lost without an attempt.
func (h *health) drop(n uint64) {
	h.mu.Lock()
	h.lost += n
	h.mu.Unlock()
}

// Stage is the exporter's accounting for `kubearmor status` and metrics
// (the feeder names it).
func (h *health) Stage() event.Stage {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := event.Stage{Received: h.received, Passed: h.written, Dropped: h.lost, Pending: h.pending}
	if h.err != nil {
		st.State = "failing: " + h.err.Error()
		st.FailingSince = h.since
	}
	return st
}
