package runtimes

import (
	"sync"
	"sync/atomic"
)

// The cache is copy-on-write: writers (runtime event handlers, a few per
// container start or stop) rebuild an immutable snapshot under a mutex and
// publish it with one atomic store; readers (every kernel event) load the
// pointer and read plain maps, without locks or allocations.

// snapshot is one published state of the cache. Never modified after publish.
type snapshot struct {
	byCgroup map[uint64]*Container
	byPidNS  map[uint32]*Container
	byMntNS  map[uint32]*Container
	byID     map[string]*Container
	// containerd namespaces known, to tell /<namespace>/<id> cgroups from
	// host ones.
	namespaces map[string]struct{}
	// live: some followed runtime is connected, so waiting for a starting
	// container can succeed.
	live bool
	// changed is closed when a newer snapshot replaces this one.
	changed chan struct{}
}

func emptySnapshot() *snapshot { return sizedSnapshot(0) }

func sizedSnapshot(n int) *snapshot {
	return &snapshot{
		byCgroup:   make(map[uint64]*Container, n),
		byPidNS:    make(map[uint32]*Container, n),
		byMntNS:    make(map[uint32]*Container, n),
		byID:       make(map[string]*Container, 2*n),
		namespaces: map[string]struct{}{},
		changed:    make(chan struct{}),
	}
}

func (s *snapshot) lookup(cgroupID uint64, pidNS, mntNS uint32) *Container {
	if c, ok := s.byCgroup[cgroupID]; ok {
		return c
	}
	if pidNS != 0 {
		if c, ok := s.byPidNS[pidNS]; ok {
			return c
		}
	}
	if mntNS != 0 {
		if c, ok := s.byMntNS[mntNS]; ok {
			return c
		}
	}
	return nil
}

// find is the container a parsed cgroup path names, if known.
func (s *snapshot) find(cc CgroupContainer) *Container {
	if cc.Kind == PathContainerdCgroupfs {
		if c, ok := s.byID[cc.Namespace+"/"+cc.ID]; ok {
			return c
		}
	}
	return s.byID[cc.ID]
}

// entry is the writer side's record of one container.
type entry struct {
	c Container
	// aliases are further cgroup ids found to belong to the container (a
	// sub-cgroup it made for itself); bounded by maxAliases.
	aliases []uint64
}

const maxAliases = 8

// store owns the writer side. The zero value is not usable; see newStore.
type store struct {
	mu         sync.Mutex
	sources    map[string]map[string]*entry // runtime -> container id -> entry
	namespaces map[string]struct{}
	live       map[string]bool // runtime -> connected
	count      int
	max        int
	refused    atomic.Uint64 // containers not cached: the cache was full
	hostPidNS  uint32        // never used as a key: --pid=host containers share it
	hostMntNS  uint32
	published  atomic.Pointer[snapshot]
	onChange   func()
}

func newStore(max int, hostPidNS, hostMntNS uint32, onChange func()) *store {
	s := &store{
		sources:    map[string]map[string]*entry{},
		namespaces: map[string]struct{}{},
		live:       map[string]bool{},
		max:        max,
		hostPidNS:  hostPidNS,
		hostMntNS:  hostMntNS,
		onChange:   onChange,
	}
	s.published.Store(emptySnapshot())
	return s
}

func (s *store) snapshot() *snapshot { return s.published.Load() }

// put adds or replaces a container of runtime.
func (s *store) put(runtime string, c Container) {
	c.Runtime = runtime
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putLocked(runtime, c) {
		s.publishLocked()
	}
}

func (s *store) putLocked(runtime string, c Container) bool {
	m := s.sources[runtime]
	if m == nil {
		m = map[string]*entry{}
		s.sources[runtime] = m
	}
	c.Runtime = runtime
	key := keyOf(&c)
	old := m[key]
	if old == nil {
		if s.count >= s.max {
			s.refused.Add(1)
			return false
		}
		s.count++
	}
	e := &entry{c: c}
	if old != nil && old.c.CgroupID == c.CgroupID {
		e.aliases = old.aliases // same cgroup: what we learned still holds
	}
	m[key] = e
	return true
}

