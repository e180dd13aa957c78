package policystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// These tests drive the store on the real file system and real inotify with
// the faults a red-team pass found (issue 13): entries that block or never
// end, symlinks, writes in pieces, empty files, the directory going away,
// permissions, error floods, non-UTF-8 names, oversized PolicyService
// requests, and a slow consumer.

// logRecorder keeps every log record, to check levels and that the log
// stays bounded.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message key=value ..."
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

// matching returns the records containing every one of subs.
func (l *logRecorder) matching(subs ...string) []string {
	var out []string
	for _, r := range l.lines() {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(r, s)
		}
		if all {
			out = append(out, r)
		}
	}
	return out
}

// runStore starts the store's watcher with a recording log.
func runStore(t *testing.T, dir string) (*Store, *recorder, *logRecorder) {
	t.Helper()
	logs := &logRecorder{}
	rec := newRecorder()
	s, err := Open(dir, hostpolicy.Options{Host: "testhost"}, slog.New(logs), rec.publish)
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
	waitWatching(t, s, rec, dir)
	return s, rec, logs
}

// waitWatching returns once the watcher delivers events: a probe file is
// loaded and removed again.
func waitWatching(t *testing.T, s *Store, rec *recorder, dir string) {
	t.Helper()
	probe := filepath.Join(dir, "zz-watch-probe.yaml")
	deadline := time.Now().Add(10 * time.Second)
	for {
		os.WriteFile(probe, []byte(policyYAML("zz-watch-probe", "/probe", "Audit")), 0o600)
		time.Sleep(100 * time.Millisecond)
		if slices.Contains(s.Snapshot().RuleSet.Policies, "zz-watch-probe") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher never started")
		}
	}
	os.Remove(probe)
	for slices.Contains(s.Snapshot().RuleSet.Policies, "zz-watch-probe") {
		if time.Now().After(deadline) {
			t.Fatal("the probe was never removed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for len(rec.ch) > 0 {
		<-rec.ch
	}
}

func fileStatus(s Snapshot, name string) (FileStatus, bool) {
	for _, f := range s.Files {
		if f.Name == name {
			return f, true
		}
	}
	return FileStatus{}, false
}

func errorsOf(name string) func(Snapshot) string {
	return func(s Snapshot) string {
		f, _ := fileStatus(s, name)
		return strings.Join(f.Errors, "\n")
	}
}

// within fails the test if f does not return in d: the store must never
// hang on what it finds in the directory.
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	c := make(chan T, 1)
	go func() { c <- f() }()
	select {
	case v := <-c:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
		panic("unreachable")
	}
}

// specialEntries creates, in dir, one policy-named entry of each kind the
// store must refuse, and returns the error each must report.
func specialEntries(t *testing.T, dir, outside string) map[string]string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o600))
	must(os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")))
	must(os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o700))
	must(os.Symlink(filepath.Join(outside, "absent.yaml"), filepath.Join(dir, "dangling.yaml")))
	l, err := net.Listen("unix", filepath.Join(dir, "sock.yaml"))
	must(err)
	t.Cleanup(func() { l.Close() })
	// A sparse file of 1 GiB: refused from its size, never read.
	big := filepath.Join(outside, "big.yaml")
	must(os.WriteFile(big, nil, 0o600))
	must(os.Truncate(big, 1<<30))
	must(os.Symlink(big, filepath.Join(dir, "bigsym.yaml")))
	must(os.WriteFile(filepath.Join(dir, "big.yaml"), nil, 0o600))
	must(os.Truncate(filepath.Join(dir, "big.yaml"), 1<<30))
	return map[string]string{
		"fifo.yaml":     "fifo.yaml: is a named pipe (FIFO), not a regular file; not read",
		"zero.yaml":     "zero.yaml: symlink to /dev/zero, which is a character device, not a regular file; not read",
		"dir.yaml":      "dir.yaml: is a directory, not a regular file; not read",
		"dangling.yaml": "dangling.yaml: symlink whose target cannot be resolved: no such file or directory",
		"sock.yaml":     "sock.yaml: is a socket, not a regular file; not read",
		"bigsym.yaml":   "bigsym.yaml: file is 1073741824 bytes; the limit is 1048576",
		"big.yaml":      "big.yaml: file is 1073741824 bytes; the limit is 1048576",
	}
}

