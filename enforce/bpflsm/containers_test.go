package bpflsm

import (
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

func compileDocs(t *testing.T, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", ContainerPostures: hostpolicy.Postures{File: "block"}}, docs...)
}

// build runs without a kernel: which containers share a scope, which key
// finds each, and what is reported as unenforced.
func TestBuildScopes(t *testing.T) {
	rs := compileDocs(t,
		policy("host", "  process:\n    matchPaths:\n    - path: /bin/host\n  action: Block\n"),
		containerPolicyDoc("web", "      kubearmor.io/container.name: web-.*\n", "  process:\n    matchPaths:\n    - path: /bin/sh\n  action: Block\n"),
		containerPolicyDoc("front", "      tier: front\n", `  file:
    matchPaths:
    - path: /etc/app.conf
      action: Allow
  syscalls:
    matchSyscalls:
    - syscall: [chmod]
  network:
    matchDNSQueries:
    - domain: example.com
  action: Block
`),
	)
	withTier := func(name string) hostpolicy.ContainerInfo {
		ci := info(name)
		ci.Identities = append(ci.Identities, "tier=front")
		return ci
	}
	g := build(rs, []hostpolicy.Container{
		{ID: "1", CgroupID: 101, Info: info("web-1")},
		{ID: "2", CgroupID: 102, Info: info("web-2")},
		{ID: "3", CgroupID: 103, Info: withTier("web-3")},
		{ID: "4", CgroupID: 104, Info: info("db")},
		{ID: "5", PidNS: 7, MntNS: 8, Info: withTier("cache")},
		{ID: "6", Info: info("web-unknown")}, // no key at all: cannot be scoped
	})
	want := map[scopeKey]uint32{
		{scopeByCgroup, 101}:   1, // web
		{scopeByCgroup, 102}:   1,
		{scopeByCgroup, 103}:   2, // front + web
		{scopeByCgroup, 104}:   scopeNone,
		{scopeByNS, 7<<32 | 8}: 3, // front
	}
	if len(g.keys) != len(want) {
		t.Errorf("keys = %v, want %v", g.keys, want)
	}
	for k, v := range want {
		if g.keys[k] != v {
			t.Errorf("key %+v -> scope %d, want %d", k, g.keys[k], v)
		}
	}
	if g.scoped != 1<<scopeByCgroup|1<<scopeByNS {
		t.Errorf("scoped = %#x", g.scoped)
	}
	if len(g.scopes) != 3 {
		t.Fatalf("%d scopes, want 3", len(g.scopes))
	}
	// Scope 1 has only web's exec rule; scope 2 adds front's file allow-list.
	if len(g.scopes[0].paths) != 1 || g.scopes[0].cfg.allowlist != 0 {
		t.Errorf("scope 1: %+v", g.scopes[0])
	}
	if len(g.scopes[1].paths) != 2 || g.scopes[1].cfg.allowlist != 1<<catFile || g.scopes[1].cfg.postureBlock&(1<<catFile) == 0 {
		t.Errorf("scope 2: paths %v cfg %+v", g.scopes[1].paths, g.scopes[1].cfg)
	}
	// The host scope has the host rule only, and no container rule.
	if len(g.host.paths) != 1 || g.host.cfg.allowlist != 0 {
		t.Errorf("host: %+v", g.host.paths)
	}
	var unenforced []string
	for _, r := range rs.ContainerRules {
		if why, ok := g.unenforced[r.ID]; ok {
			unenforced = append(unenforced, r.Category.String()+": "+why)
		}
	}
	if len(unenforced) != 2 {
		t.Errorf("unenforced container rules: %v, want the syscall and the DNS rule", unenforced)
	}

	// No containers: the host scope alone, no lookups in the kernel.
	if g := build(rs, nil); g.scoped != 0 || len(g.keys) != 0 || len(g.scopes) != 0 {
		t.Errorf("without containers: %+v", g)
	}
	// A policy no running container has is still checked.
	if g := build(rs, nil); len(g.unenforced) != 2 {
		t.Errorf("without containers, unenforced = %v", g.unenforced)
	}
}

// capsAny is what the capability hooks trust to return early: it must hold
// every capability a rule of any scope names, and every bit when a scope
// decides every capability.
func TestCapsAny(t *testing.T) {
	const netRaw, sysModule, sysAdmin = 13, 16, 21
	caps := func(spec string) string {
		return policy("caps", "  capabilities:\n    matchCapabilities:\n"+spec)
	}
	ctr := []hostpolicy.Container{{ID: "1", CgroupID: 101, Info: info("web-1")}}
	for _, tc := range []struct {
		name string
		docs []string
		want uint64
	}{
		{"no rules", nil, 0},
		{"process rules only", []string{policy("p", "  process:\n    matchPaths:\n    - path: /bin/x\n  action: Block\n")}, 0},
		{"host block", []string{caps("    - capability: net_raw\n  action: Block\n")}, 1 << netRaw},
		{"from a source", []string{caps("    - capability: sys_module\n      fromSource:\n      - path: /bin/x\n  action: Block\n")}, 1 << sysModule},
		{"audit", []string{caps("    - capability: net_raw\n  action: Audit\n")}, 1 << netRaw},
		{"a container's scope", []string{
			caps("    - capability: net_raw\n  action: Block\n"),
			containerPolicyDoc("web", "      kubearmor.io/container.name: web-.*\n",
				"  capabilities:\n    matchCapabilities:\n    - capability: sys_admin\n  action: Block\n"),
		}, 1<<netRaw | 1<<sysAdmin},
		{"allow-list", []string{caps("    - capability: net_raw\n  action: Allow\n")}, ^uint64(0)},
		{"allow-list from a source", []string{caps("    - capability: net_raw\n      fromSource:\n      - path: /bin/x\n  action: Allow\n")}, ^uint64(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := compileDocs(t, tc.docs...)
			if got := build(rs, ctr).capsAny(); got != tc.want {
				t.Errorf("capsAny = %#x, want %#x", got, tc.want)
			}
		})
	}
}
