package feeder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/armorhost/kubearmor/feeder/policypb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/policystore"
	"google.golang.org/grpc"
)

// storeApplier is the agent's applier: the real policy store, with its
// results mapped to statuses the way the agent maps them.
type storeApplier struct {
	store *policystore.Store
	mu    sync.Mutex
	last  policystore.Snapshot
}

func newStoreApplier(t *testing.T, dir string) *storeApplier {
	a := &storeApplier{}
	st, err := policystore.Open(dir, hostpolicy.Options{Host: "vm1"}, slog.New(slog.NewTextHandler(io.Discard, nil)), func(s policystore.Snapshot) {
		a.mu.Lock()
		a.last = s
		a.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	a.store = st
	return a
}

func (a *storeApplier) ApplyHostPolicy(ev *hostpolicy.Event) (Status, error) {
	res, err := a.store.Apply(ev)
	if errors.Is(err, policystore.ErrRejected) {
		return StatusInvalid, err
	}
	if err != nil {
		return StatusFailure, err
	}
	st, _ := StatusFromName(res.String())
	return st, nil
}

func (a *storeApplier) Policies() []*hostpolicy.Policy { return a.store.Policies() }

func (a *storeApplier) ruleSet() *hostpolicy.RuleSet {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last.RuleSet
}

// TestContainerPolicyStatuses drives containerPolicy with karmor's exact
// payload through the real policy store: the statuses karmor prints, the
// file written, and the rules compiled for containers only.
func TestContainerPolicyStatuses(t *testing.T) {
	dir := t.TempDir()
	applier := newStoreApplier(t, dir)
	a := startAgent(t, func(o *Options) { o.Policies = applier; o.Probe = applier })
	file := filepath.Join(dir, "ksp-b.yaml")
	exists := func() bool { _, err := os.Stat(file); return err == nil }
	changed := strings.Replace(karmorContainer, `"action":"Block"`, `"action":"Audit"`, 1)

	c := policypb.NewPolicyServiceClient(dial(t, a.tcp))
	steps := []struct {
		name    string
		call    func(context.Context, *policypb.Policy, ...grpc.CallOption) (*policypb.Response, error)
		payload string
		want    policypb.PolicyStatus
		file    bool
	}{
		{"karmor add", c.ContainerPolicy, karmorContainer, StatusApplied, true},
		{"identical re-add", c.ContainerPolicy, karmorContainer, StatusApplied, true},
		{"re-add with a change", c.ContainerPolicy, changed, StatusModified, true},
		{"container policy through hostPolicy", c.HostPolicy, strings.Replace(karmorContainer, "ksp-b", "ksp-c", 1), StatusInvalid, true},
		{"host policy through containerPolicy", c.ContainerPolicy, karmorAddSleep, StatusInvalid, true},
		{"no selector", c.ContainerPolicy, strings.Replace(karmorContainer, `"selector":{"matchLabels":{"kubearmor.io/container.name":"web"}},`, "", 1), StatusInvalid, true},
		{"bad name regexp", c.ContainerPolicy, strings.Replace(karmorContainer, `container.name":"web"`, `container.name":"web("`, 1), StatusInvalid, true},
		{"explicit other kind", c.ContainerPolicy, strings.Replace(karmorContainer, `"metadata"`, `"kind":"KubeArmorHostPolicy","metadata"`, 1), StatusInvalid, true},
		{"trailing --- empty object", c.ContainerPolicy, `{"type":"ADDED","object":{"metadata":{},"spec":{"selector":{},"process":{},"file":{},"network":{},"capabilities":{},"syscalls":{},"action":""},"status":{}}}`, StatusInvalid, true},
		{"karmor delete", c.ContainerPolicy, karmorDelete(karmorContainer), StatusDeleted, false},
		{"delete again", c.ContainerPolicy, karmorDelete(karmorContainer), StatusNotExist, false},
		{"add again", c.ContainerPolicy, karmorContainer, StatusApplied, true},
	}
	for _, s := range steps {
		resp, err := s.call(context.Background(), &policypb.Policy{Policy: []byte(s.payload)})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got, want := fmt.Sprintf("Policy %s ", resp.Status), fmt.Sprintf("Policy %s ", s.want); got != want {
			t.Errorf("%s: %q, want %q", s.name, got, want)
		}
		if exists() != s.file {
			t.Errorf("%s: policy file exists = %v, want %v", s.name, exists(), s.file)
		}
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: KubeArmorPolicy", "namespace: container_namespace", "kubearmor.io/container.name: web", "path: /bin/sh"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("policy file lacks %q:\n%s", want, data)
		}
	}
	rs := applier.ruleSet()
	if len(rs.Rules) != 0 || len(rs.ContainerRules) != 1 || rs.ContainerRules[0].Value != "/bin/sh" || rs.ContainerRules[0].Action != hostpolicy.ActionBlock {
		t.Fatalf("compiled: host %+v container %+v", rs.Rules, rs.ContainerRules)
	}
	if got := rs.PoliciesFor(hostpolicy.ContainerInfo{Name: "web"}); len(got) != 1 || got[0] != "ksp-b" {
		t.Errorf("PoliciesFor(web) = %v", got)
	}

	// karmor probe lists host policies only under hostMap.
	probe, err := policypb.NewProbeServiceClient(dial(t, a.tcp)).GetProbeData(context.Background(), &policypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if len(probe.HostMap) != 0 {
		t.Errorf("a container policy is listed as a host policy: %v", probe.HostMap)
	}
}