func TestOnlyRegularFilesAreRead(t *testing.T) {
	checkRefused := func(t *testing.T, snap Snapshot, want map[string]string) {
		t.Helper()
		for name, msg := range want {
			if e := errorsOf(name)(snap); !strings.Contains(e, msg) {
				t.Errorf("%s: error %q, want %q", name, e, msg)
			}
		}
		if got := values(snap.RuleSet); !slices.Equal(got, []string{"good:/etc/shadow:Block"}) {
			t.Errorf("the regular file beside them must be enforced: %v", got)
		}
	}

	t.Run("at start and on rescan", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(policyYAML("good", "/etc/shadow", "Block")), 0o600)
		want := specialEntries(t, dir, outside)
		// A writer holding the FIFO open would make any read of it block.
		w, err := os.OpenFile(filepath.Join(dir, "fifo.yaml"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		logs := &logRecorder{}
		s := within(t, 10*time.Second, "Open", func() *Store {
			s, err := Open(dir, hostpolicy.Options{Host: "h"}, slog.New(logs), func(Snapshot) {})
			if err != nil {
				t.Error(err)
			}
			return s
		})
		checkRefused(t, s.Snapshot(), want)
		if err := within(t, 10*time.Second, "Rescan (SIGHUP)", s.Rescan); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, s.Snapshot(), want)
		if got := logs.matching("ERROR policy rejected", "named pipe"); len(got) != 1 {
			t.Errorf("the FIFO must be reported once in the log (not again on an unchanged rescan), got %q", got)
		}
	})

	t.Run("live", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(policyYAML("good", "/etc/shadow", "Block")), 0o600)
		s, rec, _ := runStore(t, dir)
		want := specialEntries(t, dir, outside)
		snap := rec.waitFor(t, "every special entry refused", func(s Snapshot) bool {
			for name := range want {
				if errorsOf(name)(s) == "" {
					return false
				}
			}
			return true
		})
		checkRefused(t, snap, want)
		within(t, 5*time.Second, "Snapshot", s.Snapshot)
	})

	t.Run("a file replaced by a FIFO keeps its last good version", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "p.yaml")
		os.WriteFile(path, []byte(policyYAML("p", "/etc/shadow", "Block")), 0o600)
		_, rec, _ := runStore(t, dir)
		tmp := filepath.Join(dir, ".fifo")
		if err := syscall.Mkfifo(tmp, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, path)
		snap := rec.waitFor(t, "the FIFO refused", func(s Snapshot) bool { return errorsOf("p.yaml")(s) != "" })
		if got := values(snap.RuleSet); !slices.Equal(got, []string{"p:/etc/shadow:Block"}) {
			t.Fatalf("the last good version must stay in force: %v", got)
		}
	})
}

// A symlink to a regular policy file is enforced the same way at start,
// live, on SIGHUP and after a restart.
func TestSymlinkConsistentAcrossRestart(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "shared-policy.yaml")
	os.WriteFile(target, []byte(policyYAML("linked", "/etc/shadow", "Block")), 0o600)
	link := filepath.Join(dir, "linked.yaml")
	want := []string{"linked:/etc/shadow:Block"}
	enforced := func(s Snapshot) bool { return slices.Equal(values(s.RuleSet), want) }

	s, rec, _ := runStore(t, dir)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the symlink loaded live", enforced)
	if err := s.Rescan(); err != nil || !enforced(s.Snapshot()) {
		t.Fatalf("after SIGHUP: %v, %v", err, values(s.Snapshot().RuleSet))
	}
	restarted, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	if !enforced(restarted.Snapshot()) {
		t.Fatalf("after a restart the symlinked policy must still be enforced: %v", values(restarted.Snapshot().RuleSet))
	}
	os.Remove(link)
	rec.waitFor(t, "the symlink removed", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 0 })
}

