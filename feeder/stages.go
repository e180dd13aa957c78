package feeder

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// The feeder's part of the one accounting of loss (event.Stage): throttling,
// every subscriber's queue, every exporter. The agent's parts (kernel ring
// buffers, reader queues, the pipeline) come from Options.Stages and are
// listed first, in the order events pass through them.

// stageReporter is an exporter that accounts for its own lines: received,
// written, lost, and whether it is failing (export.JSONLines, export.Syslog).
type stageReporter interface{ Stage() event.Stage }

// errUnencodable marks a value that could not be encoded for a stream: it is
// dropped for that subscriber and counted, and the stream goes on.
var errUnencodable = errors.New("cannot encode")

// accounting holds the feeder's counts that no fan-out topic keeps.
type accounting struct {
	alertsIn  atomic.Uint64 // alerts handed to PublishAlert
	throttled atomic.Uint64 // of those, not published (throttled)

	mu          sync.Mutex
	unencodable map[subKey]uint64       // per subscriber: values taken but not encodable
	sinks       map[string]*sinkAccount // running exporters by name
}

type subKey struct {
	kind string
	id   uint64
}

// sinkAccount is the accounting of an exporter that keeps none of its own:
// every write that returned an error is counted as one lost line.
type sinkAccount struct {
	reporter      stageReporter // nil: counted by RunSink
	writes, fails atomic.Uint64
}

func (sa *sinkAccount) stage() event.Stage {
	if sa.reporter != nil {
		return sa.reporter.Stage()
	}
	w, f := sa.writes.Load(), sa.fails.Load()
	return event.Stage{Received: w, Passed: w - f, Dropped: f}
}

func (a *accounting) addUnencodable(k subKey) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unencodable == nil {
		a.unencodable = map[subKey]uint64{}
	}
	a.unencodable[k]++
	return a.unencodable[k]
}

func (a *accounting) addSink(name string, sa *sinkAccount) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sinks == nil {
		a.sinks = map[string]*sinkAccount{}
	}
	a.sinks[name] = sa
}

func (a *accounting) removeSink(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sinks, name)
}

// kindOf names the topic a queued value belongs to.
func kindOf(v any) string {
	switch v.(type) {
	case *outgoing[*kubearmorpb.Alert]:
		return "alerts"
	case *outgoing[*kubearmorpb.Log]:
		return "logs"
	}
	return "messages"
}

// undeliverable counts a value one subscriber took but could not be sent
// (it could not be encoded): a drop for that subscriber, and the stream
// goes on.
func (s *Server) undeliverable(v any, id uint64, err error) {
	n := s.acct.addUnencodable(subKey{kindOf(v), id})
	if n == 1 || n%1000 == 0 {
		s.log.Error("a message could not be encoded for a subscriber: dropped and counted", "stream", kindOf(v), "subscriber", id, "droppedSoFar", n, "err", err)
	}
}

// Stages lists every stage of the event path with its counts: the agent's
// (Options.Stages), then throttling, each subscriber and each exporter.
func (s *Server) Stages() []event.Stage {
	var out []event.Stage
	if s.opts.Stages != nil {
		out = append(out, s.opts.Stages()...)
	}
	in, thr := s.acct.alertsIn.Load(), s.acct.throttled.Load()
	th := event.Stage{Name: "throttle (alerts)", Received: in, Passed: in - thr, Dropped: thr}
	if active := s.throttle.Stats().Active; len(active) > 0 {
		th.State = "throttling now: " + strings.Join(active, ", ")
	}
	out = append(out, th)

	s.acct.mu.Lock()
	unenc := make(map[subKey]uint64, len(s.acct.unencodable))
	for k, v := range s.acct.unencodable {
		unenc[k] = v
	}
	sinkNames := make([]string, 0, len(s.acct.sinks))
	sinks := make(map[string]*sinkAccount, len(s.acct.sinks))
	for name, sa := range s.acct.sinks {
		sinkNames = append(sinkNames, name)
		sinks[name] = sa
	}
	s.acct.mu.Unlock()

	for _, t := range []fanout.Stats{s.alerts.Stats(), s.logs.Stats(), s.messages.Stats()} {
		for _, sub := range t.Subscribers {
			lost := unenc[subKey{t.Name, sub.ID}]
			st := event.Stage{
				Name:     fmt.Sprintf("subscriber %s %s #%d", t.Name, sub.Name, sub.ID),
				Received: sub.Delivered + sub.Dropped + uint64(sub.Queued),
				Passed:   sub.Delivered - min(lost, sub.Delivered),
				Dropped:  sub.Dropped + lost,
				Pending:  uint64(sub.Queued),
			}
			var why []string
			if sub.Dropped > 0 {
				why = append(why, fmt.Sprintf("%d lost to a full queue (reads too slowly)", sub.Dropped))
			}
			if lost > 0 {
				why = append(why, fmt.Sprintf("%d could not be encoded", lost))
			}
			st.State = strings.Join(why, "; ")
			out = append(out, st)
		}
	}
	sort.Strings(sinkNames)
	for _, name := range sinkNames {
		st := sinks[name].stage()
		st.Name = "exporter " + name
		out = append(out, st)
	}
	return out
}

