package feeder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/feeder/policypb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exact request bytes of `karmor vm policy add|delete` (karmor-client.md §5).
const (
	karmorAddSleep = `{"type":"ADDED","object":{"metadata":{"name":"hsp-block-sleep"},"spec":{"nodeSelector":{"matchLabels":{"kubernetes.io/hostname":"myhost"}},"process":{"matchPaths":[{"path":"/usr/bin/sleep"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"severity":5,"message":"blocked sleep","action":"Block"},"status":{}}}`
	// The trailing "---" of a YAML file makes karmor send the previous kind
	// again with an empty object.
	karmorTrailingEmpty = `{"type":"ADDED","object":{"metadata":{},"spec":{"nodeSelector":{},"process":{},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"action":""},"status":{}}}`
	karmorContainer     = `{"type":"ADDED","object":{"metadata":{"name":"ksp-b","namespace":"container_namespace"},"spec":{"selector":{"matchLabels":{"kubearmor.io/container.name":"web"}},"process":{"matchPaths":[{"path":"/bin/sh"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"action":"Block"},"status":{}}}`
)

func karmorDelete(add string) string {
	return strings.Replace(add, `"type":"ADDED"`, `"type":"DELETED"`, 1)
}

func withMessage(add, msg string) string {
	return strings.Replace(add, `"message":"blocked sleep"`, `"message":"`+msg+`"`, 1)
}

func TestPolicyServiceStatuses(t *testing.T) {
	policies := t.TempDir()
	applier := &dirApplier{dir: policies, failName: "hsp-disk-full"}
	a := startAgent(t, func(o *Options) { o.Policies = applier; o.Probe = applier })
	file := filepath.Join(policies, "hsp-block-sleep.yaml")
	exists := func() bool { _, err := os.Stat(file); return err == nil }

	steps := []struct {
		name    string
		payload string
		want    policypb.PolicyStatus
		file    bool // whether the policy file exists afterwards
	}{
		{"karmor add", karmorAddSleep, StatusApplied, true},
		{"identical re-add", karmorAddSleep, StatusApplied, true},
		{"re-add with a change", withMessage(karmorAddSleep, "changed"), StatusModified, true},
		{"MODIFIED event", strings.Replace(withMessage(karmorAddSleep, "again"), "ADDED", "MODIFIED", 1), StatusModified, true},
		{"trailing --- empty object", karmorTrailingEmpty, StatusInvalid, true},
		{"empty-object delete", karmorDelete(karmorTrailingEmpty), StatusInvalid, true},
		{"karmor delete", karmorDelete(karmorAddSleep), StatusDeleted, false},
		{"delete again", karmorDelete(karmorAddSleep), StatusNotExist, false},
		{"not JSON", `hsp-block-sleep`, StatusInvalid, false},
		{"truncated JSON", karmorAddSleep[:60], StatusInvalid, false},
		{"empty payload", ``, StatusInvalid, false},
		{"JSON null", `null`, StatusInvalid, false},
		{"JSON array", `[1,2]`, StatusInvalid, false},
		{"unknown type", strings.Replace(karmorAddSleep, "ADDED", "REPLACED", 1), StatusInvalid, false},
		{"no object", `{"type":"ADDED"}`, StatusInvalid, false},
		{"bad action", strings.Replace(karmorAddSleep, `"action":"Block"`, `"action":"Deny"`, 1), StatusInvalid, false},
		{"relative path", strings.Replace(karmorAddSleep, `/usr/bin/sleep`, `sleep`, 1), StatusInvalid, false},
		{"delete of a path-like name", `{"type":"DELETED","object":{"metadata":{"name":"../../etc/passwd"}}}`, StatusInvalid, false},
		{"delete of an upper-case name", `{"type":"DELETED","object":{"metadata":{"name":"Hsp"}}}`, StatusInvalid, false},
		{"oversized", `{"type":"ADDED","object":{"metadata":{"name":"big","annotations":{"a":"` + strings.Repeat("x", 2<<20) + `"}}}}`, StatusInvalid, false},
		{"binary garbage", "\x00\xff\xfe{\"type\":", StatusInvalid, false},
		{"applier fails", strings.Replace(karmorAddSleep, "hsp-block-sleep", "hsp-disk-full", 1), StatusFailure, false},
	}
	for name, target := range a.targets() {
		c := policypb.NewPolicyServiceClient(dial(t, target))
		for _, s := range steps {
			resp, err := c.HostPolicy(context.Background(), &policypb.Policy{Policy: []byte(s.payload)})
			if err != nil {
				t.Fatalf("%s %s: %v (karmor would print \"Error: failed to send policy\")", name, s.name, err)
			}
			// karmor prints exactly this line.
			if got, want := fmt.Sprintf("Policy %s ", resp.Status), fmt.Sprintf("Policy %s ", s.want); got != want {
				t.Errorf("%s %s: %q, want %q", name, s.name, got, want)
			}
			if exists() != s.file {
				t.Errorf("%s %s: policy file exists = %v, want %v", name, s.name, exists(), s.file)
			}
			if s.file {
				if fi, err := os.Stat(file); err == nil && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s %s: file mode %v", name, s.name, fi.Mode().Perm())
				}
			}
		}
	}
}

