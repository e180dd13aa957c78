package event

import "time"

// Stage is the accounting of one step events pass through on their way
// from the kernel to a subscriber or exporter: a kernel ring buffer, a
// reader queue, the pipeline, throttling, one subscriber's queue, one
// exporter. Every part that can lose an event reports its stages, and
// `kubearmor status` and metrics show them all, so that a loss anywhere is
// counted in one place.
//
// Once the stage is quiet, Received = Passed + Dropped + Filtered + Pending.
type Stage struct {
	Name     string
	Received uint64 // items that reached this stage
	Passed   uint64 // items handed on to the next stage
	Dropped  uint64 // items lost here, each one counted
	Filtered uint64 // items deliberately not handed on (not events, rate-limited duplicates reported in a later event)
	Pending  uint64 // items waiting here (queued, buffered)
	// State is empty when the stage is healthy, else why it loses items
	// ("failing: write /var/log/x: no space left on device").
	State string
	// FailingSince is when the stage started failing; zero when healthy.
	FailingSince time.Time
}