// remove forgets a container of runtime by its key (keyOf).
func (s *store) remove(runtime, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sources[runtime][key]; !ok {
		return
	}
	delete(s.sources[runtime], key)
	s.count--
	s.publishLocked()
}

// replace sets the whole container list of runtime (after a relist).
func (s *store) replace(runtime string, cs []Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count -= len(s.sources[runtime])
	delete(s.sources, runtime)
	for _, c := range cs {
		s.putLocked(runtime, c)
	}
	s.publishLocked()
}

// addNamespaces records containerd namespaces.
func (s *store) addNamespaces(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, n := range names {
		if _, ok := s.namespaces[n]; !ok {
			s.namespaces[n] = struct{}{}
			changed = true
		}
	}
	if changed {
		s.publishLocked()
	}
}

// setLive records whether runtime is connected.
func (s *store) setLive(runtime string, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live[runtime] == live {
		return
	}
	s.live[runtime] = live
	s.publishLocked()
}

// alias records that cgroupID belongs to the container with key.
func (s *store) alias(runtime, key string, cgroupID uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sources[runtime][key]
	if e == nil {
		return
	}
	if len(e.aliases) >= maxAliases {
		e.aliases = e.aliases[1:]
	}
	e.aliases = append(e.aliases, cgroupID)
	s.publishLocked()
}

// len is the number of containers of runtime.
func (s *store) len(runtime string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sources[runtime])
}

// hiddenLocked: docker's containers also show up in containerd's "moby"
// namespace, with less metadata (no name, no image). While dockerd is
// connected it speaks for them.
func (s *store) hiddenLocked(runtime string, e *entry) bool {
	return runtime == Containerd && e.c.RuntimeNamespace == "moby" && s.live[Docker]
}

// publishLocked rebuilds and publishes the snapshot. A docker container
// wins over its own entry in containerd's "moby" namespace.
func (s *store) publishLocked() {
	n := sizedSnapshot(s.count)
	type item struct {
		c       *Container
		aliases []uint64
	}
	var all []item
	for _, e := range s.sources[Containerd] {
		if s.hiddenLocked(Containerd, e) || e.c.RuntimeNamespace == "moby" && s.sources[Docker][e.c.ID] != nil {
			continue
		}
		all = append(all, item{&e.c, e.aliases})
	}
	for _, e := range s.sources[Docker] {
		all = append(all, item{&e.c, e.aliases})
	}
	pidUse := make(map[uint32]int, len(all))
	mntUse := make(map[uint32]int, len(all))
	for _, it := range all { // later wins: docker over containerd
		c := it.c
		n.byID[c.ID] = c
		n.byID[keyOf(c)] = c
		if c.CgroupID > 1 {
			n.byCgroup[c.CgroupID] = c
		}
		for _, a := range it.aliases {
			n.byCgroup[a] = c
		}
		if c.PidNS != 0 && c.PidNS != s.hostPidNS {
			n.byPidNS[c.PidNS] = c
			pidUse[c.PidNS]++
		}
		if c.MntNS != 0 && c.MntNS != s.hostMntNS {
			n.byMntNS[c.MntNS] = c
			mntUse[c.MntNS]++
		}
	}
	// A namespace two containers share (--pid=container:x) says nothing
	// about which one an event came from.
	for ns, k := range pidUse {
		if k > 1 {
			delete(n.byPidNS, ns)
		}
	}
	for ns, k := range mntUse {
		if k > 1 {
			delete(n.byMntNS, ns)
		}
	}
	for ns := range s.namespaces {
		n.namespaces[ns] = struct{}{}
	}
	for _, l := range s.live {
		n.live = n.live || l
	}
	old := s.published.Swap(n)
	close(old.changed)
	if s.onChange != nil {
		s.onChange()
	}
}
