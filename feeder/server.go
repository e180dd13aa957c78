// Package feeder is the agent's output side: the KubeArmor-compatible gRPC
// services (LogService, PolicyService, ProbeService, grpc.health.v1, and our
// own AgentStatus), the fan-out of alerts, logs and messages to every
// subscriber, alert throttling, and the loop that feeds exporters.
//
// Publishing never blocks: each subscriber (a gRPC stream or an exporter)
// has a bounded queue and loses only its own messages when it falls behind;
// every loss is counted and reported to that subscriber as a SystemEvent.
package feeder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/feeder/throttle"
)

// Defaults.
const (
	DefaultPort           = 32767
	DefaultTCP            = "127.0.0.1:32767"
	DefaultSocket         = "/run/kubearmor/kubearmor.sock"
	DefaultQueueDepth     = 1000 // upstream's per-subscriber channel depth
	DefaultMaxSubscribers = 64   // per topic: bounds memory at about 64 x QueueDepth queued events per topic, whatever clients do
)

// Options configure a Server. Zero values mean "off" or the default.
type Options struct {
	Cluster string // ClusterName of alerts, logs and messages
	Host    string // HostName, and the key of ProbeService's hostMap
	HostIP  string // HostIP of messages

	TCP    string    // host:port to listen on; "" disables TCP. Non-loopback requires TLS.
	Socket string    // unix socket path; "" disables it
	TLS    *TLSFiles // nil: plaintext (what karmor speaks); only applies to TCP

	QueueDepth     int // per subscriber; default DefaultQueueDepth
	MaxSubscribers int // per topic; default DefaultMaxSubscribers

	Throttle throttle.Config

	Policies PolicyApplier // nil: hostPolicy answers NotEnabled
	Probe    PolicySource  // nil: getProbeData reports no host policies
	// Status fills the agent's part of `kubearmor status`; the feeder adds its own counters.
	Status func() *statuspb.Status

	Now func() time.Time // clock for timestamps and throttling; time.Now when nil
	Log *slog.Logger
}

// Server publishes alerts, logs and messages and serves them over gRPC.
type Server struct {
	opts     Options
	now      func() time.Time
	log      *slog.Logger
	alerts   *fanout.Topic[*outgoing[*kubearmorpb.Alert]]
	logs     *fanout.Topic[*outgoing[*kubearmorpb.Log]]
	messages *fanout.Topic[*kubearmorpb.Message]
	throttle *throttle.Throttle

	// shutdown ends every stream, so a graceful stop does not wait for
	// clients that would otherwise watch forever.
	shutdown    context.Context
	stopStreams context.CancelFunc
	listeners   []*listener

	mu             sync.Mutex
	alertsByPolicy map[string]uint64
	sinkErrors     uint64
}

// New checks the options and returns a server that is not yet listening.
func New(opts Options) (*Server, error) {
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = DefaultQueueDepth
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = DefaultMaxSubscribers
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.TCP != "" {
		if err := checkTCP(opts.TCP, opts.TLS); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:           opts,
		now:            opts.Now,
		log:            opts.Log,
		alerts:         fanout.NewTopic[*outgoing[*kubearmorpb.Alert]]("alerts", opts.MaxSubscribers),
		logs:           fanout.NewTopic[*outgoing[*kubearmorpb.Log]]("logs", opts.MaxSubscribers),
		messages:       fanout.NewTopic[*kubearmorpb.Message]("messages", opts.MaxSubscribers),
		throttle:       throttle.New(opts.Throttle, opts.Now),
		shutdown:       ctx,
		stopStreams:    cancel,
		alertsByPolicy: map[string]uint64{},
	}, nil
}

