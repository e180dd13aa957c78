package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/policysource/etcd"
	"github.com/armorhost/kubearmor/policystore"
)

// hostLeaseTTL: a dead agent's key disappears within this time.
const hostLeaseTTL = 10 * time.Second

// fleet is the etcd side of the agent: the policy source beside the
// directory and this host's status key. Both are off without etcdEndpoints.
type fleet struct {
	cli *clientv3.Client
	src *etcd.Source
	pub *etcd.Publisher
}

// startFleet opens the etcd source (its cache is in the store before this
// returns) and starts the source and the host key. Only a configuration
// that cannot work (unreadable certificates, password file) is an error;
// etcd being unreachable never is.
func (a *Agent) startFleet(cfg *config.Config, store *policystore.Store, goRun func(string, func(context.Context) error)) (func(), error) {
	ec, err := cfg.Etcd()
	if err != nil || ec == nil {
		return func() {}, err
	}
	cli, err := etcd.Dial(etcd.Config{Endpoints: ec.Endpoints, CA: ec.CA, Cert: ec.Cert, Key: ec.Key, User: ec.User, PasswordFile: ec.PasswordFile})
	if err != nil {
		return nil, err
	}
	f := &fleet{cli: cli, src: etcd.Open(cli, ec.PolicyPrefix, ec.Cache, store, a.log)}
	goRun("etcd policy source", f.src.Run)
	if ec.HostPrefix != "" {
		f.pub = etcd.NewPublisher(cli, ec.HostPrefix, cfg.Host, hostLeaseTTL, a.hostStatus, a.log)
		goRun("etcd host status", f.pub.Run)
	}
	a.mu.Lock()
	a.fleet = f
	a.mu.Unlock()
	a.log.Info("etcd policy source", "endpoints", strings.Join(ec.Endpoints, ","), "prefix", ec.PolicyPrefix, "hostKey", ec.HostPrefix+cfg.Host)
	return func() {
		if f.pub != nil {
			f.pub.Revoke() // the key goes now, not when the lease expires
		}
		cli.Close()
	}, nil
}

// changed tells the host key that what is enforced changed. The caller
// may hold a.mu.
func (f *fleet) changed() {
	if f != nil && f.pub != nil {
		f.pub.Changed()
	}
}

// warnings describe the etcd source while it is not connected (for
// `kubearmor status`).
func (f *fleet) warnings() []string {
	if f == nil {
		return nil
	}
	st := f.src.Status()
	if st.State == "connected" {
		return nil
	}
	w := fmt.Sprintf("etcd policy source %s %s: %s", st.Endpoints, st.Prefix, st.State)
	if st.Error != "" {
		w += " (" + st.Error + ")"
	}
	if st.Revision > 0 {
		w += fmt.Sprintf("; enforcing revision %d, last synced %s", st.Revision, st.LastSync.UTC().Format(time.RFC3339))
	}
	if st.FromCache {
		w += fmt.Sprintf("; enforcing the cache written %s (%s old)", st.CacheWritten.UTC().Format(time.RFC3339), time.Since(st.CacheWritten).Round(time.Second))
	}
	return []string{w}
}

// statusProto is the etcd source's state for `kubearmor status`; nil
// without etcd. The caller may hold a.mu.
func (f *fleet) statusProto() *statuspb.EtcdSource {
	if f == nil {
		return nil
	}
	st := f.src.Status()
	e := &statuspb.EtcdSource{Endpoints: st.Endpoints, Prefix: st.Prefix, State: st.State, Revision: st.Revision,
		Keys: int32(st.Keys), FromCache: st.FromCache, Error: st.Error,
		LastSyncUnix: unixOrZero(st.LastSync), CacheWrittenUnix: unixOrZero(st.CacheWritten)}
	if f.pub != nil {
		e.HostKey = f.pub.Key()
	}
	return e
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// hostStatus is what this host's key says.
func (a *Agent) hostStatus() etcd.HostStatus {
	a.mu.Lock()
	store, f, cfg := a.store, a.fleet, a.cfg
	a.mu.Unlock()
	var snap policystore.Snapshot
	if store != nil {
		snap = store.Snapshot()
	}
	var revs map[string]int64
	h := etcd.HostStatus{Version: a.version}
	if f != nil {
		revs = f.src.Revisions()
		h.Revision = f.src.Status().Revision
	}
	a.mu.Lock()
	if cfg != nil {
		h.Host = cfg.Host
		h.Labels = compileOptions(cfg).Labels
	}
	h.Tier = a.status.Enforcer
	unenforced := a.status.Unenforced
	a.mu.Unlock()
	if snap.RuleSet == nil {
		return h
	}
	rules := map[string]int{}
	for _, r := range snap.RuleSet.Rules {
		rules[r.Policy]++
	}
	applied := map[string]bool{}
	for _, p := range snap.RuleSet.Policies {
		applied[p] = true
	}
	for _, file := range snap.Files {
		for _, p := range file.Policies {
			if !applied[p] {
				continue // accepted, but its nodeSelector does not pick this host
			}
			h.Policies = append(h.Policies, etcd.PolicyInForce{Name: p, Source: file.Name, Revision: revs[strings.TrimPrefix(file.Name, etcd.SourceName+":")], Rules: rules[p]})
		}
		if len(file.Errors) > 0 {
			h.Rejected = append(h.Rejected, file.Name+": "+file.Errors[0])
		}
	}
	for id, why := range unenforced {
		if r, ok := snap.RuleSet.Rule(id); ok {
			h.NotEnforced = append(h.NotEnforced, fmt.Sprintf("%s: %s %s %s: %s", r.Policy, r.Action, r.Category, r.Value, why))
		}
	}
	return h
}
