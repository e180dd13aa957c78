package agent

import (
	"fmt"
	"strings"

	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/monitor"
	"github.com/armorhost/kubearmor/policystore"
)

// statusProto is the agent's part of `kubearmor status`.
func (a *Agent) statusProto() *statuspb.Status {
	// The store publishes snapshots to onPolicies (which takes a.mu) with its
	// own lock held, so take the snapshot before a.mu, never inside it.
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	var snap policystore.Snapshot
	if store != nil {
		snap = store.Snapshot()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := &statuspb.Status{
		Version:     a.version,
		StartedUnix: a.started.Unix(),
		Enforcer:    a.status.Enforcer,
	}
	if a.cfg != nil {
		st.Cluster, st.Host = a.cfg.Cluster, a.cfg.Host
	}
	var skipped []string
	for name, why := range a.status.EnforcerSkipped {
		skipped = append(skipped, name+": "+why)
	}
	// What the enforcer took over from an earlier agent (pinned BPF-LSM
	// state), or that it will not outlive this process.
	if ad, ok := a.enforcer.(adopter); ok && ad.Adoption() != "" {
		skipped = append(skipped, ad.Adoption())
	}
	st.EnforcerReason = strings.Join(skipped, "; ")
	if h, ok := a.mon.(interface {
		Hooks() (monitor.Hooks, string)
	}); ok {
		hooks, note := h.Hooks()
		st.MonitorHooks = string(hooks)
		if note != "" {
			st.MonitorHooks += " (" + note + ")"
		}
	}
	if snap.RuleSet == nil {
		return st
	}
	rules := map[string]int32{}
	actions := map[string]string{}
	for _, r := range append(append([]hostpolicy.Rule(nil), snap.RuleSet.Rules...), snap.RuleSet.ContainerRules...) {
		rules[r.Policy]++
		if !strings.Contains(actions[r.Policy], r.Action) {
			actions[r.Policy] = strings.TrimPrefix(actions[r.Policy]+","+r.Action, ",")
		}
	}
	st.Warnings = append(st.Warnings, snap.Warnings...)      // the policy directory's: missing, writable by others
	st.Warnings = append(st.Warnings, a.fleet.warnings()...) // the etcd source's, while not connected
	st.Etcd = a.fleet.statusProto()
	for _, f := range snap.Files {
		st.Files = append(st.Files, &statuspb.PolicyFile{Name: f.Name, Policies: f.Policies, Errors: f.Errors, Warnings: f.Warnings})
		for _, p := range f.Policies {
			st.Policies = append(st.Policies, &statuspb.LoadedPolicy{Name: p, File: f.Name, Rules: rules[p], Action: actions[p]})
		}
	}
	for id, why := range a.status.Unenforced {
		if r, ok := snap.RuleSet.Rule(id); ok {
			st.Unenforced = append(st.Unenforced, &statuspb.UnenforcedRule{Policy: r.Policy, RuleId: id,
				Rule: fmt.Sprintf("%s %s %s (%s)", r.Action, r.Category, r.Value, r.Origin), Reason: why})
		}
	}
	if a.pipe != nil {
		if n := a.pipe.dropped.Load(); n > 0 {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%d events dropped: the pipeline queue was full", n))
		}
	}
	// An enforcer's own troubles (the fanotify reader's survived errors,
	// kernel denials at the descriptor limit, or its death).
	if w, ok := a.enforcer.(interface{ Warnings() []string }); ok {
		st.Warnings = append(st.Warnings, w.Warnings()...)
	}
	if ops := unrefusedFileOps(a.enforcer); len(ops) > 0 {
		st.Warnings = append(st.Warnings, unrefusedText(a.enforcer.Name(), ops))
	}
	return st
}
