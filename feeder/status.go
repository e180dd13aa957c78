package feeder

import (
	"context"
	"fmt"
	"sort"

	"github.com/armorhost/kubearmor/feeder/fanout"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"google.golang.org/protobuf/types/known/emptypb"
)

type statusService struct {
	statuspb.UnimplementedAgentStatusServer
	s *Server
}

// GetStatus answers `kubearmor status`.
func (st *statusService) GetStatus(context.Context, *emptypb.Empty) (*statuspb.Status, error) {
	return st.s.Status(), nil
}

// Status is the agent's status (from Options.Status) with the feeder's
// counters filled in.
func (s *Server) Status() *statuspb.Status {
	out := &statuspb.Status{}
	if s.opts.Status != nil {
		if got := s.opts.Status(); got != nil {
			out = got
		}
	}
	if out.Cluster == "" {
		out.Cluster = s.opts.Cluster
	}
	if out.Host == "" {
		out.Host = s.opts.Host
	}
	out.Feeder = s.FeederStatus()
	out.Warnings = append(out.Warnings, s.access.warnings()...)
	out.Stages = stagesProto(s.Stages())
	return out
}

// FeederStatus is a snapshot of the fan-out and throttling counters.
func (s *Server) FeederStatus() *statuspb.FeederStatus {
	a, l, m := s.alerts.Stats(), s.logs.Stats(), s.messages.Stats()
	th := s.throttle.Stats()
	fs := &statuspb.FeederStatus{
		AlertsPublished: a.Published, LogsPublished: l.Published, MessagesPublished: m.Published,
		AlertsDropped: a.Dropped, LogsDropped: l.Dropped, MessagesDropped: m.Dropped,
		AlertsThrottled: th.Throttled, ThrottledByPolicy: th.ByPolicy, ThrottlingNow: th.Active,
	}
	for _, t := range []fanout.Stats{a, l, m} {
		for _, sub := range t.Subscribers {
			fs.Subscribers = append(fs.Subscribers, &statuspb.Subscriber{
				Id: sub.ID, Kind: t.Name, Name: sub.Name, SinceUnix: sub.Since.Unix(),
				Delivered: sub.Delivered, Dropped: sub.Dropped,
				Queued: uint32(sub.Queued), Capacity: uint32(sub.Capacity),
			})
		}
	}
	sort.SliceStable(fs.Subscribers, func(i, j int) bool { return fs.Subscribers[i].SinceUnix < fs.Subscribers[j].SinceUnix })
	return fs
}

// AlertsByPolicy returns how many alerts each policy produced (after
// throttling), for metrics.
func (s *Server) AlertsByPolicy() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.alertsByPolicy))
	for k, v := range s.alertsByPolicy {
		out[k] = v
	}
	return out
}

// statusMessages are sent first on every WatchMessages stream: a one-line
// summary, then every warning and every rule that is not enforced.
func (s *Server) statusMessages() []*kubearmorpb.Message {
	if s.opts.Status == nil {
		return nil
	}
	st := s.opts.Status()
	if st == nil {
		return nil
	}
	rules := 0
	for _, p := range st.Policies {
		rules += int(p.Rules)
	}
	out := []*kubearmorpb.Message{s.message(LevelInfo, fmt.Sprintf("status: enforcer %s, %d policies, %d rules, %d not enforced",
		orNone(st.Enforcer), len(st.Policies), rules, len(st.Unenforced)))}
	for _, w := range st.Warnings {
		out = append(out, s.message(LevelWarn, w))
	}
	for _, u := range st.Unenforced {
		out = append(out, s.message(LevelWarn, fmt.Sprintf("policy %s: rule %s is not enforced: %s", u.Policy, u.Rule, u.Reason)))
	}
	for _, f := range st.Files {
		for _, e := range f.Errors {
			out = append(out, s.message(LevelError, fmt.Sprintf("policy file %s rejected: %s", f.Name, e)))
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