func TestPolicyFileIsReadableYAML(t *testing.T) {
	policies := t.TempDir()
	applier := &dirApplier{dir: policies}
	a := startAgent(t, func(o *Options) { o.Policies = applier })
	c := policypb.NewPolicyServiceClient(dial(t, "unix://"+a.socket))
	if resp, err := c.HostPolicy(context.Background(), &policypb.Policy{Policy: []byte(karmorAddSleep)}); err != nil || resp.Status != StatusApplied {
		t.Fatalf("add: %v %v", resp, err)
	}
	data, err := os.ReadFile(filepath.Join(policies, "hsp-block-sleep.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: security.kubearmor.com/v1", "kind: KubeArmorHostPolicy", "name: hsp-block-sleep", "path: /usr/bin/sleep", "action: Block"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("policy file lacks %q:\n%s", want, data)
		}
	}
}

// Above MaxRequestBytes gRPC itself refuses the request; the agent stays up.
func TestRequestAboveTransportLimit(t *testing.T) {
	a := startAgent(t, func(o *Options) { o.Policies = &dirApplier{dir: t.TempDir()} })
	c := policypb.NewPolicyServiceClient(dial(t, a.tcp))
	_, err := c.HostPolicy(context.Background(), &policypb.Policy{Policy: make([]byte, MaxRequestBytes+1)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%d-byte request: %v, want ResourceExhausted", MaxRequestBytes+1, err)
	}
	if resp, err := c.HostPolicy(context.Background(), &policypb.Policy{Policy: []byte(karmorAddSleep)}); err != nil || resp.Status != StatusApplied {
		t.Fatalf("agent unusable after an oversized request: %v %v", resp, err)
	}
}

func TestPolicyServiceNotEnabled(t *testing.T) {
	a := startAgent(t, nil) // no applier
	c := policypb.NewPolicyServiceClient(dial(t, a.tcp))
	ctx := context.Background()
	for name, call := range map[string]func() (*policypb.Response, error){
		"hostPolicy without a store": func() (*policypb.Response, error) {
			return c.HostPolicy(ctx, &policypb.Policy{Policy: []byte(karmorAddSleep)})
		},
		"containerPolicy": func() (*policypb.Response, error) {
			return c.ContainerPolicy(ctx, &policypb.Policy{Policy: []byte(karmorContainer)})
		},
		"networkPolicy": func() (*policypb.Response, error) {
			return c.NetworkPolicy(ctx, &policypb.Policy{Policy: []byte(`{}`)})
		},
	} {
		resp, err := call()
		if err != nil || resp.Status != StatusNotEnabled {
			t.Errorf("%s: %v %v, want NotEnabled", name, resp, err)
		}
	}
}

func TestProbeDataListsHostPolicies(t *testing.T) {
	policies := t.TempDir()
	applier := &dirApplier{dir: policies}
	a := startAgent(t, func(o *Options) { o.Policies = applier; o.Probe = applier })
	ctx := context.Background()
	probe := policypb.NewProbeServiceClient(dial(t, a.tcp))
	resp, err := probe.GetProbeData(ctx, &policypb.Empty{})
	if err != nil || len(resp.HostMap) != 0 {
		t.Fatalf("no policies: %v %v", resp, err)
	}
	pc := policypb.NewPolicyServiceClient(dial(t, a.tcp))
	for _, p := range []string{karmorAddSleep, strings.Replace(karmorAddSleep, "hsp-block-sleep", "hsp-a", 1)} {
		if r, err := pc.HostPolicy(ctx, &policypb.Policy{Policy: []byte(p)}); err != nil || r.Status != StatusApplied {
			t.Fatalf("add: %v %v", r, err)
		}
	}
	resp, err = probe.GetProbeData(ctx, &policypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	host := resp.HostMap["vm1"]
	if host == nil || fmt.Sprint(host.PolicyList) != "[hsp-a hsp-block-sleep]" || len(host.PolicyDataList) != 2 {
		t.Fatalf("hostMap = %v", resp.HostMap)
	}
	data := string(host.PolicyDataList[1].Policy)
	for _, want := range []string{`"metadata":{"policyName":"hsp-block-sleep"}`, `"path":"/usr/bin/sleep"`, `"action":"Block"`} {
		if !strings.Contains(data, want) {
			t.Errorf("policy data lacks %s: %s", want, data)
		}
	}
}

// FuzzHostPolicyPayload feeds arbitrary bytes through the PolicyService path
// (decode, validate, normalize, apply to a real directory): it must never
// panic, must answer with a known status, and a policy reported Applied
// must exist as a file.
func FuzzHostPolicyPayload(f *testing.F) {
	for _, s := range []string{karmorAddSleep, karmorTrailingEmpty, karmorDelete(karmorAddSleep), karmorContainer,
		`{"type":"MODIFIED","object":{"metadata":{"name":"n"},"spec":{"file":{"matchDirectories":[{"dir":"/etc/","recursive":true}]},"action":"Audit"}}}`,
		`{"TYPE":"added","OBJECT":{"METADATA":{"NAME":"n"},"SPEC":{"process":{"matchPatterns":[{"pattern":"/tmp/*"}]},"action":"Block"}}}`,
		`{"type":"ADDED","object":{"metadata":{"name":"../../etc/passwd"},"spec":{"process":{"matchPaths":[{"path":"/bin/x"}]},"action":"Block"}}}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	srv, err := New(Options{Host: "fuzz", Policies: &dirApplier{dir: dir}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		st := srv.applyHostPolicy(payload)
		if _, known := policypb.PolicyStatus_name[int32(st)]; !known {
			t.Fatalf("unknown status %d", st)
		}
	})
}
