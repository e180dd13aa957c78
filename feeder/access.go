package feeder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/feeder/peer"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the fair-share limits.
const (
	DefaultMaxConnectionsPerUser  = 32
	DefaultMaxStreamsPerUser      = 8
	DefaultSubscriberStallTimeout = 30 * time.Second
	DefaultConnectionTimeout      = 5 * time.Second // TLS handshake and HTTP/2 preface
	// unixReserve connections may be open on the unix socket beyond
	// MaxConnections: the socket is root's (mode 0660), and root's CLI must
	// get in while TCP clients hold every other connection.
	unixReserve = 16
	// TelemetryEveryone as telemetryGroup lets every local user read
	// alerts and logs.
	TelemetryEveryone = "*"
)

// DefaultMaxConnections is the global connection cap when none is
// configured: well below the open-file limit, so that clients can never
// take the descriptors the enforcers need.
func DefaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 256
	}
	return int(max(16, min(1024, rl.Cur/4)))
}

// AccessStats counts what the access checks and limits refused.
type AccessStats struct {
	ConnectionsRefused      uint64 // over maxConnections, closed at accept
	ConnectionsRefusedUser  uint64 // over maxConnectionsPerUser
	ConnectionsNoPreface    uint64 // closed for sending no HTTP/2 preface (or TLS handshake) in time
	StreamsRefusedUser      uint64 // over maxStreamsPerUser
	SubscribersEvicted      uint64 // stalled past subscriberStallTimeout
	PolicyDenied            uint64 // PolicyService calls refused
	TelemetryDenied         uint64 // telemetry calls refused
	Unidentified            uint64 // connections whose owner the kernel could not name
	Connections, MaxConns   int    // open now, and the cap
	MaxConnectionsPerUser   int
	MaxStreamsPerUser       int
	SubscriberStallTimeout  time.Duration
	TelemetryGroup          string // as configured
	TelemetryGroupResolved  bool   // false: the group does not exist (root only)
	ReservedSubscriberSlots int    // per topic, for root on the unix socket
}

type access struct {
	s *Server

	telemetryAll bool
	telemetryGID uint32
	hasGroup     bool

	// noSockDiag: why the kernel cannot name TCP peers' owners ("" = it can).
	noSockDiag string

	maxConns, maxConnsUser, maxStreamsUser int
	open                                   atomic.Int64

	mu      sync.Mutex
	conns   map[string]int
	streams map[string]int

	refused, refusedUser, noPreface, streamsRefused, policyDenied, telemetryDenied, unidentified atomic.Uint64
	lastCapLog                                                                                   atomic.Int64
}

func newAccess(s *Server) *access {
	a := &access{s: s, conns: map[string]int{}, streams: map[string]int{},
		maxConns: s.opts.MaxConnections, maxConnsUser: s.opts.MaxConnectionsPerUser, maxStreamsUser: s.opts.MaxStreamsPerUser}
	switch g := s.opts.TelemetryGroup; g {
	case TelemetryEveryone:
		a.telemetryAll = true
	case "":
	default:
		gid, err := peer.LookupGroup(g)
		if err != nil {
			s.log.Warn("telemetryGroup not found: alerts and logs are readable by root only", "telemetryGroup", g, "error", err)
			break
		}
		a.telemetryGID, a.hasGroup = gid, true
	}
	return a
}

func (a *access) stats() AccessStats {
	return AccessStats{
		ConnectionsRefused: a.refused.Load(), ConnectionsRefusedUser: a.refusedUser.Load(), ConnectionsNoPreface: a.noPreface.Load(),
		StreamsRefusedUser: a.streamsRefused.Load(), PolicyDenied: a.policyDenied.Load(), TelemetryDenied: a.telemetryDenied.Load(),
		Unidentified: a.unidentified.Load(), Connections: int(a.open.Load()), MaxConns: a.maxConns,
		MaxConnectionsPerUser: a.maxConnsUser, MaxStreamsPerUser: a.maxStreamsUser, SubscriberStallTimeout: a.s.opts.SubscriberStallTimeout,
		TelemetryGroup: a.s.opts.TelemetryGroup, TelemetryGroupResolved: a.hasGroup || a.telemetryAll || a.s.opts.TelemetryGroup == "",
		ReservedSubscriberSlots: reservedSlots(a.s.opts.MaxSubscribers),
		SubscribersEvicted:      a.s.alerts.Stats().Evicted + a.s.logs.Stats().Evicted + a.s.messages.Stats().Evicted,
	}
}