// A policy written in two pieces with a pause is never enforced
// half-written: the store keeps the old version until the writer closes.
func TestTwoPieceWriteNotLoadedHalfWritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	two := func(a, b string) string {
		return policyYAML("p", a, "Block") + fmt.Sprintf("    - path: %s\n", b)
	}
	oldText := strings.Replace(two("/etc/a", "/etc/b"), "  action: Block\n", "", 1) + "  action: Block\n"
	if err := os.WriteFile(path, []byte(oldText), 0o600); err != nil {
		t.Fatal(err)
	}
	s, rec, _ := runStore(t, dir)
	oldRules := []string{"p:/etc/a:Block", "p:/etc/b:Block"}
	if got := values(s.Snapshot().RuleSet); !slices.Equal(got, oldRules) {
		t.Fatalf("two Block rules expected, got %v (file:\n%s)", got, oldText)
	}
	newText := strings.NewReplacer("/etc/a", "/etc/c", "/etc/b", "/etc/d").Replace(oldText)
	half := len(newText) / 2

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(newText[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(settle*10 + 300*time.Millisecond)
	if got := values(s.Snapshot().RuleSet); !slices.Equal(got, oldRules) {
		t.Fatalf("half-way through the write the old version must hold, got %v", got)
	}
	for len(rec.ch) > 0 {
		if snap := <-rec.ch; !slices.Equal(values(snap.RuleSet), oldRules) {
			t.Fatalf("a half-written version was published: %v", values(snap.RuleSet))
		}
	}
	if _, err := f.WriteString(newText[half:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	snap := rec.waitFor(t, "the finished write", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 2 && s.RuleSet.Rules[0].Value != "/etc/a" })
	if got := values(snap.RuleSet); !slices.Equal(got, []string{"p:/etc/c:Block", "p:/etc/d:Block"}) {
		t.Fatalf("the finished file must be enforced whole, got %v", got)
	}
}

func TestEmptyFileSettles(t *testing.T) {
	t.Run("truncated and rewritten within the settle time", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "p.yaml")
		os.WriteFile(path, []byte(policyYAML("p", "/etc/a", "Block")), 0o600)
		_, rec, logs := runStore(t, dir)
		os.WriteFile(path, nil, 0o600) // truncate and close
		rec.waitFor(t, "the empty file noticed", func(s Snapshot) bool {
			f, _ := fileStatus(s, "p.yaml")
			return strings.Contains(strings.Join(f.Warnings, "\n"), "empty since")
		})
		time.Sleep(500 * time.Millisecond)
		os.WriteFile(path, []byte(policyYAML("p", "/etc/b", "Block")), 0o600)
		rec.waitFor(t, "the rewritten file", func(s Snapshot) bool {
			return slices.Equal(values(s.RuleSet), []string{"p:/etc/b:Block"})
		})
		time.Sleep(emptySettle + 500*time.Millisecond)
		for len(rec.ch) > 0 {
			if snap := <-rec.ch; len(snap.RuleSet.Rules) == 0 {
				t.Fatal("the policy must never have been dropped")
			}
		}
		if got := logs.matching("empty: no policies"); got != nil {
			t.Fatalf("a file rewritten in time is never taken as empty: %q", got)
		}
	})

	t.Run("stays empty", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "p.yaml")
		os.WriteFile(path, []byte(policyYAML("p", "/etc/a", "Block")), 0o600)
		_, rec, logs := runStore(t, dir)
		start := time.Now()
		os.WriteFile(path, nil, 0o600)
		snap := rec.waitFor(t, "the empty file noticed", func(s Snapshot) bool {
			f, _ := fileStatus(s, "p.yaml")
			return strings.Contains(strings.Join(f.Warnings, "\n"), "empty since")
		})
		if got := values(snap.RuleSet); !slices.Equal(got, []string{"p:/etc/a:Block"}) {
			t.Fatalf("while settling the last good version holds: %v", got)
		}
		rec.waitFor(t, "no policies once it stayed empty", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 0 })
		if el := time.Since(start); el < emptySettle {
			t.Fatalf("dropped after %s, before the settle time %s", el, emptySettle)
		}
		if got := logs.matching("WARN policy file is empty: no policies from it", "p.yaml"); len(got) != 1 {
			t.Fatalf("want one WARN for the empty file, got %q", got)
		}
		if got := logs.matching("INFO policy file loaded", "p.yaml", "policies=[]"); got != nil {
			t.Fatalf("an empty file must not be logged as loaded at INFO: %q", got)
		}
	})
}