// Listen opens the TCP listener and the unix socket, so that an address in
// use or a bad TLS file is reported before the agent says it is ready.
func (s *Server) Listen() error {
	var lns []*listener
	if s.opts.TCP != "" {
		ln, err := s.listenTCP()
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	if s.opts.Socket != "" {
		ln, err := s.listenUnix()
		if err != nil {
			for _, l := range lns {
				l.ln.Close()
				if l.cleanup != nil {
					l.cleanup()
				}
			}
			return err
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return errors.New("feeder: neither a TCP address nor a unix socket is configured")
	}
	s.listeners = lns
	return nil
}

// TCPAddr is the address the TCP listener is bound to (useful with port 0),
// or nil when there is none.
func (s *Server) TCPAddr() net.Addr {
	for _, l := range s.listeners {
		if l.network == "tcp" {
			return l.ln.Addr()
		}
	}
	return nil
}

// Serve serves until ctx ends, then ends every stream with Unavailable and
// stops. Listen must have succeeded.
func (s *Server) Serve(ctx context.Context) error {
	if len(s.listeners) == 0 {
		return errors.New("feeder: Serve before Listen")
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		go func() {
			if err := l.srv.Serve(l.ln); err != nil {
				errc <- fmt.Errorf("feeder: serve %s: %w", l.name, err)
				return
			}
			errc <- nil
		}()
		s.log.Info("gRPC listening", "address", l.name, "tls", l.tls, "policyService", l.policyOK)
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	s.stop()
	return first
}

func (s *Server) stop() {
	s.stopStreams()
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.health.Shutdown()
			// Streams have been told to end; unary calls finish normally.
			done := make(chan struct{})
			go func() { l.srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				l.srv.Stop()
			}
			if l.cleanup != nil {
				l.cleanup()
			}
		}()
	}
	wg.Wait()
}

// SetThrottle changes the throttling configuration live.
func (s *Server) SetThrottle(cfg throttle.Config) { s.throttle.SetConfig(cfg) }

// Upstream's UpdatedTime layout.
const updatedTimeLayout = "2006-01-02T15:04:05.000000Z"

func (s *Server) stamp() (int64, string) {
	t := s.now().UTC()
	return t.Unix(), t.Format(updatedTimeLayout)
}

// PublishAlert throttles an alert and hands it to every alert subscriber.
// It never blocks. Empty ClusterName, HostName, Timestamp and UpdatedTime
// are filled in. The alert must not be modified afterwards: subscribers
// share it.
func (s *Server) PublishAlert(a *kubearmorpb.Alert) {
	s.fill(&a.ClusterName, &a.HostName, &a.Timestamp, &a.UpdatedTime)
	out, ok := s.throttle.Admit(a)
	if !ok {
		return
	}
	if out.Type != throttle.TypeSystemEvent {
		s.mu.Lock()
		s.alertsByPolicy[out.PolicyName]++
		s.mu.Unlock()
	}
	s.alerts.Publish(newOutgoing(out))
}

// PublishLog hands a log to every log subscriber. It never blocks; the same
// rules as PublishAlert apply.
func (s *Server) PublishLog(l *kubearmorpb.Log) {
	s.fill(&l.ClusterName, &l.HostName, &l.Timestamp, &l.UpdatedTime)
	s.logs.Publish(newOutgoing(l))
}

// Message levels, as upstream writes them.
const (
	LevelDebug = "DEBUG"
	LevelInfo  = "INFO"
	LevelWarn  = "WARN"
	LevelError = "ERROR"
)

// PublishMessage sends one agent message (status, warning) to every
// WatchMessages subscriber.
func (s *Server) PublishMessage(level, text string) {
	s.messages.Publish(s.message(level, text))
}

func (s *Server) message(level, text string) *kubearmorpb.Message {
	ts, ut := s.stamp()
	return &kubearmorpb.Message{
		Timestamp: ts, UpdatedTime: ut,
		ClusterName: s.opts.Cluster, HostName: s.opts.Host, HostIP: s.opts.HostIP,
		Type: "Message", Level: level, Message: text,
	}
}

func (s *Server) fill(cluster, host *string, ts *int64, updated *string) {
	if *cluster == "" {
		*cluster = s.opts.Cluster
	}
	if *host == "" {
		*host = s.opts.Host
	}
	if *ts == 0 || *updated == "" {
		t, u := s.stamp()
		if *ts == 0 {
			*ts = t
		}
		if *updated == "" {
			*updated = u
		}
	}
}

// TypeSystemEvent is the alert Type of notices from the agent itself.
const TypeSystemEvent = throttle.TypeSystemEvent

// Operations of our drop notices. Upstream has no such notice; they follow
// its AlertThreshold notice in form (Type SystemEvent, counts in fields).
const (
	OperationAlertsDropped = "AlertsDropped"
	OperationLogsDropped   = "LogsDropped"
)

// DroppedAlertsNotice tells one subscriber that n alerts were dropped for it.
func (s *Server) DroppedAlertsNotice(n uint64) *kubearmorpb.Alert {
	ts, ut := s.stamp()
	return &kubearmorpb.Alert{
		Timestamp: ts, UpdatedTime: ut, ClusterName: s.opts.Cluster, HostName: s.opts.Host,
		Type: TypeSystemEvent, Operation: OperationAlertsDropped,
		Message:   fmt.Sprintf("%d alerts were dropped for this subscriber because it read too slowly", n),
		Data:      fmt.Sprintf("dropped=%d", n),
		EventData: map[string]string{"Dropped": fmt.Sprint(n)},
		Result:    "Passed",
	}
}

// DroppedLogsNotice tells one subscriber that n logs were dropped for it.
func (s *Server) DroppedLogsNotice(n uint64) *kubearmorpb.Log {
	ts, ut := s.stamp()
	return &kubearmorpb.Log{
		Timestamp: ts, UpdatedTime: ut, ClusterName: s.opts.Cluster, HostName: s.opts.Host,
		Type: TypeSystemEvent, Operation: OperationLogsDropped,
		Data:      fmt.Sprintf("dropped=%d", n),
		EventData: map[string]string{"Dropped": fmt.Sprint(n)},
		Result:    "Passed",
	}
}

func (s *Server) droppedMessagesNotice(n uint64) *kubearmorpb.Message {
	return s.message(LevelWarn, fmt.Sprintf("%d messages were dropped for this subscriber because it read too slowly", n))
}