// warnings are the access counters as `kubearmor status` warnings, when
// something was refused or closed (the status proto has no fields for
// them yet), and the telemetryGroup that does not exist.
func (a *access) warnings() []string {
	st := a.stats()
	var out []string
	if !st.TelemetryGroupResolved {
		out = append(out, fmt.Sprintf("gRPC: telemetryGroup %s does not exist: alerts, logs and status are readable by root only", st.TelemetryGroup))
	}
	if a.noSockDiag != "" {
		out = append(out, "gRPC: loopback TCP clients cannot be identified, so none is treated as root (PolicyService only on the unix socket): "+a.noSockDiag)
	}
	if st.ConnectionsRefused+st.ConnectionsRefusedUser+st.ConnectionsNoPreface > 0 {
		out = append(out, fmt.Sprintf("gRPC: connections closed: %d over maxConnections (%d), %d over maxConnectionsPerUser (%d), %d sent no HTTP/2 preface in time",
			st.ConnectionsRefused, st.MaxConns, st.ConnectionsRefusedUser, st.MaxConnectionsPerUser, st.ConnectionsNoPreface))
	}
	if st.StreamsRefusedUser+st.SubscribersEvicted > 0 {
		out = append(out, fmt.Sprintf("gRPC: streams: %d refused over maxStreamsPerUser (%d), %d subscribers disconnected for stalling past subscriberStallTimeout (%s)",
			st.StreamsRefusedUser, st.MaxStreamsPerUser, st.SubscribersEvicted, st.SubscriberStallTimeout))
	}
	if st.PolicyDenied+st.TelemetryDenied+st.Unidentified > 0 {
		out = append(out, fmt.Sprintf("gRPC: refused calls: %d PolicyService, %d telemetry; %d peers the kernel could not identify (treated as unprivileged)",
			st.PolicyDenied, st.TelemetryDenied, st.Unidentified))
	}
	return out
}

// reservedSlots of a topic are for root on the unix socket: one in eight,
// at most 8 (none below 8 slots).
func reservedSlots(maxSubscribers int) int { return min(8, maxSubscribers/8) }

// rootOnUnix is the one peer no limit applies to: root's own CLI.
func rootOnUnix(id *peer.Identity) bool { return id.Root() && id.Via == peer.ViaUnix }

// ---- connections ----

// limitListener closes connections over the global cap at once, so idle
// clients can never hold more descriptors than the cap.
type limitListener struct {
	net.Listener
	a     *access
	extra int // allowed beyond the cap on this listener
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.a.open.Add(1); n > int64(l.a.maxConns+l.extra) {
			l.a.open.Add(-1)
			c.Close()
			n := l.a.refused.Add(1)
			l.a.logCap("gRPC connection refused: maxConnections reached", "maxConnections", l.a.maxConns, "refusedSoFar", n)
			continue
		}
		return &countedConn{Conn: c, release: func() { l.a.open.Add(-1) }}, nil
	}
}

// logCap logs at most once a second: a flood of refused connections must
// not become a flood of log lines.
func (a *access) logCap(msg string, attrs ...any) {
	now := time.Now().UnixNano()
	last := a.lastCapLog.Load()
	if now-last < int64(time.Second) || !a.lastCapLog.CompareAndSwap(last, now) {
		return
	}
	a.s.log.Warn(msg, attrs...)
}

// countedConn releases its slot once, when closed; it keeps the file
// descriptor reachable (syscall.Conn) for SO_PEERCRED.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("%T has no file descriptor", c.Conn)
}

// admit applies the per-user connection limit once the peer is known.
func (a *access) admit(id *peer.Identity, c net.Conn) (net.Conn, error) {
	if id.Err != nil && id.TLSSubject == "" && id.Local {
		a.unidentified.Add(1)
		a.s.log.Warn("gRPC peer not identified: treated as an unprivileged user", id.LogAttrs()...)
	}
	release := func() {}
	if !rootOnUnix(id) {
		key := id.Key()
		a.mu.Lock()
		if a.conns[key] >= a.maxConnsUser {
			a.mu.Unlock()
			n := a.refusedUser.Add(1)
			a.logCap("gRPC connection refused: maxConnectionsPerUser reached", append(id.LogAttrs(), "maxConnectionsPerUser", a.maxConnsUser, "refusedSoFar", n)...)
			return nil, fmt.Errorf("feeder: %s has %d connections (maxConnectionsPerUser)", key, a.maxConnsUser)
		}
		a.conns[key]++
		a.mu.Unlock()
		release = func() {
			a.mu.Lock()
			if a.conns[key]--; a.conns[key] <= 0 {
				delete(a.conns, key)
			}
			a.mu.Unlock()
		}
	}
	return &prefaceConn{countedConn: countedConn{Conn: c, release: release}, a: a}, nil
}

