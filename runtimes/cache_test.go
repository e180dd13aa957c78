package runtimes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func ctr(runtime, ns, id string, cg uint64, pidns, mntns uint32) Container {
	c := newContainer(runtime, ns, id, "", "img", map[string]string{"b": "2", "a": "1"})
	c.CgroupID, c.PidNS, c.MntNS = cg, pidns, mntns
	return c
}

func TestStoreLookup(t *testing.T) {
	const hostPid, hostMnt = 4026531836, 4026531832
	s := newStore(10, hostPid, hostMnt, nil)
	s.put(Docker, ctr(Docker, "", dockerID, 100, 5001, 6001))
	s.put(Containerd, ctr(Containerd, "default", "c1", 200, 5002, 6002))
	// Same id in another namespace: a different container.
	s.put(Containerd, ctr(Containerd, "other", "c1", 300, 5003, 6003))
	// --pid=host: the host's pid namespace must never become a key.
	s.put(Docker, ctr(Docker, "", "hostpid", 400, hostPid, 6004))
	// Two containers sharing a pid namespace (--pid=container:x).
	s.put(Docker, ctr(Docker, "", "sharer1", 500, 5005, 6005))
	s.put(Docker, ctr(Docker, "", "sharer2", 501, 5005, 6006))
	// Docker's container as containerd's "moby" namespace shows it.
	s.put(Containerd, ctr(Containerd, "moby", dockerID, 100, 5001, 6001))

	tests := []struct {
		name        string
		cg          uint64
		pidns, mnt  uint32
		wantID      string
		wantRuntime string
		wantNS      string
	}{
		{"docker by cgroup", 100, 0, 0, dockerID, Docker, ""},
		{"docker over its moby twin", 100, 5001, 6001, dockerID, Docker, ""},
		{"containerd default/c1", 200, 0, 0, "c1", Containerd, "default"},
		{"containerd other/c1", 300, 0, 0, "c1", Containerd, "other"},
		{"by pid ns when the cgroup is unknown", 1, 5002, 0, "c1", Containerd, "default"},
		{"by mnt ns", 1, 0, 6003, "c1", Containerd, "other"},
		{"host pid ns is no key", 1, hostPid, hostMnt, "", "", ""},
		{"shared pid ns is no key", 1, 5005, 0, "", "", ""},
		{"shared pid ns, own mnt ns", 1, 5005, 6006, "sharer2", Docker, ""},
		{"root cgroup", 1, 0, 0, "", "", ""},
		{"unknown everything", 999, 9, 9, "", "", ""},
	}
	snap := s.snapshot()
	for _, tt := range tests {
		c := snap.lookup(tt.cg, tt.pidns, tt.mnt)
		switch {
		case tt.wantID == "" && c != nil:
			t.Errorf("%s: got %s/%s, want no container", tt.name, c.RuntimeNamespace, c.ID)
		case tt.wantID != "" && c == nil:
			t.Errorf("%s: no container, want %s", tt.name, tt.wantID)
		case c != nil && (c.ID != tt.wantID || c.Runtime != tt.wantRuntime || c.RuntimeNamespace != tt.wantNS):
			t.Errorf("%s: got %s %s/%s, want %s %s/%s", tt.name, c.Runtime, c.RuntimeNamespace, c.ID, tt.wantRuntime, tt.wantNS, tt.wantID)
		}
	}

	// The moby twin is hidden while dockerd is connected, even without
	// docker's own entry.
	s.remove(Docker, dockerID)
	if c := s.snapshot().lookup(100, 0, 0); c == nil || c.RuntimeNamespace != "moby" {
		t.Errorf("after docker's entry went: got %+v, want the moby twin", c)
	}
	s.setLive(Docker, true)
	if c := s.snapshot().lookup(100, 0, 0); c != nil {
		t.Errorf("moby twin shown while dockerd is connected: %+v", c)
	}
}

func TestStoreBoundAndReplace(t *testing.T) {
	s := newStore(2, 1, 1, nil)
	s.put(Docker, ctr(Docker, "", "a", 10, 0, 0))
	s.put(Docker, ctr(Docker, "", "b", 11, 0, 0))
	s.put(Docker, ctr(Docker, "", "c", 12, 0, 0))
	if got := s.refused.Load(); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}
	if s.snapshot().lookup(12, 0, 0) != nil {
		t.Error("container beyond the bound was cached")
	}
	s.put(Docker, ctr(Docker, "", "a", 13, 0, 0)) // a restart: new cgroup, same container
	if s.snapshot().lookup(10, 0, 0) != nil || s.snapshot().lookup(13, 0, 0) == nil {
		t.Error("restarted container not re-keyed to its new cgroup")
	}
	s.replace(Docker, []Container{ctr(Docker, "", "z", 20, 0, 0)})
	if s.len(Docker) != 1 || s.snapshot().lookup(11, 0, 0) != nil || s.snapshot().lookup(20, 0, 0) == nil {
		t.Error("replace did not set the whole list")
	}
	s.put(Docker, ctr(Docker, "", "y", 21, 0, 0))
	if s.snapshot().lookup(21, 0, 0) == nil {
		t.Error("replace did not free room for new containers")
	}
}

