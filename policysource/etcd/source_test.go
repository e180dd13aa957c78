package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
	"github.com/armorhost/kubearmor/policysource/etcd/etcdtest"
	"github.com/armorhost/kubearmor/policystore"
)

const prefix = "/kubearmor/policies/"

func doc(name, path, labels string) string {
	d := hostpolicytest.HostPolicy(name, "  file:\n    matchPaths:\n    - path: "+path+"\n  action: Block\n")
	if labels != "" {
		d = strings.Replace(d, `kubearmor.io/hostname: "*"`, labels, 1)
	}
	return d
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// until polls cond; the deadline is a hang guard, not a timing assertion.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rules(s *policystore.Store) []string {
	var out []string
	for _, r := range s.Snapshot().RuleSet.Rules {
		out = append(out, r.Policy+":"+r.Value)
	}
	slices.Sort(out)
	return out
}

func openStore(t *testing.T, labels map[string]string) *policystore.Store {
	t.Helper()
	s, err := policystore.Open(t.TempDir(), hostpolicy.Options{Host: "web-1", Labels: labels}, slog.New(slog.NewTextHandler(io.Discard, nil)), func(policystore.Snapshot) {})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, src *Source) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestSourceFollowsEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	defer cli.Close()
	srv.Put(cli, prefix+"first", doc("first", "/etc/first", ""))

	store := openStore(t, map[string]string{"env": "prod"})
	cache := filepath.Join(t.TempDir(), "lib", "etcd-policies.json")
	agentCli, err := Dial(Config{Endpoints: []string{srv.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer agentCli.Close()
	logs := &logBuf{}
	src := Open(agentCli, prefix, cache, store, slog.New(slog.NewTextHandler(logs, nil)))
	stop := run(t, src)

	until(t, "the first read", func() bool { return slices.Equal(rules(store), []string{"first:/etc/first"}) })
	// The status follows the store's update (the rules can be seen first).
	until(t, "status connected", func() bool {
		st := src.Status()
		return st.State == "connected" && st.Revision > 0 && st.Keys == 1 && !st.LastSync.IsZero()
	})

	// Changed, selected by labels, added, deleted.
	srv.Put(cli, prefix+"first", doc("first", "/etc/first2", ""))
	srv.Put(cli, prefix+"prod", doc("prod-only", "/etc/prod", "env: prod"))
	srv.Put(cli, prefix+"dev", doc("dev-only", "/etc/dev", "env: dev"))
	until(t, "changes", func() bool {
		return slices.Equal(rules(store), []string{"first:/etc/first2", "prod-only:/etc/prod"})
	})
	srv.Delete(cli, prefix+"prod")
	until(t, "the delete", func() bool { return slices.Equal(rules(store), []string{"first:/etc/first2"}) })

	// A bad document is rejected with its key and line; what is enforced stays.
	rev := srv.Put(cli, prefix+"first", doc("first", "etc/relative", ""))
	until(t, "the bad document seen", func() bool { return src.Status().Revision >= rev })
	var f policystore.FileStatus
	for _, x := range store.Snapshot().Files {
		if x.Name == "etcd:"+prefix+"first" {
			f = x
		}
	}
	if len(f.Errors) == 0 || !strings.HasPrefix(f.Errors[0], "etcd:/kubearmor/policies/first:11: spec.file.matchPaths[0].path") {
		t.Fatalf("the bad document: %+v", f)
	}
	if got := rules(store); !slices.Equal(got, []string{"first:/etc/first2"}) {
		t.Fatalf("a bad document disturbed what is enforced: %v", got)
	}

	// etcd killed and restarted: the policies stay; then changes converge
	// (the watch resumes from the last revision seen).
	srv.Stop()
	until(t, "disconnected", func() bool { return src.Status().State == "disconnected" })
	if got := rules(store); !slices.Equal(got, []string{"first:/etc/first2"}) {
		t.Fatalf("etcd down changed what is enforced: %v", got)
	}
	srv.Start()
	cli2 := srv.Client()
	defer cli2.Close()
	srv.Put(cli2, prefix+"after", doc("after", "/etc/after", ""))
	srv.Put(cli2, prefix+"first", doc("first", "/etc/first3", ""))
	until(t, "convergence after the restart", func() bool {
		return slices.Equal(rules(store), []string{"after:/etc/after", "first:/etc/first3"})
	})
	until(t, "connected again", func() bool { return src.Status().State == "connected" })

	// The cache: 0600, the last good documents; a restart with etcd down
	// enforces them.
	stop()
	fi, err := os.Stat(cache)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache: %v %v", fi, err)
	}
	srv.Stop()
	store2 := openStore(t, map[string]string{"env": "prod"})
	src2 := Open(agentCli, prefix, cache, store2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := rules(store2); !slices.Equal(got, []string{"after:/etc/after", "first:/etc/first3"}) {
		t.Fatalf("from the cache with etcd down: %v", got)
	}
	if st := src2.Status(); !st.FromCache || st.CacheWritten.IsZero() {
		t.Fatalf("status from the cache: %+v", st)
	}

	// A cache others can write is not trusted.
	os.Chmod(cache, 0o666)
	logs3 := &logBuf{}
	store3 := openStore(t, nil)
	Open(agentCli, prefix, cache, store3, slog.New(slog.NewTextHandler(logs3, nil)))
	if got := rules(store3); len(got) != 0 || !strings.Contains(logs3.String(), "writable by others; not read") {
		t.Fatalf("a world-writable cache was used: %v\n%s", got, logs3.String())
	}
}

// A watch from a compacted revision ends with errCompacted (Run then reads
// the prefix again), and the full read that follows drops keys deleted in
// the gap.
func TestCompactionResyncs(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	defer cli.Close()
	srv.Put(cli, prefix+"a", doc("a", "/etc/a", ""))
	srv.Put(cli, prefix+"b", doc("b", "/etc/b", ""))
	store := openStore(t, nil)
	src := Open(cli, prefix, "", store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rev, err := src.sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv.Delete(cli, prefix+"a")
	last := srv.Put(cli, prefix+"b", doc("b", "/etc/b2", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	if _, err := src.watch(ctx, rev); !errors.Is(err, errCompacted) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
	run(t, src)
	until(t, "the resync", func() bool { return slices.Equal(rules(store), []string{"b:/etc/b2"}) })
}

// recorder is a store that also counts its Updates.
type recorder struct {
	*policystore.Store
	mu      sync.Mutex
	updates int
}

func (r *recorder) Update(source string, docs map[string][]byte, full bool, change string) {
	r.mu.Lock()
	r.updates++
	r.mu.Unlock()
	r.Store.Update(source, docs, full, change)
}

// Changes that are already waiting when the source reads the watch are
// applied in one Update: 50 puts while the sink is held make far fewer than
// 50 compiles, and the result is the same as one by one.
func TestWaitingChangesAreBatched(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	defer cli.Close()
	rec := &recorder{Store: openStore(t, nil)}
	agentCli, err := Dial(Config{Endpoints: []string{srv.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer agentCli.Close()
	src := Open(agentCli, prefix, "", rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, src)
	until(t, "the first read", func() bool { return src.Status().State == "connected" })

	// Hold the store: the source blocks in its next Update while the puts
	// pile up in the watch.
	rec.mu.Lock()
	before := rec.updates
	srv.Put(cli, prefix+"k00", doc("p00", "/etc/p00", ""))
	var last int64
	var want []string
	for i := range 50 {
		name := fmt.Sprintf("q%02d", i)
		last = srv.Put(cli, prefix+name, doc(name, "/etc/"+name, ""))
		want = append(want, name+":/etc/"+name)
	}
	srv.Delete(cli, prefix+"k00")
	rec.mu.Unlock()
	until(t, "every change applied", func() bool { return src.Status().Revision > last })
	slices.Sort(want)
	if got := rules(rec.Store); !slices.Equal(got, want) {
		t.Fatalf("rules: %v\nwant %v", got, want)
	}
	rec.mu.Lock()
	n := rec.updates - before
	rec.mu.Unlock()
	if n >= 52 {
		t.Fatalf("%d Updates for 52 revisions: waiting changes were not batched", n)
	}
	t.Logf("52 revisions in %d Updates", n)
}
