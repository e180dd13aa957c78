package runtimes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure New. Zero values take the defaults.
type Options struct {
	// DockerSocket and ContainerdSocket are the runtimes' unix sockets
	// (with or without "unix://"). Empty: the first of the usual paths that
	// exists, looked for again on every retry. "none": do not follow.
	DockerSocket     string
	ContainerdSocket string
	// ProcRoot is procfs as the agent sees the host's (default "/proc").
	ProcRoot string
	// Cgroup2Mount is where cgroup2 is mounted; empty: from mountinfo.
	Cgroup2Mount string
	// MaxContainers bounds the cache (default 16384); containers beyond it
	// are not attributed and are counted in Stats.
	MaxContainers int
	// MaxWait bounds how long Wait waits for a starting container to be
	// reported by its runtime (default 2s).
	MaxWait time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to reach a
	// runtime that is absent or went away (default 1s and 30s).
	RetryMin, RetryMax time.Duration
	// Logger receives connection changes (default slog.Default()).
	Logger *slog.Logger
	// OnChange, if set, is called after every change of the cache, from
	// the goroutine that made it; it must not block.
	OnChange func()
}

// Socket paths tried in order when none is configured.
var (
	dockerSockets     = []string{"/run/docker.sock", "/var/run/docker.sock"}
	containerdSockets = []string{
		"/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock",
		"/run/k3s/containerd/containerd.sock", "/var/snap/microk8s/common/run/containerd.sock",
	}
)

// Connection states of a runtime.
const (
	StateDisabled     = "disabled"     // configured "none"
	StateAbsent       = "absent"       // no socket found
	StateConnecting   = "connecting"   // socket found, not listed yet
	StateConnected    = "connected"    // listed, following events
	StateDisconnected = "disconnected" // was reachable, the last attempt failed; retrying
)

// RuntimeStatus is one runtime's connection, for status output.
type RuntimeStatus struct {
	Runtime    string
	Socket     string // in use, or last tried
	State      string // one of the State* constants
	Version    string // server version once connected
	Containers int    // containers of this runtime in the cache
	Err        string // why the last attempt failed, if it did
	Since      time.Time
}

func (s RuntimeStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", s.Runtime, s.State)
	if s.Socket != "" {
		fmt.Fprintf(&b, " (%s)", s.Socket)
	}
	if s.Version != "" {
		fmt.Fprintf(&b, " version %s", s.Version)
	}
	if s.State == StateConnected {
		fmt.Fprintf(&b, ", %d containers", s.Containers)
	}
	if s.Err != "" {
		fmt.Fprintf(&b, ": %s", s.Err)
	}
	return b.String()
}

// Stats are the Resolver's counters.
type Stats struct {
	Containers int    // in the cache
	Refused    uint64 // not cached: MaxContainers reached
	Waited     uint64 // Wait calls that waited for a starting container
	WaitedOut  uint64 // ... and gave up (MaxWait or ctx)
}

// Resolver attributes kernel events to containers. Lookup and Wait are safe
// for concurrent use with everything else.
type Resolver struct {
	opts  Options
	log   *slog.Logger
	fs    *hostFS
	store *store
	neg   negativeCache

	mu     sync.Mutex
	status map[string]*RuntimeStatus

	waited, waitedOut counter
}

