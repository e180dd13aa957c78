package feeder

import (
	"context"
	"time"

	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// Sink is an exporter: a JSON-lines file, syslog, ... RunSink calls it from
// one goroutine, so it needs no locking of its own against RunSink.
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
}

// RunSink feeds a sink from its own queues until ctx ends. It is just
// another subscriber: a slow disk or syslog server loses its own messages
// (counted, and written to the sink as drop notices) and never blocks the
// pipeline. Write errors are counted and logged at most once a minute;
// RunSink keeps going.
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
	var lastReport time.Time
	check := func(err error) {
		if err == nil {
			return
		}
		s.mu.Lock()
		s.sinkErrors++
		n := s.sinkErrors
		s.mu.Unlock()
		if now := s.now(); now.Sub(lastReport) >= time.Minute {
			lastReport = now
			s.log.Error("exporter write failed", "exporter", name, "error", err, "errorsSoFar", n)
		}
	}
	notices := func() {
		if alerts != nil {
			if n := alerts.TakeDropped(); n > 0 {
				check(sink.WriteAlert(s.DroppedAlertsNotice(n)))
			}
		}
		if logs != nil {
			if n := logs.TakeDropped(); n > 0 {
				check(sink.WriteLog(s.DroppedLogsNotice(n)))
			}
		}
	}
	for {
		select {
		case a := <-alertC:
			alerts.Took()
			check(sink.WriteAlert(a.msg))
			continue
		case l := <-logC:
			logs.Took()
			check(sink.WriteLog(l.msg))
			continue
		default:
		}
		// Caught up: report losses, flush, then wait.
		notices()
		check(sink.Flush())
		select {
		case a := <-alertC:
			alerts.Took()
			check(sink.WriteAlert(a.msg))
		case l := <-logC:
			logs.Took()
			check(sink.WriteLog(l.msg))
		case <-alertWake:
		case <-logWake:
		case <-ctx.Done():
			check(sink.Flush())
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
