package proctable

// pidMap maps pids to entries: an open-addressing hash table with linear
// probing and no tombstones (a deletion moves back the entries probed past
// the hole). It is on the path of every lifecycle record and every event's
// attribution; with Go's map a lookup cost ~90 instructions and an insert
// or a delete ~200-230 (BenchmarkLifecycle under callgrind), here a few
// dozen: pids are small integers that a multiplicative hash spreads over
// the slots without a hash function call. Not safe for concurrent use: the
// Table's lock guards it.
type pidMap struct {
	slots []pidSlot // a power of two long, at most 3/4 full; empty slots have e == nil
	n     int
	shift uint // 32 - log2(len(slots)): a hash's top bits are its home slot
	next  int  // where anyEntry looks first
}

type pidSlot struct {
	pid uint32
	e   *entry
}

const minPidSlots = 2048

func newPidMap(hint int) pidMap {
	size := minPidSlots
	for size*3/4 < hint {
		size *= 2
	}
	var m pidMap
	m.alloc(size)
	return m
}

func (m *pidMap) alloc(size int) {
	m.slots = make([]pidSlot, size)
	m.shift = 32
	for s := size; s > 1; s >>= 1 {
		m.shift--
	}
}

// home is pid's first slot (Fibonacci hashing: consecutive pids land far
// apart).
func (m *pidMap) home(pid uint32) int {
	return int((pid * 0x9E3779B1) >> m.shift)
}

func (m *pidMap) count() int { return m.n }

// get is pid's entry, nil when there is none.
func (m *pidMap) get(pid uint32) *entry {
	mask := len(m.slots) - 1
	for i := m.home(pid); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.e == nil || s.pid == pid {
			return s.e
		}
	}
}

// set makes e (not nil) pid's entry.
func (m *pidMap) set(pid uint32, e *entry) {
	if (m.n+1)*4 > len(m.slots)*3 {
		m.grow()
	}
	mask := len(m.slots) - 1
	for i := m.home(pid); ; i = (i + 1) & mask {
		s := &m.slots[i]
		if s.e == nil {
			*s = pidSlot{pid: pid, e: e}
			m.n++
			return
		}
		if s.pid == pid {
			s.e = e
			return
		}
	}
}

func (m *pidMap) grow() {
	old := m.slots
	m.alloc(2 * len(old))
	m.n = 0
	for _, s := range old {
		if s.e != nil {
			m.set(s.pid, s.e)
		}
	}
}

// delete removes pid's entry if it is e (any entry when e is nil) and
// reports whether it did.
func (m *pidMap) delete(pid uint32, e *entry) bool {
	mask := len(m.slots) - 1
	i := m.home(pid)
	for {
		s := &m.slots[i]
		if s.e == nil {
			return false
		}
		if s.pid == pid {
			if e != nil && s.e != e {
				return false
			}
			break
		}
		i = (i + 1) & mask
	}
	// Close the hole at i: an entry further on whose home is at or before
	// the hole (cyclically) moves into it, and leaves a hole of its own.
	for j := (i + 1) & mask; m.slots[j].e != nil; j = (j + 1) & mask {
		if (j-m.home(m.slots[j].pid))&mask >= (j-i)&mask {
			m.slots[i] = m.slots[j]
			i = j
		}
	}
	m.slots[i] = pidSlot{}
	m.n--
	return true
}

// anyEntry is some entry of a map that has one, each call starting where
// the last one left off: the live process to evict when the table is full
// of live processes.
func (m *pidMap) anyEntry() (uint32, *entry) {
	mask := len(m.slots) - 1
	for k := range m.slots {
		i := (m.next + k) & mask
		if s := m.slots[i]; s.e != nil {
			m.next = i + 1
			return s.pid, s.e
		}
	}
	return 0, nil
}