// Removing the directory removes its policies with a warning; re-creating
// it (mkdir, or a rename back into place) loads its files again.
func TestDirectoryRemovedAndRecreated(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "policies")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(policyYAML("a", "/etc/a", "Block")), 0o600)
	s, rec, logs := runStore(t, dir)
	missing := func(s Snapshot) bool {
		return len(s.RuleSet.Rules) == 0 && strings.Contains(strings.Join(s.Warnings, "\n"), "does not exist")
	}

	// rm -r
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the directory reported missing", missing)
	if got := logs.matching("WARN policy directory removed"); len(got) != 1 {
		t.Fatalf("want one WARN for the removal, got %q", got)
	}
	if err := s.Rescan(); err != nil || !missing(s.Snapshot()) {
		t.Fatalf("SIGHUP with the directory missing: %v, %v", err, s.Snapshot().Warnings)
	}

	// mkdir and a new file
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(policyYAML("b", "/etc/b", "Block")), 0o600)
	snap := rec.waitFor(t, "the new directory's file enforced", func(s Snapshot) bool {
		return slices.Equal(values(s.RuleSet), []string{"b:/etc/b:Block"})
	})
	if len(snap.Warnings) != 0 {
		t.Fatalf("the warning must clear: %v", snap.Warnings)
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(policyYAML("c", "/etc/c", "Block")), 0o600)
	rec.waitFor(t, "a later file in the new directory", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 2 })

	// mv away (the watch would follow the directory) and back
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the renamed directory reported missing", missing)
	os.WriteFile(filepath.Join(dir+".old", "d.yaml"), []byte(policyYAML("d", "/etc/d", "Block")), 0o600)
	if err := os.Rename(dir+".old", dir); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the directory back with every file", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 3 && len(s.Warnings) == 0 })

	// The parent goes too: found again by polling.
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the directory reported missing with its parent", missing)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(policyYAML("e", "/etc/e", "Block")), 0o600)
	rec.waitFor(t, "the re-created parent and directory", func(s Snapshot) bool {
		return slices.Equal(values(s.RuleSet), []string{"e:/etc/e:Block"})
	})
}

func TestWritableByOthersWarned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(policyYAML("p", "/etc/a", "Block")), 0o600)
	os.Chmod(dir, 0o777)
	os.Chmod(path, 0o666) // WriteFile's mode is masked by umask
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte(policyYAML("o", "/etc/o", "Block")), 0o600)
	os.Chown(other, 65534, 65534)

	s, rec, logs := runStore(t, dir)
	snap := s.Snapshot()
	dw := strings.Join(snap.Warnings, "\n")
	if !strings.Contains(dw, "policy directory "+dir+" is writable by group 0 and writable by everyone (mode 0777)") {
		t.Fatalf("directory warning missing: %q", dw)
	}
	f, _ := fileStatus(snap, "p.yaml")
	if !strings.Contains(strings.Join(f.Warnings, "\n"), "writable by group 0 and writable by everyone (mode 0666)") {
		t.Fatalf("file warning missing: %q", f.Warnings)
	}
	f, _ = fileStatus(snap, "other.yaml")
	if !strings.Contains(strings.Join(f.Warnings, "\n"), "is owned by uid 65534 (mode 0600)") {
		t.Fatalf("owner warning missing: %q", f.Warnings)
	}
	if len(logs.matching("WARN policy directory permissions", "writable by everyone")) == 0 {
		t.Fatal("the directory warning must be logged at start")
	}
	if len(snap.RuleSet.Rules) != 2 {
		t.Fatal("a warning does not stop enforcement")
	}

	// Fixed live: the warnings clear.
	os.Chmod(dir, 0o700)
	os.Chmod(path, 0o600)
	os.Chown(other, 0, 0)
	rec.waitFor(t, "every warning cleared", func(s Snapshot) bool {
		for _, f := range s.Files {
			if len(f.Warnings) > 0 {
				return false
			}
		}
		return len(s.Warnings) == 0
	})
	// Broken live: warned on change.
	os.Chmod(dir, 0o770)
	rec.waitFor(t, "the directory warning after chmod", func(s Snapshot) bool {
		return strings.Contains(strings.Join(s.Warnings, "\n"), "writable by group 0 (mode 0770)")
	})
	os.Chmod(path, 0o602)
	rec.waitFor(t, "the file warning after chmod", func(s Snapshot) bool {
		f, _ := fileStatus(s, "p.yaml")
		return strings.Contains(strings.Join(f.Warnings, "\n"), "writable by everyone (mode 0602)")
	})
}

