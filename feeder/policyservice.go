package feeder

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/armorhost/kubearmor/feeder/peer"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"gopkg.in/yaml.v3"
)

// Status is a PolicyService result, with upstream's numbering.
type Status = policypb.PolicyStatus

// The statuses karmor prints as "Policy <name> ".
const (
	StatusFailure    = policypb.PolicyStatus_Failure
	StatusApplied    = policypb.PolicyStatus_Applied
	StatusDeleted    = policypb.PolicyStatus_Deleted
	StatusModified   = policypb.PolicyStatus_Modified
	StatusNotExist   = policypb.PolicyStatus_NotExist
	StatusInvalid    = policypb.PolicyStatus_Invalid
	StatusNotEnabled = policypb.PolicyStatus_NotEnabled
)

// StatusFromName maps a result name ("Applied", "Modified", "Deleted",
// "NotExist", ...) to its status, for appliers that report names.
func StatusFromName(name string) (Status, bool) {
	v, ok := policypb.PolicyStatus_value[name]
	return Status(v), ok
}

// PolicyApplier carries out a decoded, validated and normalized
// PolicyService request (the policy store: it writes the policy as a file).
// Host and container policies both come through ApplyHostPolicy; the
// event's Policy.Kind tells them apart.
// It returns Applied, Modified, Deleted or NotExist; on error the returned
// status is still sent (Failure is the zero value, so (0, err) means
// Failure; an applier that rejects the policy returns Invalid with the
// reason).
type PolicyApplier interface {
	ApplyHostPolicy(ev *hostpolicy.Event) (Status, error)
}

// PolicyApplierFunc adapts a function to PolicyApplier.
type PolicyApplierFunc func(ev *hostpolicy.Event) (Status, error)

// ApplyHostPolicy calls f.
func (f PolicyApplierFunc) ApplyHostPolicy(ev *hostpolicy.Event) (Status, error) { return f(ev) }

// PolicySource lists the host policies in force, for ProbeService.
type PolicySource interface {
	Policies() []*hostpolicy.Policy
}

type policyService struct {
	policypb.UnimplementedPolicyServiceServer
	s *Server
}

// HostPolicy handles `karmor vm policy add|delete` for KubeArmorHostPolicy.
// The payload is karmor's JSON envelope {"type": ..., "object": ...}; every
// problem with it is reported as Invalid, with the reasons in the agent's
// log and on WatchMessages.
func (p *policyService) HostPolicy(ctx context.Context, req *policypb.Policy) (*policypb.Response, error) {
	return &policypb.Response{Status: p.s.applyPolicy(peer.FromContext(ctx), req.GetPolicy(), hostpolicy.KindHostPolicy)}, nil
}

// applyHostPolicy applies a hostPolicy request from this process (fuzzing).
func (s *Server) applyHostPolicy(payload []byte) Status {
	return s.applyPolicy(&peer.Identity{Via: "internal", Addr: "internal"}, payload, hostpolicy.KindHostPolicy)
}

// applyPolicy serves hostPolicy and containerPolicy alike: the kind is the
// RPC's, and the applier (the policy store) keeps both kinds as files.
// Every outcome is logged with who asked (the interceptor let only root or
// a verified TLS client through).
func (s *Server) applyPolicy(who *peer.Identity, payload []byte, kind string) Status {
	who.ResolvePID() // costly, but policy changes are rare and must name the process
	by := who.LogAttrs()
	what := "host policy"
	parse := hostpolicy.ParseEvent
	if kind == hostpolicy.KindContainerPolicy {
		what, parse = "container policy", hostpolicy.ParseContainerEvent
	}
	if s.opts.Policies == nil {
		return StatusNotEnabled
	}
	ev, diags := parse(payload)
	if ev == nil || diags.HasErrors() {
		err := diags.Err()
		if err == nil {
			err = fmt.Errorf("unreadable request")
		}
		s.log.Warn("PolicyService: invalid "+what, append([]any{"kind", kind, "error", err}, by...)...)
		s.PublishMessage(LevelWarn, "PolicyService: invalid "+what+": "+err.Error())
		return StatusInvalid
	}
	if !validName(ev.Policy.Metadata.Name) {
		// ParseEvent checks only that a DELETED event has a name; an
		// applier may build a file name from it, so refuse anything that
		// is not a Kubernetes object name (no '/', no "..").
		msg := fmt.Sprintf("PolicyService: invalid %s: metadata.name %q is not a valid name", what, ev.Policy.Metadata.Name)
		s.log.Warn(msg, append([]any{"kind", kind}, by...)...)
		s.PublishMessage(LevelWarn, msg)
		return StatusInvalid
	}
	if ev.Type != "DELETED" && ev.Policy.Kind != kind {
		// A kind in the object that is not the RPC's: karmor never sends
		// one, and a policy must not change kind on its way to a file.
		msg := fmt.Sprintf("PolicyService: invalid %s: kind %s sent to the %s RPC", what, ev.Policy.Kind, kind)
		s.log.Warn(msg, append([]any{"kind", kind}, by...)...)
		s.PublishMessage(LevelWarn, msg)
		return StatusInvalid
	}
	for _, w := range diags.Warnings() {
		s.log.Warn("PolicyService: "+what+" "+ev.Policy.Metadata.Name, "warning", w.String())
	}
	st, err := s.opts.Policies.ApplyHostPolicy(ev)
	name := ev.Policy.Metadata.Name
	if err != nil {
		s.log.Error("PolicyService: "+what+" not applied", append([]any{"policy", name, "kind", kind, "type", ev.Type, "status", st.String(), "error", err}, by...)...)
		s.PublishMessage(LevelError, fmt.Sprintf("PolicyService: %s of %s %s: %s: %v (by %s)", ev.Type, what, name, st, err, who))
		return st
	}
	s.log.Info("PolicyService: "+what, append([]any{"policy", name, "kind", kind, "type", ev.Type, "status", st.String()}, by...)...)
	s.PublishMessage(LevelInfo, fmt.Sprintf("PolicyService: %s %s %s (by %s)", what, name, st, who))
	return st
}

