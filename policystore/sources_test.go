package policystore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// Documents of another source go through what files go through, beside
// the directory, and never disturb it.
func TestSourceDocuments(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "local.yaml"), []byte(policyYAML("local", "/etc/local", "Block")), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, hostpolicy.Options{Host: "testhost"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	const k1, k2 = "/kubearmor/policies/a", "/kubearmor/policies/b"
	inForce := func() []string { return policyNames(s.Policies()) }
	entry := func(name string) FileStatus {
		for _, f := range s.Snapshot().Files {
			if f.Name == name {
				return f
			}
		}
		return FileStatus{}
	}

	s.Update("etcd", map[string][]byte{k1: []byte(policyYAML("from-etcd", "/etc/a", "Block")), k2: []byte(policyYAML("other", "/etc/b", "Audit"))}, true, "etcd sync")
	if got := inForce(); !slices.Equal(got, []string{"from-etcd", "local", "other"}) {
		t.Fatalf("in force: %v", got)
	}

	// A bad document is rejected with its key and line; its last good
	// version stays in force.
	s.Update("etcd", map[string][]byte{k1: []byte(policyYAML("from-etcd", "relative", "Block"))}, false, "etcd revision 3")
	if f := entry("etcd:" + k1); len(f.Errors) == 0 || !strings.HasPrefix(f.Errors[0], "etcd:/kubearmor/policies/a:11: spec.file.matchPaths[0].path") || !slices.Equal(f.Policies, []string{"from-etcd"}) {
		t.Fatalf("rejected document: %+v", f)
	}
	if got := string(s.Documents("etcd")[k1]); !strings.Contains(got, "/etc/a") {
		t.Fatalf("Documents must give the last good version, got %q", got)
	}

	// A name the directory holds is refused, naming both.
	s.Update("etcd", map[string][]byte{"/kubearmor/policies/dup": []byte(policyYAML("local", "/etc/x", "Block"))}, false, "etcd revision 4")
	if f := entry("etcd:/kubearmor/policies/dup"); len(f.Errors) != 1 || !strings.Contains(f.Errors[0], "policy local is already defined in "+filepath.Join(dir, "local.yaml")) {
		t.Fatalf("duplicate: %+v", f)
	}

	// PolicyService cannot change a policy that etcd holds.
	ev := &hostpolicy.Event{Type: "ADDED", YAML: []byte(policyYAML("other", "/etc/c", "Block"))}
	ps, _ := hostpolicy.Parse("x", ev.YAML)
	ev.Policy = ps[0]
	if _, err := s.Apply(ev); err == nil || !strings.Contains(err.Error(), "comes from etcd:/kubearmor/policies/b") {
		t.Fatalf("PolicyService over an etcd policy: %v", err)
	}

	// A rescan and the directory's removal leave etcd's entries alone.
	if err := s.Rescan(); err != nil {
		t.Fatal(err)
	}
	if got := inForce(); !slices.Contains(got, "other") {
		t.Fatalf("rescan dropped etcd's policies: %v", got)
	}
	os.RemoveAll(dir)
	s.Rescan()
	if got := inForce(); !slices.Equal(got, []string{"from-etcd", "other"}) {
		t.Fatalf("after the directory's removal: %v", got)
	}

	// A deleted key goes; a full sync removes every key it does not name,
	// and the duplicate, no longer conflicting, is retried and accepted.
	s.Update("etcd", map[string][]byte{k2: nil}, false, "etcd revision 5")
	if got := inForce(); !slices.Equal(got, []string{"from-etcd", "local"}) {
		t.Fatalf("after a delete (the duplicate is retried now that local.yaml is gone): %v", got)
	}
	s.Update("etcd", map[string][]byte{k1: []byte(policyYAML("from-etcd", "/etc/a2", "Block"))}, true, "etcd resync")
	if got := inForce(); !slices.Equal(got, []string{"from-etcd"}) || len(s.Documents("etcd")) != 1 {
		t.Fatalf("after a full sync: %v, docs %v", got, s.Documents("etcd"))
	}
	if rs := s.Snapshot().RuleSet; len(rs.Rules) != 1 || rs.Rules[0].Value != "/etc/a2" {
		t.Fatalf("rules: %v", values(rs))
	}
	// An empty document holds no policies, at once (it is never half-written).
	s.Update("etcd", map[string][]byte{k1: {}}, false, "etcd revision 7")
	if got := inForce(); len(got) != 0 {
		t.Fatalf("an empty document: %v", got)
	}
}