// A file with 80,000 errors gives a bounded log and a bounded status that
// still encodes.
func TestErrorsBoundedPerFile(t *testing.T) {
	var b strings.Builder
	b.WriteString(policyYAML("flood", "/etc/a", "Block"))
	for i := range 80000 {
		fmt.Fprintf(&b, "  u%d: 0\n", i)
	}
	text := b.String()
	if _, diags := hostpolicy.Parse("x", []byte(text)); len(diags) <= maxReported {
		t.Fatalf("the file must produce many errors for this test, got %d", len(diags))
	}
	dir := t.TempDir()
	_, rec, logs := runStore(t, dir)
	before := len(logs.lines())
	os.WriteFile(filepath.Join(dir, "flood.yaml"), []byte(text), 0o600)
	snap := rec.waitFor(t, "the flood rejected", func(s Snapshot) bool { return errorsOf("flood.yaml")(s) != "" })
	f, _ := fileStatus(snap, "flood.yaml")
	if len(f.Errors) != maxReported+1 || f.Errors[maxReported] != fmt.Sprintf("... and %d more errors", 80000-maxReported) {
		t.Fatalf("want %d errors then a count, got %d ending %q", maxReported, len(f.Errors), f.Errors[len(f.Errors)-1])
	}
	st := &statuspb.Status{}
	for _, f := range snap.Files {
		st.Files = append(st.Files, &statuspb.PolicyFile{Name: f.Name, Policies: f.Policies, Errors: f.Errors, Warnings: f.Warnings})
	}
	wire, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(wire) > 8<<10 {
		t.Fatalf("status is %d bytes for one file", len(wire))
	}
	if n := len(logs.lines()) - before; n > maxReported+5 {
		t.Fatalf("%d log records (each also a WatchMessages message) for one file", n)
	}
	t.Logf("status %d bytes, %d log records", len(wire), len(logs.lines())-before)
}

func TestNonUTF8FileNames(t *testing.T) {
	dir := t.TempDir()
	good, bad := "caf\xe9.yaml", "bad\xff\xfe.yaml"
	os.WriteFile(filepath.Join(dir, good), []byte(policyYAML("cafe", "/etc/a", "Block")), 0o600)
	s, rec, logs := runStore(t, dir)
	os.WriteFile(filepath.Join(dir, bad), []byte("kind: [\n"), 0o600)
	snap := rec.waitFor(t, "the bad file rejected", func(s Snapshot) bool { return len(s.Files) == 2 && errorsOf(`bad\xff\xfe.yaml`)(s) != "" })
	if got := values(snap.RuleSet); !slices.Equal(got, []string{"cafe:/etc/a:Block"}) {
		t.Fatalf("the file with a non-UTF-8 name must be enforced: %v", got)
	}
	if _, ok := fileStatus(snap, `caf\xe9.yaml`); !ok {
		t.Fatalf("names must be escaped with event.ValidText: %q", snap.Files)
	}
	st := &statuspb.Status{Warnings: snap.Warnings}
	for _, f := range snap.Files {
		st.Files = append(st.Files, &statuspb.PolicyFile{Name: f.Name, Policies: f.Policies, Errors: f.Errors, Warnings: f.Warnings})
	}
	if _, err := proto.Marshal(st); err != nil {
		t.Fatalf("status must encode: %v", err)
	}
	for _, l := range logs.lines() {
		if !utf8.ValidString(l) {
			t.Fatalf("log record is not valid UTF-8: %q", l)
		}
	}
	if !utf8.ValidString(snap.Change) {
		t.Fatalf("change %q", snap.Change)
	}
	os.Remove(filepath.Join(dir, good))
	rec.waitFor(t, "the file removed", func(s Snapshot) bool { return len(s.RuleSet.Rules) == 0 })
	_ = s
}