// New prepares a Resolver; nothing is contacted until Run.
func New(opts Options) (*Resolver, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.MaxContainers <= 0 {
		opts.MaxContainers = 16384
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 2 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(30*time.Second, opts.RetryMin)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	fs, err := newHostFS(opts.ProcRoot, opts.Cgroup2Mount)
	if err != nil {
		return nil, err
	}
	self := uint32(os.Getpid())
	// The host's namespaces: pid 1's, not ours (the agent could run in a
	// namespace of its own).
	hostPid, hostMnt := fs.nsInode(1, "pid"), fs.nsInode(1, "mnt")
	if hostPid == 0 {
		hostPid, hostMnt = fs.nsInode(self, "pid"), fs.nsInode(self, "mnt")
	}
	r := &Resolver{
		opts:   opts,
		log:    opts.Logger.With("component", "runtimes"),
		fs:     fs,
		store:  newStore(opts.MaxContainers, hostPid, hostMnt, opts.OnChange),
		status: map[string]*RuntimeStatus{},
	}
	r.neg.init(4096)
	now := time.Now()
	for _, rt := range []string{Docker, Containerd} {
		r.status[rt] = &RuntimeStatus{Runtime: rt, State: StateAbsent, Since: now}
		if r.configured(rt) == "none" {
			r.status[rt].State = StateDisabled
		}
	}
	return r, nil
}

func (r *Resolver) configured(runtime string) string {
	s := r.opts.ContainerdSocket
	if runtime == Docker {
		s = r.opts.DockerSocket
	}
	return strings.TrimPrefix(s, "unix://")
}

// Run discovers and follows both runtimes until ctx ends. A runtime that is
// absent or goes away is retried with backoff; Run itself only returns
// when ctx ends.
func (r *Resolver) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, rt := range []struct {
		name       string
		candidates []string
		session    func(context.Context, string, func(string)) error
	}{
		{Docker, dockerSockets, r.dockerSession},
		{Containerd, containerdSockets, r.containerdSession},
	} {
		if r.configured(rt.name) == "none" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.supervise(ctx, rt.name, rt.candidates, rt.session)
		}()
	}
	wg.Wait()
	return nil
}

// supervise keeps one runtime followed: find its socket, run a session,
// back off, repeat.
func (r *Resolver) supervise(ctx context.Context, runtime string, candidates []string, session func(context.Context, string, func(string)) error) {
	delay := r.opts.RetryMin
	for ctx.Err() == nil {
		sock := r.configured(runtime)
		if sock == "" {
			sock = firstSocket(candidates)
		}
		if sock == "" || !isSocket(sock) {
			r.setState(runtime, sock, StateAbsent, "", nil)
		} else {
			r.setState(runtime, sock, StateConnecting, "", nil)
			connected := false
			err := session(ctx, sock, func(version string) {
				connected = true
				r.setState(runtime, sock, StateConnected, version, nil)
				r.log.Info("following container runtime", "runtime", runtime, "socket", sock, "version", version)
			})
			r.store.setLive(runtime, false)
			if ctx.Err() != nil {
				return
			}
			r.setState(runtime, sock, StateDisconnected, "", err)
			r.log.Warn("container runtime unreachable; retrying", "runtime", runtime, "socket", sock, "err", err)
			if connected {
				delay = r.opts.RetryMin
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, r.opts.RetryMax)
	}
}

func firstSocket(candidates []string) string {
	for _, c := range candidates {
		if isSocket(c) {
			return c
		}
	}
	return ""
}

func isSocket(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

func (r *Resolver) setState(runtime, sock, state, version string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status[runtime]
	if s.State != state {
		s.Since = time.Now()
	}
	s.Socket, s.State = sock, state
	if version != "" {
		s.Version = version
	}
	s.Err = ""
	if err != nil {
		s.Err = err.Error()
	}
}

// Status reports each runtime's connection.
func (r *Resolver) Status() []RuntimeStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RuntimeStatus, 0, len(r.status))
	for _, rt := range []string{Docker, Containerd} {
		s := *r.status[rt]
		s.Containers = r.store.len(rt)
		out = append(out, s)
	}
	return out
}

// Stats reports the Resolver's counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Containers: len(r.Containers()),
		Refused:    r.store.refused.Load(),
		Waited:     r.waited.load(),
		WaitedOut:  r.waitedOut.load(),
	}
}

// Containers lists the containers in the cache.
func (r *Resolver) Containers() []Container {
	snap := r.store.snapshot()
	seen := map[*Container]bool{}
	out := make([]Container, 0, len(snap.byID))
	for _, c := range snap.byID {
		if !seen[c] {
			seen[c] = true
			out = append(out, *c)
		}
	}
	return out
}

