package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/policysource/etcd"
	"github.com/armorhost/kubearmor/policysource/etcd/etcdtest"
)

const etcdPolicyTmpl = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: etcd-block
spec:
  nodeSelector:
    matchLabels:
      env: %s
  process:
    matchPaths:
    - path: %s/etcd-blocked
  action: Block
`

// A policy put into etcd is enforced by a running agent (a real exec
// refused by the fanotify tier), follows its labels, is deleted; the host
// key appears and disappears with the agent; an agent restarted with etcd
// down enforces from its cache.
func TestFleetEtcdPolicy(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	defer cli.Close()
	cacheDir := t.TempDir()
	conf := []string{"etcdEndpoints: " + srv.ClientURL, "etcdCache: " + filepath.Join(cacheDir, "etcd-policies.json"), "hostLabels:\n  env: prod"}
	d := startDefended(t, defendedOpts{config: conf})
	trueBin, _ := os.ReadFile("/bin/true")
	if err := os.WriteFile(filepath.Join(d.fs, "etcd-blocked"), trueBin, 0o755); err != nil {
		t.Fatal(err)
	}
	refused := func(err error) bool { return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) }
	waitExec := func(when string, wantRefused bool) {
		t.Helper()
		deadline := time.Now().Add(hangGuard)
		for {
			err := d.exec(t, when, "etcd-blocked")
			if refused(err) == wantRefused {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: exec: %v (want refused=%v); log:\n%s", when, err, wantRefused, d.logs.text())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const key = "/kubearmor/policies/etcd-block"
	waitExec("before any etcd policy", false)
	srv.Put(cli, key, fmt.Sprintf(etcdPolicyTmpl, "prod", d.fs))
	waitExec("policy put into etcd", true)
	d.blockHolds(t, "with the etcd policy") // the directory's policy still holds

	hosts := func() []etcd.HostStatus {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		h, err := etcd.ListHosts(ctx, cli, "/kubearmor/hosts/")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	deadline := time.Now().Add(hangGuard)
	for {
		h := hosts()
		if len(h) == 1 && h[0].Host == "testhost" && h[0].Tier == "Fanotify" && h[0].Labels["env"] == "prod" && len(h[0].Policies) == 2 {
			found := false
			for _, p := range h[0].Policies {
				found = found || (p.Name == "etcd-block" && p.Source == "etcd:"+key && p.Revision > 0)
			}
			if found {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("host key: %+v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// `kubearmor status` shows the source following etcd.
	if out := statusText(t, d.socket); !strings.Contains(out, "Etcd:       connected, "+srv.ClientURL+" /kubearmor/policies/, revision ") ||
		!strings.Contains(out, "  host key    /kubearmor/hosts/testhost\n") || strings.Contains(out, "  last sync   never") || strings.Contains(out, "  cache       never") {
		t.Errorf("kubearmor status:\n%s", out)
	}
	if e := agentStatus(t, d.socket).GetEtcd(); e.GetState() != "connected" || e.GetRevision() == 0 || e.GetKeys() != 1 || e.GetLastSyncUnix() == 0 || e.GetFromCache() {
		t.Errorf("kubearmor status --json: etcd %v", e)
	}

	srv.Put(cli, key, fmt.Sprintf(etcdPolicyTmpl, "dev", d.fs))
	waitExec("policy now selects env=dev", false)
	srv.Put(cli, key, "kind: [broken")
	time.Sleep(200 * time.Millisecond) // nothing to wait for: a rejected document changes nothing
	waitExec("a bad document keeps the last good version (env=dev: not enforced here)", false)
	srv.Put(cli, key, fmt.Sprintf(etcdPolicyTmpl, "prod", d.fs))
	waitExec("policy back to env=prod", true)

	// The agent stops: its key goes at once (the lease is revoked).
	d.stop(t)
	if h := hosts(); len(h) != 0 {
		t.Fatalf("host key after the agent stopped: %+v", h)
	}

	// etcd down, the agent restarted: the policy from its cache is in
	// force before the agent says ready. (The new agent marks a new
	// tmpfs, so the cached rule names the old one's path: what is checked
	// is that it is compiled and applied, not a refused exec.)
	srv.Stop()
	d2 := startDefended(t, defendedOpts{config: conf})
	d2.logs.waitFor(t, "policies in force", "etcd cache", "policies=admin-block,etcd-block", "3 rules")
	d2.logs.waitFor(t, "enforcing policies from the etcd cache")
	d2.blockHolds(t, "restarted with etcd down")
	if out := statusText(t, d2.socket); !strings.Contains(out, "enforcing the cache (etcd not read since start)") ||
		!strings.Contains(out, "  last sync   never\n") || strings.Contains(out, "  cache       never") {
		t.Errorf("kubearmor status with etcd down:\n%s", out)
	}
}