func parseYAMLEvent(t *testing.T, payload string) (*hostpolicy.Event, hostpolicy.Diagnostics) {
	t.Helper()
	return hostpolicy.ParseEvent([]byte(payload))
}

func applyTooLarge(t *testing.T, s *Store, dir string, ev *hostpolicy.Event) {
	t.Helper()
	if len(ev.YAML) <= maxFileBytes {
		t.Fatalf("rendered %d bytes: the test needs more than %d", len(ev.YAML), maxFileBytes)
	}
	_, err := s.Apply(ev)
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "aliases expanded") || !strings.Contains(err.Error(), "not written") {
		t.Fatalf("want a clear rejection (Invalid), got %v", err)
	}
	if got := dirEntries(t, dir); got != nil {
		t.Fatalf("a rejected request must leave nothing behind: %q", got)
	}
}

// dirEntries lists dir, hidden temporary files included.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestApplyBoundedAndLeavesNothingOnRejection(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("alias-expanded request too large to store", func(t *testing.T) {
		// 12 rules sharing one 100 KB message through an alias: a small
		// request, a 1.2 MB policy file once the aliases are expanded.
		msg := strings.Repeat("m", 100<<10)
		var rules strings.Builder
		fmt.Fprintf(&rules, "      - {path: /etc/f0, message: &m %s}\n", msg)
		for i := 1; i < 12; i++ {
			fmt.Fprintf(&rules, "      - {path: /etc/f%d, message: *m}\n", i)
		}
		payload := "type: ADDED\nobject:\n  metadata: {name: bomb}\n  spec:\n    nodeSelector: {matchLabels: {kubearmor.io/hostname: '*'}}\n    action: Block\n    file:\n      matchPaths:\n" + rules.String()
		ev, diags := parseYAMLEvent(t, payload)
		if ev == nil || diags.HasErrors() {
			// Refused before it reaches the store: the parser bounds alias
			// expansion itself.
			if e := diags.Err(); e == nil || !strings.Contains(e.Error(), "aliases") {
				t.Fatalf("want a refusal naming the aliases, got %v", diags)
			}
		} else {
			applyTooLarge(t, s, dir, ev)
		}
		// Whatever the parser lets through, the store bounds what it writes.
		ev = parseEvent(t, "ADDED", "bomb", "/usr/bin/x")
		ev.YAML = append(ev.YAML, "# "+msg+msg+msg+msg+msg+msg+msg+msg+msg+msg+msg+"\n"...)
		applyTooLarge(t, s, dir, ev)
	})

	t.Run("name too long for a file name", func(t *testing.T) {
		name := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
		ev, diags := hostpolicy.ParseEvent(fmt.Appendf(nil, `{"type":"ADDED","object":{"metadata":{"name":%q},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"}},"process":{"matchPaths":[{"path":"/usr/bin/x"}]},"action":"Block"}}}`, name))
		if ev == nil || diags.HasErrors() {
			// Validation already refuses names that cannot be file names.
			if !strings.Contains(diags.Err().Error(), "metadata.name") {
				t.Fatalf("the refusal must name the field: %v", diags)
			}
			return
		}
		_, err := s.Apply(ev)
		if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "longer than the 255 bytes a file name may have") {
			t.Fatalf("want a clear rejection, got %v", err)
		}
		if got := dirEntries(t, dir); got != nil {
			t.Fatalf("nothing may be left behind: %q", got)
		}
	})

	t.Run("write error", func(t *testing.T) {
		gone := filepath.Join(t.TempDir(), "policies")
		s, err := Open(gone, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(gone)
		_, err = s.Apply(parseEvent(t, "ADDED", "p", "/usr/bin/x"))
		if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "the policy directory "+gone+" does not exist") {
			t.Fatalf("want a clear failure, got %v", err)
		}
	})

	t.Run("accepted request still written", func(t *testing.T) {
		if res, err := s.Apply(parseEvent(t, "ADDED", "ok", "/usr/bin/x")); err != nil || res != Applied {
			t.Fatalf("%v %v", res, err)
		}
		if got := dirEntries(t, dir); !slices.Equal(got, []string{"ok.yaml"}) {
			t.Fatalf("exactly the policy file, no temporary: %q", got)
		}
	})
}