// Lookup attributes a kernel event by its keys: the cgroup2 id first, then
// the pid and mount namespace inodes (the only keys on v1-only hosts, and
// the ones that still work for a sub-cgroup a container made). It reads the
// cache only: no locks, no allocations, no runtime calls. A miss means the
// host, or a container not reported yet (see Wait).
func (r *Resolver) Lookup(cgroupID uint64, pidNS, mntNS uint32) (Container, bool) {
	if c := r.store.snapshot().lookup(cgroupID, pidNS, mntNS); c != nil {
		return *c, true
	}
	return Container{}, false
}

// Wait is Lookup for events that may race a container's start: the kernel
// reports the container's first exec before its runtime reports the start.
// On a miss it asks the kernel which cgroup the id names; if that is a
// followed runtime's container cgroup, it waits until the runtime reports
// the container, ctx ends, or MaxWait passes. Host cgroups answer at once,
// after the first time from a bounded negative cache, so the pipeline can
// call Wait on every miss.
func (r *Resolver) Wait(ctx context.Context, cgroupID uint64, pidNS, mntNS uint32) (Container, bool) {
	snap := r.store.snapshot()
	if c := snap.lookup(cgroupID, pidNS, mntNS); c != nil {
		return *c, true
	}
	if cgroupID <= 1 || r.neg.has(cgroupID) {
		return Container{}, false
	}
	path, err := r.fs.cgroupPath(cgroupID)
	if err != nil {
		r.neg.add(cgroupID) // gone (or no cgroup2): nothing will tell us more
		return Container{}, false
	}
	cc := ParseCgroupPath(path)
	switch cc.Kind {
	case PathNone, PathOther:
		r.neg.add(cgroupID)
		return Container{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.MaxWait)
	defer cancel()
	r.waited.add()
	for {
		if c := snap.lookup(cgroupID, pidNS, mntNS); c != nil {
			return *c, true
		}
		if c := snap.find(cc); c != nil {
			r.store.alias(c.Runtime, keyOf(c), cgroupID)
			return *c, true
		}
		if cc.Kind == PathContainerdCgroupfs {
			if _, ok := snap.namespaces[cc.Namespace]; !ok {
				r.neg.add(cgroupID) // /a/b on the host, not /<namespace>/<id>
				return Container{}, false
			}
		}
		if !snap.live {
			r.neg.add(cgroupID)
			return Container{}, false
		}
		select {
		case <-snap.changed:
			snap = r.store.snapshot()
		case <-ctx.Done():
			r.waitedOut.add()
			r.neg.add(cgroupID)
			return Container{}, false
		}
	}
}

// Close releases what New opened. Run must have returned.
func (r *Resolver) Close() error {
	r.fs.close()
	return nil
}

// keyOf is a container's key in the store: containerd ids are unique only
// within a namespace.
func keyOf(c *Container) string {
	if c.Runtime == Containerd {
		return c.RuntimeNamespace + "/" + c.ID
	}
	return c.ID
}

// negativeCache remembers cgroup ids known not to be a followed container's,
// so a host event's miss costs one map lookup. Cgroup ids are not reused,
// so an entry never turns wrong; the cache is emptied when full.
type negativeCache struct {
	mu  sync.Mutex
	max int
	ids map[uint64]struct{}
}

func (n *negativeCache) init(max int) {
	n.max = max
	n.ids = make(map[uint64]struct{}, max)
}

func (n *negativeCache) has(id uint64) bool {
	n.mu.Lock()
	_, ok := n.ids[id]
	n.mu.Unlock()
	return ok
}

func (n *negativeCache) add(id uint64) {
	n.mu.Lock()
	if len(n.ids) >= n.max {
		clear(n.ids)
	}
	n.ids[id] = struct{}{}
	n.mu.Unlock()
}

type counter struct{ v atomic.Uint64 }

func (c *counter) add()         { c.v.Add(1) }
func (c *counter) load() uint64 { return c.v.Load() }
