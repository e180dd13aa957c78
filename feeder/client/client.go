// Package client is the local side of `kubearmor logs` and `kubearmor
// status`: it connects to the agent's unix socket (or a TCP address), talks
// to it exactly as karmor does, and renders events either as karmor's JSON
// lines or as one human-readable line per event.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Client is a connection to the agent.
type Client struct {
	conn *grpc.ClientConn
	addr string
}

// Target turns what a user types into a gRPC target: an absolute path or
// unix:// URL is the unix socket, anything else host:port.
func Target(addr string) string {
	if strings.HasPrefix(addr, "/") {
		return "unix://" + addr
	}
	return addr
}

// Dial prepares a connection (it is made on first use). tlsConf nil means
// plaintext, which is what the unix socket and loopback serve.
func Dial(addr string, tlsConf *tls.Config) (*Client, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	conn, err := grpc.NewClient(Target(addr), grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &Client{conn: conn, addr: addr}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Filters of `kubearmor logs --filter`, karmor's --logFilter values.
const (
	FilterPolicy = "policy" // alerts
	FilterSystem = "system" // logs
	FilterAll    = "all"
)

// WatchOptions say what to watch and how to print it.
type WatchOptions struct {
	Filter   string // FilterPolicy (default), FilterSystem or FilterAll
	Messages bool   // also the agent's messages
	JSON     bool   // karmor --json lines instead of the human view
	Limit    int    // stop after this many events (alerts+logs); 0 = no limit
}

// ErrStreamEnded is returned when the agent ends a stream (karmor prints
// "Error: EOF" in that case).
var ErrStreamEnded = errors.New("the agent ended the stream")

// Watch streams events to out until ctx ends (then it returns nil), the
// limit is reached, or the connection fails. It follows karmor's order:
// open the streams, then HealthCheck with a random nonce that must come
// back unchanged, then read.
func (c *Client) Watch(ctx context.Context, out io.Writer, o WatchOptions) error {
	if o.Filter == "" {
		o.Filter = FilterPolicy
	}
	if o.Filter != FilterPolicy && o.Filter != FilterSystem && o.Filter != FilterAll {
		return fmt.Errorf("filter %q: want policy, system or all", o.Filter)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lc := kubearmorpb.NewLogServiceClient(c.conn)
	req := &kubearmorpb.RequestMessage{Filter: o.Filter}
	var readers []func() error
	w := &lineWriter{out: out, limit: o.Limit, stop: cancel}

	if o.Messages {
		s, err := lc.WatchMessages(ctx, &kubearmorpb.RequestMessage{})
		if err != nil {
			return c.connErr(err)
		}
		readers = append(readers, func() error {
			return read(s.Recv, func(m *kubearmorpb.Message) { w.write(c.render(m, o.JSON, FormatMessage), false) })
		})
	}
	if o.Filter != FilterSystem {
		s, err := lc.WatchAlerts(ctx, req)
		if err != nil {
			return c.connErr(err)
		}
		readers = append(readers, func() error {
			return read(s.Recv, func(a *kubearmorpb.Alert) { w.write(c.render(a, o.JSON, FormatAlert), true) })
		})
	}
	if o.Filter != FilterPolicy {
		s, err := lc.WatchLogs(ctx, req)
		if err != nil {
			return c.connErr(err)
		}
		readers = append(readers, func() error {
			return read(s.Recv, func(l *kubearmorpb.Log) { w.write(c.render(l, o.JSON, FormatLog), true) })
		})
	}
	nonce := rand.Int32()
	reply, err := lc.HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: nonce})
	if err != nil {
		return c.connErr(err)
	}
	if reply.GetRetval() != nonce {
		return fmt.Errorf("%s failed the liveness check: sent nonce %d, got %d back", c.addr, nonce, reply.GetRetval())
	}

	errc := make(chan error, len(readers))
	for _, r := range readers {
		go func() { errc <- r() }()
	}
	var first error
	for range readers {
		err := <-errc
		if first == nil && err != nil && ctx.Err() == nil {
			first = err
			cancel() // one stream failed: stop the others
		}
	}
	if first != nil {
		return c.connErr(first)
	}
	return nil
}

func read[T any](recv func() (T, error), handle func(T)) error {
	for {
		v, err := recv()
		if err == io.EOF {
			return ErrStreamEnded
		}
		if err != nil {
			return err
		}
		handle(v)
	}
}

func (c *Client) connErr(err error) error {
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Canceled:
			return nil
		case codes.Unavailable:
			return fmt.Errorf("agent at %s is not reachable: %s", c.addr, s.Message())
		}
		return fmt.Errorf("agent at %s: %s", c.addr, s.Message())
	}
	return err
}

func (c *Client) render(v any, asJSON bool, text func(v any) string) string {
	if asJSON {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprintf(`{"error":%q}`, err.Error())
		}
		return string(b)
	}
	return text(v)
}

// lineWriter serializes lines from several streams and counts events
// against the limit.
type lineWriter struct {
	mu    sync.Mutex
	out   io.Writer
	limit int
	n     int
	stop  func()
}

func (w *lineWriter) write(line string, event bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit > 0 && w.n >= w.limit {
		return
	}
	fmt.Fprintln(w.out, line)
	if event {
		w.n++
		if w.limit > 0 && w.n >= w.limit {
			w.stop()
		}
	}
}

// Status asks the agent for `kubearmor status`.
func (c *Client) Status(ctx context.Context) (*statuspb.Status, error) {
	st, err := statuspb.NewAgentStatusClient(c.conn).GetStatus(ctx, &emptypb.Empty{})
	if err != nil {
		return nil, c.connErr(err)
	}
	return st, nil
}
