package agent

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/armorhost/kubearmor/agent/config"
	bpflsm "github.com/armorhost/kubearmor/enforce/bpflsm"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/runtimes"
)

// Container policies (KubeArmorPolicy) are enforced by an enforcer that can
// scope rules to containers: the agent hands it the containers the runtimes
// Resolver knows, again every time one comes or goes, and the enforcer
// applies each container's policies to it (enforce/bpflsm: by cgroup id). The
// RuleSet itself carries the policies and their selectors, so a policy
// change reaches running containers through Apply alone.

// containerScoper is an enforcer that can scope rules to containers.
type containerScoper interface {
	SetContainers([]hostpolicy.Container) (unenforced map[uint32]string, err error)
}

// The BPF-LSM enforcer is the one that scopes rules to containers.
var _ containerScoper = (*bpflsm.Enforcer)(nil)

// containerLister is where the container list comes from (runtimes.Resolver).
type containerLister interface {
	Containers() []runtimes.Container
}

// containerChanges wakes the container follower; the zero value is ready.
// notify is the Resolver's OnChange: it never blocks, and changes that come
// while the follower is busy are folded into one.
type containerChanges struct {
	once sync.Once
	c    chan struct{}
}

func (cc *containerChanges) ch() chan struct{} {
	cc.once.Do(func() { cc.c = make(chan struct{}, 1) })
	return cc.c
}

func (cc *containerChanges) notify() {
	select {
	case cc.ch() <- struct{}{}:
	default:
	}
}

// followContainers keeps the enforcer's container list equal to the
// Resolver's until ctx ends.
func (a *Agent) followContainers(list containerLister) func(context.Context) error {
	return func(ctx context.Context) error {
		var last string
		for {
			last = a.syncContainers(list.Containers(), last)
			select {
			case <-ctx.Done():
				return nil
			case <-a.containers.ch():
			}
		}
	}
}

// syncContainers hands the containers to the enforcer and logs which
// container policies apply where when that changed since last.
func (a *Agent) syncContainers(cs []runtimes.Container, last string) string {
	a.mu.Lock()
	scoper, ok := a.enforcer.(containerScoper)
	if !ok {
		a.mu.Unlock()
		return last
	}
	un, err := scoper.SetContainers(enforcerContainers(cs))
	if err != nil {
		a.mu.Unlock()
		a.log.Error("enforcer rejected the container list; container policies keep the previous one", "enforcer", a.enforcer.Name(), "err", err)
		return last
	}
	a.status.Unenforced = un
	store := a.store
	a.mu.Unlock()
	// The store publishes to onPolicies with its own lock held, which then
	// takes a.mu: read its snapshot only without a.mu.
	var rs *hostpolicy.RuleSet
	if store != nil {
		rs = store.Snapshot().RuleSet
	}
	summary := scopeSummary(rs, cs)
	if summary != last {
		a.log.Info("container policies in force", "containers", len(cs), "scopes", summary)
	}
	return summary
}

func enforcerContainers(cs []runtimes.Container) []hostpolicy.Container {
	out := make([]hostpolicy.Container, 0, len(cs))
	for i := range cs {
		c := &cs[i]
		out = append(out, hostpolicy.Container{
			ID:       c.ID,
			CgroupID: c.CgroupID,
			PidNS:    c.PidNS,
			MntNS:    c.MntNS,
			Info:     containerInfo(c),
		})
	}
	return out
}

func containerInfo(c *runtimes.Container) hostpolicy.ContainerInfo {
	return hostpolicy.ContainerInfo{Name: c.Name, Image: c.Image, Identities: c.Identities()}
}

// scopeSummary is "name=policy+policy ..." for the containers that have
// container policies, sorted, for the log.
func scopeSummary(rs *hostpolicy.RuleSet, cs []runtimes.Container) string {
	if rs == nil || len(rs.ContainerPolicies) == 0 {
		return ""
	}
	var parts []string
	for i := range cs {
		if pols := rs.PoliciesFor(containerInfo(&cs[i])); len(pols) > 0 {
			parts = append(parts, cs[i].Name+"="+strings.Join(pols, "+"))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// unscopedContainerRules adds to unenforced the container policies' rules
// that nothing enforces here: every one when the enforcer cannot scope
// rules to containers (or there is none), and every one when no container
// runtime is followed, since no container is then ever known.
func (a *Agent) unscopedContainerRules(rs *hostpolicy.RuleSet, unenforced map[uint32]string) {
	why := ""
	switch _, scoper := a.enforcer.(containerScoper); {
	case a.enforcer == nil:
		why = "no kernel enforcer is available on this host"
	case !scoper:
		why = "container policies are enforced by BPFLSM only, not by " + a.enforcer.Name()
	case a.pipe == nil || a.pipe.ctrs == nil:
		why = "no container runtime is followed (dockerSocket and containerdSocket are none, or unusable)"
	default:
		return
	}
	for _, r := range rs.ContainerRules {
		if _, ok := unenforced[r.ID]; !ok {
			unenforced[r.ID] = why
		}
	}
}

// openRuntimes follows Docker and containerd so events from containers carry
// their identity. Absent runtimes are retried in the background.
func (a *Agent) openRuntimes(cfg *config.Config) *runtimes.Resolver {
	if cfg.DockerSocket == "none" && cfg.ContainerdSocket == "none" {
		return nil
	}
	r, err := runtimes.New(runtimes.Options{DockerSocket: cfg.DockerSocket, ContainerdSocket: cfg.ContainerdSocket, Logger: a.log,
		OnChange: a.containers.notify})
	if err != nil {
		a.log.Warn("container runtimes: not followed; container events are reported as host events", "err", err)
		return nil
	}
	return r
}
