package policystore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

func policyYAML(name, path, action string) string {
	return hostpolicytest.HostPolicy(name, fmt.Sprintf("  file:\n    matchPaths:\n    - path: %s\n  action: %s\n", path, action))
}

// recorder collects published snapshots for a test to wait on.
type recorder struct{ ch chan Snapshot }

func newRecorder() *recorder { return &recorder{ch: make(chan Snapshot, 100)} }

func (r *recorder) publish(s Snapshot) { r.ch <- s }

// waitFor returns the first snapshot that satisfies ok; the test fails after a
// generous deadline (a hang guard, not a timing assertion).
func (r *recorder) waitFor(t *testing.T, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s := <-r.ch:
			if ok(s) {
				return s
			}
		case <-deadline:
			t.Fatalf("no snapshot with %s", what)
		}
	}
}

func values(rs *hostpolicy.RuleSet) []string {
	var out []string
	for _, r := range rs.Rules {
		out = append(out, r.Policy+":"+r.Value+":"+r.Action)
	}
	return out
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startStore(t *testing.T, dir string) (*Store, *recorder) {
	t.Helper()
	rec := newRecorder()
	s, err := Open(dir, hostpolicy.Options{Host: "testhost"}, quietLog(), rec.publish)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, rec
}

func TestLiveReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "block.yaml")
	s, rec := startStore(t, dir)
	rec.waitFor(t, "the initial empty set", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 0 })

	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hasRules := func(want ...string) func(Snapshot) bool {
		return func(s Snapshot) bool { return slices.Equal(values(s.RuleSet), want) }
	}

	// write
	write(policyYAML("p1", "/etc/shadow", "Block"))
	rec.waitFor(t, "p1 blocking /etc/shadow", hasRules("p1:/etc/shadow:Block"))

	// change
	write(policyYAML("p1", "/etc/gshadow", "Audit"))
	rec.waitFor(t, "p1 auditing /etc/gshadow", hasRules("p1:/etc/gshadow:Audit"))

	// break: the last good version stays, and the error is reported with file:line and field
	write(strings.Replace(policyYAML("p1", "/etc/passwd", "Block"), "path: /etc/passwd", "path: etc/passwd", 1))
	snap := rec.waitFor(t, "the broken file reported", func(s Snapshot) bool {
		return len(s.Files) == 1 && len(s.Files[0].Errors) > 0
	})
	if got := values(snap.RuleSet); !slices.Equal(got, []string{"p1:/etc/gshadow:Audit"}) {
		t.Fatalf("broken file must keep the last good version, got %v", got)
	}
	if e := snap.Files[0].Errors[0]; !strings.Contains(e, "block.yaml:11: spec.file.matchPaths[0].path: must be absolute") {
		t.Fatalf("error must name file:line and field: %q", e)
	}

	// fix
	write(policyYAML("p1", "/etc/passwd", "Block"))
	snap = rec.waitFor(t, "the fixed file", hasRules("p1:/etc/passwd:Block"))
	if len(snap.Files[0].Errors) != 0 {
		t.Fatalf("errors must clear once fixed: %v", snap.Files[0].Errors)
	}

	// rename (an editor's save, or mv): the policy follows the new name
	renamed := filepath.Join(dir, "renamed.yml")
	if err := os.Rename(file, renamed); err != nil {
		t.Fatal(err)
	}
	snap = rec.waitFor(t, "the renamed file", func(s Snapshot) bool {
		return len(s.Files) == 1 && s.Files[0].Name == "renamed.yml" && slices.Equal(values(s.RuleSet), []string{"p1:/etc/passwd:Block"})
	})

	// delete
	if err := os.Remove(renamed); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "no rules after delete", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 0 && len(s.Files) == 0 })

	if got := s.Snapshot().Generation; got < 6 {
		t.Fatalf("each change must publish a new generation, at %d", got)
	}
}

func TestDuplicateNamesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(policyYAML("same", "/etc/a", "Block")), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(policyYAML("same", "/etc/b", "Block")), 0o600)
	s, rec := startStore(t, dir)
	snap := s.Snapshot()
	if got := values(snap.RuleSet); !slices.Equal(got, []string{"same:/etc/a:Block"}) {
		t.Fatalf("the first file keeps the name: %v", got)
	}
	e := strings.Join(snap.Files[1].Errors, "\n")
	if !strings.Contains(e, "b.yaml:4: metadata.name: policy same is already defined in "+filepath.Join(dir, "a.yaml")) {
		t.Fatalf("duplicate error must name both files: %q", e)
	}
	// Once a.yaml goes, b.yaml's policy takes effect without touching b.yaml.
	os.Remove(filepath.Join(dir, "a.yaml"))
	rec.waitFor(t, "b.yaml accepted", func(s Snapshot) bool {
		return slices.Equal(values(s.RuleSet), []string{"same:/etc/b:Block"})
	})
}

