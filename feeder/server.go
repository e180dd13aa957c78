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

	"github.com/armorhost/kubearmor/event"
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

	// Who may read alerts, logs, messages, status and probe data besides
	// root and verified TLS clients: members of this group, everyone
	// (TelemetryEveryone), or nobody else (""). PolicyService is root's
	// (or a verified TLS client's) whatever this says.
	TelemetryGroup string
	// Fair share. Zero values mean the defaults.
	MaxConnections         int           // global; default DefaultMaxConnections()
	MaxConnectionsPerUser  int           // default DefaultMaxConnectionsPerUser
	MaxStreamsPerUser      int           // default DefaultMaxStreamsPerUser
	SubscriberStallTimeout time.Duration // default DefaultSubscriberStallTimeout
	ConnectionTimeout      time.Duration // handshake and preface; default DefaultConnectionTimeout

	Throttle throttle.Config

	Policies PolicyApplier // nil: hostPolicy answers NotEnabled
	Probe    PolicySource  // nil: getProbeData reports no host policies
	// Status fills the agent's part of `kubearmor status`; the feeder adds its own counters.
	Status func() *statuspb.Status
	// Stages are the agent's stages of the event path (kernel, readers,
	// pipeline), listed before the feeder's in status and metrics.
	Stages func() []event.Stage

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
	access   *access

	// shutdown ends every stream, so a graceful stop does not wait for
	// clients that would otherwise watch forever.
	shutdown    context.Context
	stopStreams context.CancelFunc
	// subscribed wakes evictStalled after a gRPC subscriber joined, so
	// its ticker runs only while there is a subscriber to watch.
	subscribed chan struct{}
	listeners  []*listener

	mu             sync.Mutex
	alertsByPolicy map[string]uint64
	sinkErrors     uint64

	acct accounting // stages.go
}

// New checks the options and returns a server that is not yet listening.
func New(opts Options) (*Server, error) {
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = DefaultQueueDepth
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = DefaultMaxSubscribers
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections()
	}
	if opts.MaxConnectionsPerUser <= 0 {
		opts.MaxConnectionsPerUser = DefaultMaxConnectionsPerUser
	}
	if opts.MaxStreamsPerUser <= 0 {
		opts.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if opts.SubscriberStallTimeout <= 0 {
		opts.SubscriberStallTimeout = DefaultSubscriberStallTimeout
	}
	if opts.ConnectionTimeout <= 0 {
		opts.ConnectionTimeout = DefaultConnectionTimeout
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
	s := &Server{
		opts:           opts,
		now:            opts.Now,
		log:            opts.Log,
		alerts:         fanout.NewTopic[*outgoing[*kubearmorpb.Alert]]("alerts", opts.MaxSubscribers),
		logs:           fanout.NewTopic[*outgoing[*kubearmorpb.Log]]("logs", opts.MaxSubscribers),
		messages:       fanout.NewTopic[*kubearmorpb.Message]("messages", opts.MaxSubscribers),
		throttle:       throttle.New(opts.Throttle, opts.Now),
		shutdown:       ctx,
		stopStreams:    cancel,
		subscribed:     make(chan struct{}, 1),
		alertsByPolicy: map[string]uint64{},
	}
	reserve := reservedSlots(opts.MaxSubscribers)
	s.alerts.Reserve(reserve)
	s.logs.Reserve(reserve)
	s.messages.Reserve(reserve)
	s.access = newAccess(s)
	return s, nil
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
	st := s.access.stats()
	s.log.Info("gRPC access", "policyService", "root or a verified TLS client", "telemetryGroup", st.TelemetryGroup,
		"maxConnections", st.MaxConns, "maxConnectionsPerUser", st.MaxConnectionsPerUser, "maxStreamsPerUser", st.MaxStreamsPerUser,
		"subscriberStallTimeout", st.SubscriberStallTimeout, "reservedSubscriberSlots", st.ReservedSubscriberSlots)
	go s.evictStalled(ctx)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	s.stop()
	return first
}

// evictStalled disconnects gRPC subscribers whose queue stayed full with
// nothing delivered for SubscriberStallTimeout, so stalled streams cannot
// hold subscriber slots for ever. The ticker is selected only while an
// evictable subscriber exists: with no gRPC client the agent does not wake
// for it (a ticker nobody waits on is off the runtime's timer heap).
func (s *Server) evictStalled(ctx context.Context) {
	bound := s.opts.SubscriberStallTimeout
	t := time.NewTicker(min(time.Second, max(10*time.Millisecond, bound/4)))
	defer t.Stop()
	for {
		var tick <-chan time.Time
		if s.alerts.HasEvictable() || s.logs.HasEvictable() || s.messages.HasEvictable() {
			tick = t.C
		}
		select {
		case <-ctx.Done():
			return
		case <-s.shutdown.Done():
			return
		case <-s.subscribed:
		case now := <-tick:
			for _, ev := range [][]fanout.SubscriberStats{
				s.alerts.EvictStalled(now, bound), s.logs.EvictStalled(now, bound), s.messages.EvictStalled(now, bound),
			} {
				for _, sub := range ev {
					s.log.Warn("gRPC subscriber disconnected: stalled with a full queue", "subscriber", sub.Name,
						"subscriberStallTimeout", bound, "delivered", sub.Delivered, "dropped", sub.Dropped)
				}
			}
		}
	}
}

// AccessStats returns the counters of refused and closed connections,
// streams and calls, and the limits in force.
func (s *Server) AccessStats() AccessStats { return s.access.stats() }

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
	s.acct.alertsIn.Add(1)
	out, ok := s.throttle.Admit(a)
	if !ok {
		s.acct.throttled.Add(1)
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

// LogUnwatched reports true, and counts the log as published, when no
// subscriber (stream or exporter) takes logs now: the caller then builds no
// log, which PublishLog would have delivered to nobody. Otherwise it
// counts nothing and the caller calls PublishLog.
func (s *Server) LogUnwatched() bool { return s.logs.PublishNowhere() }

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
		Type: "Message", Level: level, Message: event.ValidText(text),
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
