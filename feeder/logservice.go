package feeder

import (
	"context"
	"errors"
	"fmt"

	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// logService is feeder.LogService as karmor uses it (karmor-client.md §4.3):
// streams may be opened before HealthCheck and must stay open until the
// client goes away; ending one normally makes karmor exit with "EOF".
type logService struct {
	kubearmorpb.UnimplementedLogServiceServer
	s *Server
}

func (l *logService) HealthCheck(_ context.Context, req *kubearmorpb.NonceMessage) (*kubearmorpb.ReplyMessage, error) {
	return &kubearmorpb.ReplyMessage{Retval: req.GetNonce()}, nil
}

// WatchAlerts serves filters "all" and "policy"; any other filter ends the
// stream at once, as upstream does.
func (l *logService) WatchAlerts(req *kubearmorpb.RequestMessage, stream grpc.ServerStreamingServer[kubearmorpb.Alert]) error {
	if f := req.GetFilter(); f != "all" && f != "policy" {
		return nil
	}
	sub, err := subscribe(l.s, stream.Context(), l.s.alerts)
	if err != nil {
		return subscribeError(err)
	}
	defer sub.Close()
	return pump(l.s, stream.Context(), sub, sendEncoded[*kubearmorpb.Alert](stream), func(n uint64) *outgoing[*kubearmorpb.Alert] {
		return newOutgoing(l.s.DroppedAlertsNotice(n))
	})
}

// WatchLogs serves filters "all" and "system"; any other filter ends the
// stream at once, as upstream does.
func (l *logService) WatchLogs(req *kubearmorpb.RequestMessage, stream grpc.ServerStreamingServer[kubearmorpb.Log]) error {
	if f := req.GetFilter(); f != "all" && f != "system" {
		return nil
	}
	sub, err := subscribe(l.s, stream.Context(), l.s.logs)
	if err != nil {
		return subscribeError(err)
	}
	defer sub.Close()
	return pump(l.s, stream.Context(), sub, sendEncoded[*kubearmorpb.Log](stream), func(n uint64) *outgoing[*kubearmorpb.Log] {
		return newOutgoing(l.s.DroppedLogsNotice(n))
	})
}

// WatchMessages streams the agent's messages whatever the filter. Unlike
// upstream (debug mode only) they always flow, starting with the agent's
// current status and warnings, so a watcher learns about unenforceable
// rules without asking.
func (l *logService) WatchMessages(_ *kubearmorpb.RequestMessage, stream grpc.ServerStreamingServer[kubearmorpb.Message]) error {
	sub, err := subscribe(l.s, stream.Context(), l.s.messages)
	if err != nil {
		return subscribeError(err)
	}
	defer sub.Close()
	for _, m := range l.s.statusMessages() {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return pump(l.s, stream.Context(), sub, stream.Send, l.s.droppedMessagesNotice)
}

// pump sends one subscriber's queue to its stream until the client leaves,
// the server stops, or the subscriber is evicted for stalling. A
// stream.Send blocked by a client that does not read only holds up this
// subscriber: the publisher drops into its full queue. The sends run in
// their own goroutine so that an eviction ends the RPC even while a send
// is blocked on flow control: ending the RPC cancels the stream, which
// releases the send.
func pump[T any](s *Server, ctx context.Context, sub *fanout.Subscription[T], send func(T) error, notice func(uint64) T) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.shutdown, cancel)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- pumpLoop(s, ctx, sub, send, notice) }()
	select {
	case err := <-done:
		return err
	case <-sub.Evicted():
		st := sub.Stats()
		return status.Errorf(codes.ResourceExhausted,
			"disconnected: this subscriber's queue stayed full with nothing delivered for %s (subscriberStallTimeout); %d messages were dropped for it",
			s.opts.SubscriberStallTimeout, st.Dropped)
	}
}

func pumpLoop[T any](s *Server, ctx context.Context, sub *fanout.Subscription[T], send func(T) error, notice func(uint64) T) error {
	for {
		v, dropped, err := sub.Next(ctx)
		if err != nil {
			if s.shutdown.Err() != nil {
				return status.Error(codes.Unavailable, "agent is shutting down")
			}
			return status.FromContextError(err).Err()
		}
		if dropped > 0 {
			v = notice(dropped)
		}
		if err := send(v); err != nil {
			if errors.Is(err, errUnencodable) {
				// One event that cannot be encoded must not end the stream.
				s.undeliverable(v, sub.Stats().ID, err)
				continue
			}
			return err
		}
	}
}

// sendEncoded sends the shared encoding of a message (see wireCodec).
func sendEncoded[T proto.Message](stream grpc.ServerStream) func(*outgoing[T]) error {
	return func(o *outgoing[T]) error {
		wire, err := o.encoded()
		if err != nil {
			return fmt.Errorf("%w: %w", errUnencodable, err)
		}
		return stream.SendMsg(wire)
	}
}

func subscribeError(err error) error {
	if errors.Is(err, fanout.ErrTooManySubscribers) {
		return status.Error(codes.ResourceExhausted, "too many subscribers; try again later")
	}
	return status.Error(codes.Internal, err.Error())
}

// subscribe adds a gRPC subscriber to topic and tells the stall watch
// (evictStalled) that it has one more subscriber to watch.
func subscribe[T any](s *Server, ctx context.Context, topic *fanout.Topic[T]) (*fanout.Subscription[T], error) {
	sub, err := topic.SubscribeWith(s.subscriber(ctx))
	if err == nil {
		select {
		case s.subscribed <- struct{}{}:
		default:
		}
	}
	return sub, err
}

// subscriber names a gRPC subscriber after its peer. Root on the unix
// socket may take the slots reserved for it; every gRPC subscriber may be
// evicted for stalling.
func (s *Server) subscriber(ctx context.Context) (string, int, fanout.SubscribeOptions) {
	id := peer.FromContext(ctx)
	return id.String(), s.opts.QueueDepth, fanout.SubscribeOptions{Privileged: rootOnUnix(id), Evictable: true}
}