func TestNodeSelectionAndOptions(t *testing.T) {
	dir := t.TempDir()
	other := strings.Replace(policyYAML("elsewhere", "/etc/x", "Block"), `"*"`, "otherhost", 1)
	os.WriteFile(filepath.Join(dir, "other.yaml"), []byte(other), 0o600)
	s, err := Open(dir, hostpolicy.Options{Host: "testhost"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Snapshot().RuleSet.Rules); n != 0 {
		t.Fatalf("a policy for another host must not compile to rules, got %d", n)
	}
	s.SetOptions(hostpolicy.Options{Host: "otherhost"})
	if n := len(s.Snapshot().RuleSet.Rules); n != 1 {
		t.Fatalf("after the host option changes the policy applies, got %d rules", n)
	}
}

func parseEvent(t *testing.T, typ, name, path string) *hostpolicy.Event {
	t.Helper()
	payload := fmt.Sprintf(`{"type":%q,"object":{"metadata":{"name":%q},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"}},"process":{"matchPaths":[{"path":%q}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"action":"Block"},"status":{}}}`, typ, name, path)
	ev, diags := hostpolicy.ParseEvent([]byte(payload))
	if ev == nil {
		t.Fatalf("ParseEvent: %v", diags)
	}
	return ev
}

func TestApplyThroughFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		typ, name, path string
		want            Result
	}{
		{"ADDED", "hsp-block-sleep", "/usr/bin/sleep", Applied},
		{"ADDED", "hsp-block-sleep", "/usr/bin/sleep", Applied}, // identical re-add
		{"ADDED", "hsp-block-sleep", "/usr/bin/ls", Modified},
		{"MODIFIED", "hsp-block-sleep", "/usr/bin/cat", Modified},
		{"DELETED", "hsp-block-sleep", "/usr/bin/cat", Deleted},
		{"DELETED", "hsp-block-sleep", "/usr/bin/cat", NotExist},
	}
	file := filepath.Join(dir, "hsp-block-sleep.yaml")
	for i, st := range steps {
		got, err := s.Apply(parseEvent(t, st.typ, st.name, st.path))
		if err != nil || got != st.want {
			t.Fatalf("step %d %s %s: got %v, %v; want %v", i, st.typ, st.path, got, err, st.want)
		}
		info, statErr := os.Stat(file)
		if st.typ == "DELETED" {
			if statErr == nil {
				t.Fatalf("step %d: file must be gone after delete", i)
			}
			continue
		}
		if statErr != nil {
			t.Fatal(statErr)
		}
		if info.Mode().Perm() != 0o600 {
			t.Fatalf("policy file mode %v, want 0600", info.Mode().Perm())
		}
		text, _ := os.ReadFile(file)
		if !strings.Contains(string(text), "path: "+st.path) || !strings.Contains(string(text), "kind: KubeArmorHostPolicy") {
			t.Fatalf("file must be readable YAML of the policy:\n%s", text)
		}
		if got := values(s.Snapshot().RuleSet); !slices.Equal(got, []string{"hsp-block-sleep:" + st.path + ":Block"}) {
			t.Fatalf("step %d: rules %v", i, got)
		}
	}
}

func TestApplyRefusesSharedFile(t *testing.T) {
	dir := t.TempDir()
	two := policyYAML("one", "/etc/a", "Block") + "---\n" + policyYAML("two", "/etc/b", "Block")
	os.WriteFile(filepath.Join(dir, "both.yaml"), []byte(two), 0o600)
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(parseEvent(t, "DELETED", "one", "/x")); err == nil || !strings.Contains(err.Error(), "shares") {
		t.Fatalf("deleting a policy that shares its file must fail clearly, got %v", err)
	}
	if n := len(s.Snapshot().RuleSet.Rules); n != 2 {
		t.Fatalf("nothing may change, got %d rules", n)
	}
}

// BenchmarkReload measures a policy file change until the new RuleSet is
// published: write, watcher event, settle delay, parse, compile, publish.
func BenchmarkReload(b *testing.B) {
	dir := b.TempDir()
	rec := newRecorder()
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), rec.publish)
	if err != nil {
		b.Fatal(err)
	}
	<-rec.ch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	time.Sleep(100 * time.Millisecond) // let the watcher start before timing
	for len(rec.ch) > 0 {
		<-rec.ch
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path := fmt.Sprintf("/srv/file-%d", i)
		os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(policyYAML("p", path, "Block")), 0o600)
		for snap := range rec.ch {
			if len(snap.RuleSet.Rules) == 1 && snap.RuleSet.Rules[0].Value == path {
				break
			}
		}
	}
}