func TestNewContainer(t *testing.T) {
	tests := []struct {
		name                 string
		runtime, cname       string
		labels               map[string]string
		wantName, wantNS     string
		wantLabels           string
		wantIdentitiesSuffix string
	}{
		{"docker plain", Docker, "web", map[string]string{"z": "1", "a": "2"}, "web", DefaultNamespace, "a=2,z=1", "z=1"},
		{"containerd no name label", Containerd, "", nil, "id1", DefaultNamespace, "", "kubearmor.io/container.name=id1"},
		{"containerd nerdctl name", Containerd, "", map[string]string{"nerdctl/name": "n"}, "n", DefaultNamespace, "nerdctl/name=n", "nerdctl/name=n"},
		{"k8s namespace label wins", Containerd, "", map[string]string{labelK8sNamespace: "k", labelKANamespace: "ka"}, "id1", "k",
			"io.kubernetes.pod.namespace=k,kubearmor.io/namespace=ka", "kubearmor.io/namespace=ka"},
		{"kubearmor namespace label", Docker, "web", map[string]string{labelKANamespace: "ka"}, "web", "ka", "kubearmor.io/namespace=ka", "kubearmor.io/namespace=ka"},
	}
	for _, tt := range tests {
		c := newContainer(tt.runtime, "default", "id1", tt.cname, "img", tt.labels)
		if c.Name != tt.wantName || c.PodName != tt.wantName || c.NamespaceName != tt.wantNS || c.Labels != tt.wantLabels {
			t.Errorf("%s: got name %q pod %q ns %q labels %q", tt.name, c.Name, c.PodName, c.NamespaceName, c.Labels)
		}
		ids := c.Identities()
		if ids[0] != "namespaceName="+tt.wantNS || ids[1] != LabelContainerName+"="+tt.wantName || ids[len(ids)-1] != tt.wantIdentitiesSuffix {
			t.Errorf("%s: identities %q", tt.name, ids)
		}
	}
}

func TestJoinLabelsLimit(t *testing.T) {
	l := map[string]string{"a": "1", "bb": "22", "c": "3"}
	tests := []struct {
		limit int
		want  string
	}{
		{0, "a=1,bb=22,c=3"},
		{13, "a=1,bb=22,c=3"},
		{12, "a=1,bb=22"},
		{8, "a=1,c=3"}, // bb=22 does not fit; c=3 still does
		{2, ""},
	}
	for _, tt := range tests {
		if got := JoinLabels(l, tt.limit); got != tt.want {
			t.Errorf("JoinLabels(limit %d) = %q, want %q", tt.limit, got, tt.want)
		}
	}
}

