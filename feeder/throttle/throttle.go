// Package throttle limits alerts per policy, as upstream KubeArmor's
// alertThrottling / maxAlertPerSec / throttleSec do, but with one bucket
// per policy name (DefaultPosture is its own bucket) instead of one bucket
// for the whole host, so a noisy default posture cannot silence the alerts
// of an explicit policy.
//
// Within a bucket: alerts are counted in one-second windows. The alert that
// exceeds maxAlertPerSec is turned into the AlertThreshold notice (Type
// SystemEvent, MaxAlertsPerSec, DroppingAlertsInterval set, its other fields
// kept, as upstream), and the bucket's alerts are dropped until throttleSec
// have passed since that window started.
package throttle

import (
	"slices"
	"sync"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"google.golang.org/protobuf/proto"
)

// Config is the user-facing configuration (upstream's keys).
type Config struct {
	Enabled   bool // alertThrottling
	MaxPerSec int  // maxAlertPerSec
	Sec       int  // throttleSec
}

// The notice's Type and Operation, exactly as upstream emits them.
const (
	TypeSystemEvent         = "SystemEvent"
	OperationAlertThreshold = "AlertThreshold"
)

type bucket struct {
	start      time.Time // current window start
	count      int
	throttling bool
	throttled  uint64 // total alerts of this policy not delivered as themselves
}

// Throttle decides, per alert, whether it passes. Safe for concurrent use.
type Throttle struct {
	now func() time.Time

	mu      sync.Mutex
	cfg     Config
	buckets map[string]*bucket
	total   uint64
}

// New returns a throttle using now as its clock (time.Now when nil).
func New(cfg Config, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{now: now, cfg: cfg, buckets: map[string]*bucket{}}
}

// SetConfig changes the limits live; buckets keep their state.
func (t *Throttle) SetConfig(cfg Config) {
	t.mu.Lock()
	t.cfg = cfg
	t.mu.Unlock()
}

// Admit returns the alert to publish and whether to publish anything: the
// alert itself, the AlertThreshold notice that replaces it, or nothing.
// Notices (Type SystemEvent) are never throttled. Admit does not modify a.
func (t *Throttle) Admit(a *kubearmorpb.Alert) (*kubearmorpb.Alert, bool) {
	if a.GetType() == TypeSystemEvent {
		return a, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := t.cfg
	if !cfg.Enabled || cfg.MaxPerSec < 1 {
		return a, true
	}
	now := t.now()
	b := t.buckets[a.GetPolicyName()]
	if b == nil {
		b = &bucket{start: now}
		t.buckets[a.GetPolicyName()] = b
	}
	if b.throttling {
		if now.Sub(b.start) < time.Duration(cfg.Sec)*time.Second {
			b.throttled++
			t.total++
			return nil, false
		}
		b.throttling = false
		b.start, b.count = now, 0
	}
	if now.Sub(b.start) >= time.Second {
		b.start, b.count = now, 0
	}
	b.count++
	if b.count <= cfg.MaxPerSec {
		return a, true
	}
	b.throttling = true
	b.throttled++
	t.total++
	notice := proto.Clone(a).(*kubearmorpb.Alert)
	notice.Type = TypeSystemEvent
	notice.Operation = OperationAlertThreshold
	notice.MaxAlertsPerSec = int32(cfg.MaxPerSec)
	notice.DroppingAlertsInterval = int32(cfg.Sec)
	return notice, true
}

// Stats is a snapshot of the throttle's counters.
type Stats struct {
	Throttled uint64            // alerts not delivered as themselves, all policies
	ByPolicy  map[string]uint64 // the same per policy name
	Active    []string          // policies whose alerts are being dropped now, sorted
}

// Stats returns the counters.
func (t *Throttle) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	st := Stats{Throttled: t.total, ByPolicy: map[string]uint64{}}
	for name, b := range t.buckets {
		if b.throttled > 0 {
			st.ByPolicy[name] = b.throttled
		}
		if b.throttling && now.Sub(b.start) < time.Duration(t.cfg.Sec)*time.Second {
			st.Active = append(st.Active, name)
		}
	}
	slices.Sort(st.Active)
	return st
}
