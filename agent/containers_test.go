package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/runtimes"
)

// scopingEnforcer records what the agent hands a container-scoping
// enforcer. The real one (enforce/bpflsm) needs BPF-LSM, which this host's kernel
// refuses; its own guest tests prove the kernel side.
type scopingEnforcer struct {
	mu    sync.Mutex
	lists [][]hostpolicy.Container
	seen  chan struct{}
}

func (s *scopingEnforcer) Name() string { return "BPFLSM" }
func (s *scopingEnforcer) Apply(*hostpolicy.RuleSet) (map[uint32]string, error) {
	return map[uint32]string{}, nil
}
func (s *scopingEnforcer) Run(context.Context, func(event.Event)) error { return nil }
func (s *scopingEnforcer) Close() error                                 { return nil }
func (s *scopingEnforcer) SetContainers(cs []hostpolicy.Container) (map[uint32]string, error) {
	s.mu.Lock()
	s.lists = append(s.lists, cs)
	s.mu.Unlock()
	s.seen <- struct{}{}
	return map[uint32]string{7: "because"}, nil
}

type hostOnlyEnforcer struct{ scopingEnforcer }

func (*hostOnlyEnforcer) Name() string { return "AppArmor" }

// SetContainers is hidden: this enforcer cannot scope rules.
func (*hostOnlyEnforcer) SetContainers() {}

type listFunc func() []runtimes.Container

func (f listFunc) Containers() []runtimes.Container { return f() }

func quietAgent() *Agent {
	return &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestFollowContainers(t *testing.T) {
	a := quietAgent()
	enf := &scopingEnforcer{seen: make(chan struct{}, 8)}
	a.enforcer = enf
	var mu sync.Mutex
	current := []runtimes.Container{{ID: "c1", Name: "web", Image: "busybox:1", Labels: "app=web", NamespaceName: "container_namespace", CgroupID: 42, PidNS: 5, MntNS: 6}}
	list := listFunc(func() []runtimes.Container {
		mu.Lock()
		defer mu.Unlock()
		return current
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.followContainers(list)(ctx) }()

	<-enf.seen // the first list, without any change
	mu.Lock()
	current = nil
	mu.Unlock()
	a.containers.notify() // as the Resolver's OnChange does
	<-enf.seen
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	enf.mu.Lock()
	defer enf.mu.Unlock()
	if len(enf.lists) != 2 || len(enf.lists[0]) != 1 || len(enf.lists[1]) != 0 {
		t.Fatalf("lists handed to the enforcer: %+v", enf.lists)
	}
	c := enf.lists[0][0]
	if c.ID != "c1" || c.CgroupID != 42 || c.PidNS != 5 || c.MntNS != 6 || c.Info.Name != "web" || c.Info.Image != "busybox:1" {
		t.Errorf("container = %+v", c)
	}
	sel, _ := hostpolicy.NewContainerSelector(map[string]string{"app": "web", "namespaceName": "container_namespace"})
	if !sel.Selects(c.Info) {
		t.Errorf("identities %v do not carry the container's labels", c.Info.Identities)
	}
	if a.status.Unenforced[7] != "because" {
		t.Errorf("status.Unenforced = %v, want the enforcer's answer", a.status.Unenforced)
	}
}

// notify never blocks, whatever the follower is doing.
func TestContainerChangesNotifyNeverBlocks(t *testing.T) {
	var cc containerChanges
	for i := 0; i < 100; i++ {
		cc.notify()
	}
	if len(cc.ch()) != 1 {
		t.Fatalf("%d pending wake-ups, want 1", len(cc.ch()))
	}
}

func TestUnscopedContainerRules(t *testing.T) {
	doc := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: web
  process:
    matchPaths:
    - path: /bin/sh
  action: Audit
`
	ps, diags := hostpolicy.Parse("ksp.yaml", []byte(doc))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs := hostpolicy.Compile(ps, hostpolicy.Options{})
	id := rs.ContainerRules[0].ID
	withRuntimes := &pipeline{ctrs: &runtimes.Resolver{}}
	for _, tc := range []struct {
		name string
		enf  Enforcer
		pipe *pipeline
		want string // "" = enforced
	}{
		{"scoping enforcer with runtimes", &scopingEnforcer{}, withRuntimes, ""},
		{"scoping enforcer without runtimes", &scopingEnforcer{}, &pipeline{}, "no container runtime is followed"},
		{"host-only enforcer", &hostOnlyEnforcer{}, withRuntimes, "enforced by BPFLSM only, not by AppArmor"},
		{"no enforcer", nil, withRuntimes, "no kernel enforcer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := quietAgent()
			a.enforcer, a.pipe = tc.enf, tc.pipe
			un := map[uint32]string{}
			a.unscopedContainerRules(rs, un)
			got := un[id]
			if (tc.want == "") != (got == "") || (tc.want != "" && !strings.Contains(got, tc.want)) {
				t.Fatalf("unenforced[%d] = %q, want %q", id, got, tc.want)
			}
		})
	}
}