// ContainerPolicy handles `karmor vm policy add|delete` for KubeArmorPolicy,
// with the same envelope, statuses and store as HostPolicy.
func (p *policyService) ContainerPolicy(ctx context.Context, req *policypb.Policy) (*policypb.Response, error) {
	return &policypb.Response{Status: p.s.applyPolicy(peer.FromContext(ctx), req.GetPolicy(), hostpolicy.KindContainerPolicy)}, nil
}

// NetworkPolicy (KubeArmorNetworkPolicy) is not supported.
func (p *policyService) NetworkPolicy(context.Context, *policypb.Policy) (*policypb.Response, error) {
	return &policypb.Response{Status: StatusNotEnabled}, nil
}

type probeService struct {
	policypb.UnimplementedProbeServiceServer
	s *Server
}

// GetProbeData reports the host policies in force for `karmor probe`:
// hostMap[<host>] lists their names and, per policy, upstream's JSON form
// {"metadata":{"policyName":...},"spec":{...}}.
func (p *probeService) GetProbeData(context.Context, *policypb.Empty) (*policypb.ProbeResponse, error) {
	resp := &policypb.ProbeResponse{
		ContainerMap: map[string]*policypb.ContainerData{},
		HostMap:      map[string]*policypb.HostSecurityPolicies{},
	}
	if p.s.opts.Probe == nil {
		return resp, nil
	}
	// Container policies belong in containerMap, keyed by container; only
	// host policies are listed here.
	policies := slices.DeleteFunc(slices.Clone(p.s.opts.Probe.Policies()),
		func(p *hostpolicy.Policy) bool { return p.Kind == hostpolicy.KindContainerPolicy })
	if len(policies) == 0 {
		return resp, nil
	}
	sort.Slice(policies, func(i, j int) bool { return policies[i].Metadata.Name < policies[j].Metadata.Name })
	host := &policypb.HostSecurityPolicies{}
	for _, pol := range policies {
		host.PolicyList = append(host.PolicyList, pol.Metadata.Name)
		data, err := probeJSON(pol)
		if err != nil {
			p.s.log.Warn("ProbeService: cannot render policy", "policy", pol.Metadata.Name, "error", err)
			continue
		}
		host.PolicyDataList = append(host.PolicyDataList, &policypb.Policy{Policy: data})
	}
	resp.HostMap[p.s.opts.Host] = host
	return resp, nil
}

// probeJSON renders a policy as upstream's daemon-side JSON: the spec with
// the policy's own (YAML) field names, and the name under policyName.
func probeJSON(p *hostpolicy.Policy) ([]byte, error) {
	text, err := hostpolicy.Render(p)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Spec map[string]any `yaml:"spec"`
	}
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("policy %s: %w", p.Metadata.Name, err)
	}
	out := map[string]any{"metadata": map[string]string{"policyName": p.Metadata.Name}, "spec": doc.Spec}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", p.Metadata.Name, err)
	}
	return data, nil
}

// validName is the Kubernetes object-name rule: 1-253 characters of
// lowercase letters, digits, '-' and '.', starting and ending with a letter
// or digit.
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return alnum(name[0]) && alnum(name[len(name)-1])
}