// Status reads the last snapshot without waiting for the store: a slow
// consumer (the enforcer applying rules) or a slow compile holds the store,
// never `kubearmor status`.
func TestStatusNeverWaitsForTheStore(t *testing.T) {
	dir := t.TempDir()
	gate := make(chan struct{})
	var blocked sync.Once
	entered := make(chan struct{})
	first := true
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {
		if first {
			first = false
			return
		}
		blocked.Do(func() { close(entered) })
		<-gate
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { close(gate); cancel(); <-done }()

	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(policyYAML("p", "/etc/a", "Block")), 0o600)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the change was never published")
	}
	// The store is now inside publish, its lock held.
	within(t, time.Second, "Snapshot while the store is busy", s.Snapshot)
	within(t, time.Second, "Policies while the store is busy", s.Policies)
}

// A file that would take the host past hostpolicy.MaxRulesPerHost is
// rejected with the host's count, keeps nothing in force, and is taken as
// soon as another file makes room.
func TestHostRuleCap(t *testing.T) {
	const paths, sources = 200, 100 // 20,000 rules per file
	big := func(name string) string {
		var b strings.Builder
		b.WriteString("  file:\n    matchPaths:\n")
		for i := range paths {
			fmt.Fprintf(&b, "    - path: /srv/%s/%d\n", name, i)
			if i == 0 {
				b.WriteString("      fromSource: &src\n")
				for j := range sources {
					fmt.Fprintf(&b, "      - path: /usr/bin/s%d\n", j)
				}
			} else {
				b.WriteString("      fromSource: *src\n")
			}
		}
		b.WriteString("  action: Block\n")
		return hostpolicytest.HostPolicy(name, b.String())
	}
	dir := t.TempDir()
	files := hostpolicy.MaxRulesPerHost/(paths*sources) + 1
	for i := range files {
		name := fmt.Sprintf("p%d", i)
		os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(big(name)), 0o600)
	}
	s, err := Open(dir, hostpolicy.Options{Host: "h"}, quietLog(), func(Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("p%d.yaml", files-1)
	snap := s.Snapshot()
	if n := len(snap.RuleSet.Rules); n != hostpolicy.MaxRulesPerHost {
		t.Fatalf("%d rules in force, want the cap %d", n, hostpolicy.MaxRulesPerHost)
	}
	if e := errorsOf(last)(snap); !strings.Contains(e, "more than the limit of 100000 per host") {
		t.Fatalf("the file past the cap must say so: %q", e)
	}
	os.Remove(filepath.Join(dir, "p0.yaml"))
	if err := s.Rescan(); err != nil {
		t.Fatal(err)
	}
	snap = s.Snapshot()
	if e := errorsOf(last)(snap); e != "" || !slices.Contains(snap.RuleSet.Policies, strings.TrimSuffix(last, ".yaml")) {
		t.Fatalf("once there is room the file is taken: %q, %v", e, snap.RuleSet.Policies)
	}
}
