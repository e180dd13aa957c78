package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/policysource/etcd"
	"github.com/armorhost/kubearmor/policysource/etcd/etcdtest"
)

// `kubearmor fleet status` against a real etcd: the hosts' keys written by
// the agents' own publisher, read with the configuration's etcd keys or the
// flags, as text and JSON; a stray key is named and fails the exit status
// without hiding the hosts.
func TestFleetStatusCommand(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, h := range []etcd.HostStatus{
		{Host: "web-2", Version: "v1", Tier: "BPFLSM", Labels: map[string]string{"env": "prod"}, Revision: 7,
			Policies: []etcd.PolicyInForce{{Name: "block-curl", Source: "etcd:/kubearmor/policies/block-curl", Revision: 5, Rules: 2}}},
		{Host: "web-1", Version: "v1", Labels: map[string]string{"env": "dev"},
			Policies:    []etcd.PolicyInForce{{Name: "local", Source: "local.yaml", Rules: 1}},
			NotEnforced: []string{"local: Block network tcp: no enforcer for network rules"}},
	} {
		p := etcd.NewPublisher(cli, "/kubearmor/hosts/", h.Host, 10*time.Second, func() etcd.HostStatus { return h }, quiet)
		go p.Run(ctx)
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a hang guard
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	until("both host keys", func() bool {
		h, err := etcd.ListHosts(ctx, cli, "/kubearmor/hosts/")
		return err == nil && len(h) == 2
	})

	conf := filepath.Join(t.TempDir(), "kubearmor.yaml")
	if err := os.WriteFile(conf, []byte("etcdEndpoints: "+srv.ClientURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	fleet := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"fleet", "status"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := fleet("--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"web-1  tier monitor only  version v1  etcd revision 0",
		"  labels: env=dev\n",
		"    local (local.yaml, 1 rules)\n",
		"  rules not enforced: 1\n    local: Block network tcp: no enforcer for network rules\n",
		"web-2  tier BPFLSM  version v1  etcd revision 7",
		"    block-curl (etcd:/kubearmor/policies/block-curl, revision 5, 2 rules)\n",
		"\n2 hosts\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "web-1") > strings.Index(out, "web-2") {
		t.Errorf("hosts not sorted:\n%s", out)
	}

	// --endpoints without a configuration file; --json.
	code, out, errs = fleet("--json", "--endpoints", srv.ClientURL)
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errs)
	}
	var hosts []etcd.HostStatus
	if err := json.Unmarshal([]byte(out), &hosts); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(hosts) != 2 || hosts[1].Host != "web-2" || hosts[1].Policies[0].Revision != 5 || hosts[0].NotEnforced[0] == "" {
		t.Fatalf("--json: %+v", hosts)
	}

	// A stray key under the prefix: named, exit 1, the hosts still listed.
	srv.Put(cli, "/kubearmor/hosts/stray", "not json")
	code, out, errs = fleet("--config", conf)
	if code != 1 || !strings.Contains(errs, "/kubearmor/hosts/stray: not a host status") || !strings.Contains(out, "2 hosts") {
		t.Fatalf("stray key: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	srv.Delete(cli, "/kubearmor/hosts/stray")

	// Another prefix: none there.
	code, out, _ = fleet("--config", conf, "--prefix", "/other/")
	if code != 0 || !strings.Contains(out, "no hosts under /other/") {
		t.Fatalf("empty prefix: exit %d: %s", code, out)
	}

	// A stopped agent's key goes: the publishers stop, their leases are revoked.
	cancel()
	until("keys gone after the publishers stopped", func() bool {
		_, out, _ := fleet("--config", conf)
		return strings.Contains(out, "no hosts under /kubearmor/hosts/")
	})

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no endpoints", []string{"--config", missing}, 2, "config"},
		{"no endpoints in the file", []string{"--config", writeConf(t, "host: x\n")}, 2, "no etcd endpoints: set etcdEndpoints in"},
		{"not a URL", []string{"--config", conf, "--endpoints", "10.0.0.1:2379"}, 2, "must be an http:// or https:// URL"},
		{"cert without key", []string{"--config", conf, "--cert", "/x.crt"}, 2, "etcdCert and etcdKey go together"},
		{"etcd unreachable", []string{"--config", conf, "--endpoints", "http://127.0.0.1:1", "--timeout", "500ms"}, 1, "etcd http://127.0.0.1:1:"},
		{"unknown flag", []string{"--nope"}, 2, "Usage: kubearmor fleet status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := fleet(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errs, tc.want)
			}
		})
	}

	var out2 bytes.Buffer
	if code := run([]string{"fleet", "--help"}, &out2, io.Discard); code != 0 || !strings.Contains(out2.String(), "etcdctl get --prefix /kubearmor/hosts/") {
		t.Fatalf("fleet --help: exit %d: %s", code, out2.String())
	}
}

func writeConf(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "kubearmor.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// statusText is `kubearmor status` (the built binary) of the agent at sock.
func statusText(t *testing.T, sock string) string {
	t.Helper()
	out, err := exec.Command(binary, "status", "--addr", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("kubearmor status: %v\n%s", err, out)
	}
	return string(out)
}
