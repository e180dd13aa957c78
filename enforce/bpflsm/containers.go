package bpflsm

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// SetContainers replaces the list of running containers; the rules of the
// container policies follow at once, in the same atomic way as Apply. It
// returns the rules that cannot be enforced, as Apply does.
func (e *Enforcer) SetContainers(cs []hostpolicy.Container) (map[uint32]string, error) {
	cs = slices.Clone(cs)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rules == nil {
		// No rule set yet: the first Apply writes the containers with it.
		// Committing now would replace rules an earlier agent left pinned
		// (pin.go) with none.
		e.containers = cs
		return map[uint32]string{}, nil
	}
	un, err := e.commit(e.rules, cs)
	if err != nil {
		return nil, err
	}
	e.containers = cs
	return un, nil
}

type scopeKey struct {
	by uint32
	id uint64
}

// generation is everything one Apply or SetContainers writes.
type generation struct {
	host       *entries
	scopes     []*entries // scope i+1
	keys       map[scopeKey]uint32
	scoped     uint32 // bit per scopeBy* that has keys
	unenforced map[uint32]string
}

// capsAny is caps_any's value for g (enforcer.bpf.c): a bit per capability
// a config of any scope has a rule for, every bit when one decides every
// capability (allow-list mode, for every source or per source).
func (g *generation) capsAny() uint64 {
	var caps uint64
	for _, ent := range append([]*entries{g.host}, g.scopes...) {
		c := ent.cfg
		if c.allowlist&(1<<catCaps) != 0 || c.hasSources&(1<<(catCaps+8)) != 0 {
			return ^uint64(0)
		}
		caps |= c.caps
	}
	return caps
}

// build turns rules and containers into a generation. Containers selected
// by the same set of policies share one scope, so a policy that applies to
// a hundred containers is written once.
func build(rs *hostpolicy.RuleSet, cs []hostpolicy.Container) *generation {
	g := &generation{host: translate(rs), keys: map[scopeKey]uint32{}}
	g.unenforced = g.host.unenforced
	if rs == nil {
		return g
	}
	// Reported whether or not a container runs the policy now, each
	// policy alone (two policies never meet unless a container has both).
	byPolicy := map[string][]hostpolicy.Rule{}
	for _, r := range rs.ContainerRules {
		byPolicy[r.Policy] = append(byPolicy[r.Policy], r)
		if r.Category == hostpolicy.CategorySyscall {
			g.unenforced[r.ID] = "syscall rules of container policies are not matched (only host policies' are)"
		}
	}
	for _, rules := range byPolicy {
		for id, why := range translateRules(rules, rs.ContainerPostures).unenforced {
			g.unenforced[id] = why
		}
	}
	ownPid, ownMnt := nsInode("pid"), nsInode("mnt")
	combos := map[string]uint32{}
	for _, c := range cs {
		scope := uint32(scopeNone)
		if pols := rs.PoliciesFor(c.Info); len(pols) > 0 {
			key := strings.Join(pols, "\x00")
			id, ok := combos[key]
			switch {
			case ok:
			case len(g.scopes)+1 >= int(scopeNone):
				for _, r := range rulesOf(rs, pols) {
					g.unenforced[r.ID] = fmt.Sprintf("container %s: more than %d different sets of container policies are in use", c.Info.Name, scopeNone-1)
				}
				id = scopeNone
			default:
				ent := translateRules(rulesOf(rs, pols), rs.ContainerPostures)
				for rid, why := range ent.unenforced {
					g.unenforced[rid] = why
				}
				g.scopes = append(g.scopes, ent)
				id = uint32(len(g.scopes))
				combos[key] = id
			}
			scope = id
		}
		switch {
		case c.CgroupID != 0:
			g.keys[scopeKey{scopeByCgroup, c.CgroupID}] = scope
			g.scoped |= 1 << scopeByCgroup
		case c.PidNS != 0 && c.MntNS != 0 && (c.PidNS != ownPid || c.MntNS != ownMnt):
			g.keys[scopeKey{scopeByNS, uint64(c.PidNS)<<32 | uint64(c.MntNS)}] = scope
			g.scoped |= 1 << scopeByNS
		}
	}
	return g
}

func rulesOf(rs *hostpolicy.RuleSet, policies []string) []hostpolicy.Rule {
	var out []hostpolicy.Rule
	for _, r := range rs.ContainerRules {
		if slices.Contains(policies, r.Policy) {
			out = append(out, r)
		}
	}
	return out
}

// nsInode is the inode of one of the agent's own namespaces (the host's),
// 0 when it cannot be read.
func nsInode(kind string) uint32 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/"+kind, &st); err != nil {
		return 0
	}
	return uint32(st.Ino)
}