// prefaceConn counts a connection closed by the connection timeout before
// the client sent its HTTP/2 preface.
type prefaceConn struct {
	countedConn
	a     *access
	read  atomic.Int64
	noted atomic.Bool
}

const http2PrefaceLen = 24

func (c *prefaceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	got := c.read.Add(int64(n))
	if err != nil && got < http2PrefaceLen && isTimeout(err) {
		if c.noted.CompareAndSwap(false, true) {
			n := c.a.noPreface.Add(1)
			c.a.logCap("gRPC connection closed: no HTTP/2 preface in time", "addr", c.RemoteAddr().String(), "closedSoFar", n)
		}
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ---- RPCs ----

type rpcClass int

const (
	classOpen      rpcClass = iota // health checks, reflection: anyone
	classTelemetry                 // alerts, logs, messages, status, probe data
	classPolicy                    // policy changes
)

func classify(method string) rpcClass {
	switch {
	case strings.HasPrefix(method, "/"+policypb.PolicyService_ServiceDesc.ServiceName+"/"):
		return classPolicy
	case strings.HasPrefix(method, "/grpc.health.v1."), strings.HasPrefix(method, "/grpc.reflection."),
		method == "/feeder.LogService/HealthCheck":
		return classOpen
	}
	// Everything else, including services added later, is telemetry:
	// closed by default.
	return classTelemetry
}

// authorize decides whether the peer may call method on a listener.
func (a *access) authorize(ctx context.Context, l *listener, method string) error {
	class := classify(method)
	if class == classOpen {
		return nil
	}
	id := peer.FromContext(ctx)
	switch class {
	case classPolicy:
		if !l.policyOK {
			a.policyDenied.Add(1)
			a.s.log.Warn("gRPC request refused", append([]any{"rpc", method, "reason", "PolicyService not served on this listener"}, id.LogAttrs()...)...)
			return status.Error(codes.PermissionDenied, "PolicyService is only served on loopback, the unix socket, or with mutual TLS")
		}
		if id.Root() || id.TLSSubject != "" {
			return nil
		}
		a.policyDenied.Add(1)
		a.s.log.Warn("gRPC request refused", append([]any{"rpc", method, "reason", "policy changes need root or a verified TLS client"}, id.LogAttrs()...)...)
		return status.Errorf(codes.PermissionDenied, "permission denied: policy changes are accepted only from root (uid 0) on this host or a client with a verified TLS certificate; this peer is %s", id)
	default:
		// "*" is every local user, not anyone who can reach a TLS port.
		if id.Root() || id.TLSSubject != "" || a.telemetryAll && id.Local || a.hasGroup && id.InGroup(a.telemetryGID) {
			return nil
		}
		a.telemetryDenied.Add(1)
		a.s.log.Warn("gRPC request refused", append([]any{"rpc", method, "reason", "not in telemetryGroup"}, id.LogAttrs()...)...)
		who := "root only (telemetryGroup is empty)"
		switch {
		case a.hasGroup:
			who = "root and members of group " + a.s.opts.TelemetryGroup + " (telemetryGroup)"
		case a.s.opts.TelemetryGroup != "":
			who = "root only (telemetryGroup " + a.s.opts.TelemetryGroup + " does not exist)"
		}
		return status.Errorf(codes.PermissionDenied, "permission denied: alerts, logs and agent status are readable by %s; this peer is %s", who, id)
	}
}

func (a *access) unary(l *listener) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := a.authorize(ctx, l, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (a *access) stream(l *listener) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := a.authorize(ss.Context(), l, info.FullMethod); err != nil {
			return err
		}
		if classify(info.FullMethod) == classTelemetry {
			release, err := a.takeStream(peer.FromContext(ss.Context()), info.FullMethod)
			if err != nil {
				return err
			}
			defer release()
		}
		return h(srv, ss)
	}
}

// takeStream applies maxStreamsPerUser, across topics.
func (a *access) takeStream(id *peer.Identity, method string) (func(), error) {
	if rootOnUnix(id) {
		return func() {}, nil
	}
	key := id.Key()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.streams[key] >= a.maxStreamsUser {
		n := a.streamsRefused.Add(1)
		a.s.log.Warn("gRPC stream refused: maxStreamsPerUser reached", append([]any{"rpc", method, "maxStreamsPerUser", a.maxStreamsUser, "refusedSoFar", n}, id.LogAttrs()...)...)
		return nil, status.Errorf(codes.ResourceExhausted, "too many streams: %s already has %d (maxStreamsPerUser); close one and try again", id, a.maxStreamsUser)
	}
	a.streams[key]++
	return func() {
		a.mu.Lock()
		if a.streams[key]--; a.streams[key] <= 0 {
			delete(a.streams, key)
		}
		a.mu.Unlock()
	}, nil
}