// stagesProto converts stages for `kubearmor status`.
func stagesProto(stages []event.Stage) []*statuspb.Stage {
	out := make([]*statuspb.Stage, 0, len(stages))
	for _, st := range stages {
		p := &statuspb.Stage{
			Name: event.ValidText(st.Name), Received: st.Received, Passed: st.Passed, Dropped: st.Dropped,
			Filtered: st.Filtered, Pending: st.Pending, State: event.ValidText(st.State),
		}
		if !st.FailingSince.IsZero() {
			p.FailingSinceUnix = st.FailingSince.Unix()
		}
		out = append(out, p)
	}
	return out
}

// writeStageMetrics writes one family per counter, one sample per stage.
func writeStageMetrics(m *MetricsWriter, stages []event.Stage) {
	for _, f := range []struct {
		name, kind, help string
		value            func(event.Stage) float64
	}{
		{"kubearmor_stage_received_total", "counter", "Events (or lines) that reached each stage of the event path.", func(s event.Stage) float64 { return float64(s.Received) }},
		{"kubearmor_stage_passed_total", "counter", "Events each stage handed on.", func(s event.Stage) float64 { return float64(s.Passed) }},
		{"kubearmor_stage_dropped_total", "counter", "Events lost at each stage, each one counted.", func(s event.Stage) float64 { return float64(s.Dropped) }},
		{"kubearmor_stage_filtered_total", "counter", "Events a stage deliberately did not hand on (not a loss).", func(s event.Stage) float64 { return float64(s.Filtered) }},
		{"kubearmor_stage_pending", "gauge", "Events waiting in each stage (queued, buffered).", func(s event.Stage) float64 { return float64(s.Pending) }},
		{"kubearmor_stage_failing_since_seconds", "gauge", "Unix time since which a stage (an exporter) has been failing; 0 when healthy.", func(s event.Stage) float64 {
			if s.FailingSince.IsZero() {
				return 0
			}
			return float64(s.FailingSince.Unix())
		}},
	} {
		m.Family(f.name, f.kind, f.help)
		for _, st := range stages {
			m.Sample(f.name, f.value(st), "stage", event.ValidText(st.Name))
		}
	}
}

// watchSink logs an exporter's changes of state: once when it starts
// failing, once when it recovers, with the lines lost so far.
type sinkWatch struct {
	failing bool
	since   time.Time
}

func (s *Server) watchSink(name string, sa *sinkAccount, w *sinkWatch) {
	if sa.reporter == nil {
		return
	}
	st := sa.reporter.Stage()
	switch failing := st.State != ""; {
	case failing && !w.failing:
		w.failing, w.since = true, st.FailingSince
		s.log.Error("exporter failing: lines are lost (counted) until it recovers; retrying with backoff", "exporter", name, "state", st.State, "linesLost", st.Dropped)
	case !failing && w.failing:
		w.failing = false
		s.log.Info("exporter recovered", "exporter", name, "failedFor", s.now().Sub(w.since).Round(time.Millisecond).String(), "linesLost", st.Dropped)
	}
}