// testResolver is a Resolver without runtimes: the store is fed by hand.
func testResolver(t *testing.T, maxWait time.Duration) *Resolver {
	h := testHostFS(t)
	r, err := New(Options{Cgroup2Mount: h.cg2, MaxWait: maxWait, DockerSocket: "none", ContainerdSocket: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// makeCgroup creates a cgroup2 directory at rel and returns its id.
func makeCgroup(t *testing.T, h *hostFS, rel string) uint64 {
	t.Helper()
	dir := filepath.Join(h.cg2, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("make a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		for d := dir; d != h.cg2 && d != "/"; d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	return h.cgroupID(rel)
}

// An event from a container's cgroup that arrives before the runtime
// reports the container waits for it; then the cgroup is known directly.
func TestWaitForStartingContainer(t *testing.T) {
	r := testResolver(t, time.Minute)
	base := "/kubearmor-rt-wait-" + strconv.Itoa(os.Getpid())
	cg := makeCgroup(t, r.fs, base+"/docker/"+dockerID) // a docker cgroupfs container under a parent: a 64-hex leaf
	r.store.setLive(Docker, true)

	got := make(chan Container, 1)
	go func() {
		c, ok := r.Wait(context.Background(), cg, 0, 0)
		if !ok {
			c = Container{}
		}
		got <- c
	}()
	// The runtime reports it; its own cgroup key is a different one (say
	// the event came from a sub-cgroup), so only the path ties them.
	for r.waited.load() == 0 {
		runtime.Gosched()
	}
	r.store.put(Docker, ctr(Docker, "", dockerID, 0, 0, 0))
	c := <-got
	if c.ID != dockerID {
		t.Fatalf("Wait = %+v, want container %s", c, dockerID)
	}
	if c2, ok := r.Lookup(cg, 0, 0); !ok || c2.ID != dockerID {
		t.Errorf("after Wait, Lookup of the cgroup = %+v, %v; want it aliased", c2, ok)
	}
}

func TestWaitGivesUp(t *testing.T) {
	r := testResolver(t, time.Minute)
	base := "/kubearmor-rt-wait-" + strconv.Itoa(os.Getpid())
	docker := makeCgroup(t, r.fs, base+"/x/"+dockerID)
	host := makeCgroup(t, r.fs, base+"/host.service")
	nsPath := makeCgroup(t, r.fs, "/kubearmor-rt-ns-"+strconv.Itoa(os.Getpid())+"/c1") // /<namespace>/<id> form

	// No runtime connected: nothing to wait for.
	if _, ok := r.Wait(context.Background(), docker, 0, 0); ok {
		t.Error("attributed with no runtime connected")
	}
	r.store.setLive(Containerd, true)
	// Host cgroups answer at once, and from then on from the negative cache.
	if _, ok := r.Wait(context.Background(), host, 0, 0); ok || !r.neg.has(host) {
		t.Error("host cgroup not answered as host")
	}
	// /<ns>/<id> with a namespace containerd does not have is the host's.
	if _, ok := r.Wait(context.Background(), nsPath, 0, 0); ok {
		t.Error("unknown containerd namespace attributed")
	}
	// A container cgroup whose runtime never reports it: ctx bounds the wait.
	other := makeCgroup(t, r.fs, base+"/y/"+dockerID[:63]+"0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := r.Wait(ctx, other, 0, 0); ok {
		t.Error("attributed a container nobody reported")
	}
	if st := r.Stats(); st.WaitedOut != 1 {
		t.Errorf("WaitedOut = %d, want 1", st.WaitedOut)
	}
}

// manyContainers fills a store with n containers that look like real ones.
func manyContainers(n int) *store {
	s := newStore(n, 1, 1, nil)
	cs := make([]Container, n)
	for i := range cs {
		id := fmt.Sprintf("%064x", i+1)
		labels := map[string]string{
			"com.docker.compose.project": "shop", "com.docker.compose.service": fmt.Sprintf("svc-%d", i),
			"com.docker.compose.version": "2.20.2", "org.opencontainers.image.source": "https://github.com/example/shop",
			"org.opencontainers.image.version": "1.2.3", "maintainer": "team@example.com",
		}
		c := newContainer(Docker, "", id, fmt.Sprintf("shop-svc-%d-1", i), "registry.example.com/shop/svc:1.2.3", labels)
		c.CgroupID, c.PidNS, c.MntNS = uint64(10000+i), uint32(500000+i), uint32(600000+i)
		c.CgroupPath = "/docker/" + id
		c.HostPID = uint32(2000 + i)
		cs[i] = c
	}
	s.replace(Docker, cs)
	return s
}

// Budget: the cache of 1,000 containers stays under 5 MiB.
func TestCacheMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := manyContainers(1000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("cache of 1,000 containers: %d bytes (%.2f KiB per container)", used, float64(used)/1000/1024)
	if used > 5<<20 {
		t.Errorf("cache of 1,000 containers uses %d bytes, budget 5 MiB", used)
	}
	runtime.KeepAlive(s)
}

func BenchmarkLookupHit(b *testing.B) {
	s := manyContainers(1000)
	r := &Resolver{store: s}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := r.Lookup(uint64(10000+i%1000), 0, 0); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

// A host event: cgroup, pid ns and mnt ns all miss.
func BenchmarkLookupMiss(b *testing.B) {
	s := manyContainers(1000)
	r := &Resolver{store: s}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.Lookup(1, 4026531836, 4026531832); ok {
			b.Fatal("hit")
		}
	}
}

// A host event through Wait: answered from the negative cache.
func BenchmarkWaitHostCached(b *testing.B) {
	s := manyContainers(1000)
	r := &Resolver{store: s}
	r.neg.init(16)
	r.neg.add(77)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.Wait(ctx, 77, 4026531836, 4026531832); ok {
			b.Fatal("hit")
		}
	}
}

func BenchmarkPublish1000(b *testing.B) {
	s := manyContainers(1000)
	b.ReportAllocs()
	for b.Loop() {
		s.mu.Lock()
		s.publishLocked()
		s.mu.Unlock()
	}
}
