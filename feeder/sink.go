package feeder

import (
	"context"
	"time"

	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// Sink is an exporter: a JSON-lines file, syslog, ... RunSink calls it from
// one goroutine, so it needs no locking of its own against RunSink. A sink
// that also has `Stage() event.Stage` accounts for its own lines (received,
// written, lost, failing since) and is shown with them in status and
// metrics; for any other sink, every write that returns an error counts as
// one lost line.
type Sink interface {
	WriteAlert(*kubearmorpb.Alert) error
	WriteLog(*kubearmorpb.Log) error
	// Flush is called whenever the sink has caught up (its queue is empty),
	// so it can buffer writes in between.
	Flush() error
}

// SinkOptions say what a sink receives.
type SinkOptions struct {
	Alerts, Logs bool
	QueueDepth   int // default: the server's QueueDepth
	// Subscribed, when set, is called once the sink's queues are
	// subscribed (or RunSink failed to subscribe): nothing published
	// after it returns is missed. The agent waits for it before reading
	// the kernel, whose ring buffer may hold verdicts from while no agent
	// ran.
	Subscribed func()
}

// RunSink feeds a sink from its own queues until ctx ends. It is just
// another subscriber: a slow disk or syslog server loses its own messages
// (counted, and written to the sink as drop notices) and never blocks the
// pipeline. Write errors are counted and logged at most once a minute, and
// a sink's changes of state (failing, recovered) once each; RunSink keeps
// going.
func (s *Server) RunSink(ctx context.Context, name string, sink Sink, o SinkOptions) error {
	depth := o.QueueDepth
	if depth <= 0 {
		depth = s.opts.QueueDepth
	}
	// A nil channel never fires, so an unused kind costs nothing.
	var alerts *fanout.Subscription[*outgoing[*kubearmorpb.Alert]]
	var logs *fanout.Subscription[*outgoing[*kubearmorpb.Log]]
	var alertC <-chan *outgoing[*kubearmorpb.Alert]
	var logC <-chan *outgoing[*kubearmorpb.Log]
	var alertWake, logWake <-chan struct{}
	var err error
	defer func() {
		if o.Subscribed != nil {
			o.Subscribed()
		}
	}()
	if o.Alerts {
		if alerts, err = s.alerts.Subscribe(name, depth); err != nil {
			return err
		}
		defer alerts.Close()
		alertC, alertWake = alerts.C(), alerts.Wake()
	}
	if o.Logs {
		if logs, err = s.logs.Subscribe(name, depth); err != nil {
			return err
		}
		defer logs.Close()
		logC, logWake = logs.C(), logs.Wake()
	}
	acct := &sinkAccount{}
	acct.reporter, _ = sink.(stageReporter)
	s.acct.addSink(name, acct)
	defer s.acct.removeSink(name)
	if o.Subscribed != nil {
		o.Subscribed()
		o.Subscribed = nil
	}
	var watch sinkWatch
	var lastReport time.Time
	check := func(err error) {
		if err == nil {
			return
		}
		acct.fails.Add(1)
		s.mu.Lock()
		s.sinkErrors++
		n := s.sinkErrors
		s.mu.Unlock()
		if now := s.now(); now.Sub(lastReport) >= time.Minute {
			lastReport = now
			s.log.Error("exporter write failed", "exporter", name, "error", err, "errorsSoFar", n)
		}
	}
	writeAlert := func(a *kubearmorpb.Alert) {
		acct.writes.Add(1)
		check(sink.WriteAlert(a))
	}
	writeLog := func(l *kubearmorpb.Log) {
		acct.writes.Add(1)
		check(sink.WriteLog(l))
	}
	flush := func() {
		if err := sink.Flush(); err != nil {
			// A failed flush loses lines the sink accounts for itself;
			// a sink without accounting loses what it buffered, uncounted
			// beyond this one error.
			check(err)
		}
		s.watchSink(name, acct, &watch)
	}
	notices := func() {
		if alerts != nil {
			if n := alerts.TakeDropped(); n > 0 {
				writeAlert(s.DroppedAlertsNotice(n))
			}
		}
		if logs != nil {
			if n := logs.TakeDropped(); n > 0 {
				writeLog(s.DroppedLogsNotice(n))
			}
		}
	}
	for {
		select {
		case a := <-alertC:
			alerts.Took()
			writeAlert(a.msg)
			continue
		case l := <-logC:
			logs.Took()
			writeLog(l.msg)
			continue
		default:
		}
		// Caught up: report losses, flush, then wait.
		notices()
		flush()
		select {
		case a := <-alertC:
			alerts.Took()
			writeAlert(a.msg)
		case l := <-logC:
			logs.Took()
			writeLog(l.msg)
		case <-alertWake:
		case <-logWake:
		case <-ctx.Done():
			flush()
			return nil
		}
	}
}

// SinkErrors is the number of failed exporter writes.
func (s *Server) SinkErrors() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinkErrors
}
