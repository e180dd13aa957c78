package proctable

import (
	"math/rand/v2"
	"testing"
)

// checkPidMap compares m with model and checks that every entry can be
// found: no empty slot between its home and its slot.
func checkPidMap(t *testing.T, m *pidMap, model map[uint32]*entry) {
	t.Helper()
	if m.count() != len(model) {
		t.Fatalf("count %d, want %d", m.count(), len(model))
	}
	for pid, e := range model {
		if got := m.get(pid); got != e {
			t.Fatalf("get(%d) = %p, want %p", pid, got, e)
		}
	}
	mask := len(m.slots) - 1
	n := 0
	for i, s := range m.slots {
		if s.e == nil {
			continue
		}
		n++
		for j := m.home(s.pid); j != i; j = (j + 1) & mask {
			if m.slots[j].e == nil {
				t.Fatalf("pid %d in slot %d, hole at %d after its home %d", s.pid, i, j, m.home(s.pid))
			}
		}
	}
	if n != len(model) {
		t.Fatalf("%d slots used, want %d", n, len(model))
	}
}

// pidsHomedAt are n pids whose home slot is home in a map of m's size.
func pidsHomedAt(m *pidMap, home, n int) []uint32 {
	var pids []uint32
	for pid := uint32(1); len(pids) < n; pid++ {
		if m.home(pid) == home {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestPidMap(t *testing.T) {
	last := minPidSlots - 1
	tests := []struct {
		name string
		// ops: a pid to set (new entry each time), or ^pid to delete
		ops func(m *pidMap) []int64
	}{
		{"colliding pids, the first deleted", func(m *pidMap) []int64 {
			p := pidsHomedAt(m, 5, 4)
			return []int64{int64(p[0]), int64(p[1]), int64(p[2]), int64(p[3]), ^int64(p[0])}
		}},
		{"colliding pids, the middle deleted", func(m *pidMap) []int64 {
			p := pidsHomedAt(m, 5, 4)
			return []int64{int64(p[0]), int64(p[1]), int64(p[2]), int64(p[3]), ^int64(p[1]), ^int64(p[3])}
		}},
		{"a cluster wrapping past the last slot", func(m *pidMap) []int64 {
			a, b := pidsHomedAt(m, last, 3), pidsHomedAt(m, 0, 2)
			return []int64{int64(a[0]), int64(a[1]), int64(b[0]), int64(a[2]), int64(b[1]), ^int64(a[0]), ^int64(a[1])}
		}},
		{"an entry at its home stays behind a hole", func(m *pidMap) []int64 {
			a, b := pidsHomedAt(m, 7, 2), pidsHomedAt(m, 8, 1)
			return []int64{int64(a[0]), int64(a[1]), int64(b[0]), ^int64(a[0])}
		}},
		{"set again replaces", func(m *pidMap) []int64 {
			return []int64{42, 42, 43, ^42, 42}
		}},
		{"delete of an absent pid", func(m *pidMap) []int64 {
			return []int64{42, ^43, ^42, ^42}
		}},
		{"growth", func(m *pidMap) []int64 {
			var ops []int64
			for pid := range int64(5000) {
				ops = append(ops, pid*7)
			}
			for pid := range int64(2500) {
				ops = append(ops, ^(pid * 14))
			}
			return ops
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newPidMap(0)
			model := map[uint32]*entry{}
			for _, op := range tt.ops(&m) {
				if op >= 0 {
					e := &entry{p: Process{HostPID: uint32(op)}}
					m.set(uint32(op), e)
					model[uint32(op)] = e
				} else {
					pid := uint32(^op)
					_, had := model[pid]
					if got := m.delete(pid, nil); got != had {
						t.Fatalf("delete(%d) = %v, want %v", pid, got, had)
					}
					delete(model, pid)
				}
				checkPidMap(t, &m, model)
			}
		})
	}
}

// Random sets and deletes of a few thousand pids, at the load the table
// grows at, against Go's map; delete with an entry removes only that one.
func TestPidMapRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newPidMap(0)
	model := map[uint32]*entry{}
	for i := range 200000 {
		pid := uint32(rng.IntN(3000))
		switch rng.IntN(3) {
		case 0, 1:
			e := &entry{}
			m.set(pid, e)
			model[pid] = e
		default:
			cur := model[pid]
			other := &entry{}
			if m.delete(pid, other) {
				t.Fatalf("delete(%d) of another entry removed it", pid)
			}
			if got := m.delete(pid, cur); got != (cur != nil) {
				t.Fatalf("delete(%d) = %v", pid, got)
			}
			delete(model, pid)
		}
		if i%5000 == 0 {
			checkPidMap(t, &m, model)
		}
	}
	checkPidMap(t, &m, model)
	// anyEntry walks all of them, each once, before it starts again.
	seen := map[uint32]bool{}
	for range model {
		pid, e := m.anyEntry()
		if e == nil || model[pid] != e || seen[pid] {
			t.Fatalf("anyEntry = %d %p", pid, e)
		}
		seen[pid] = true
	}
	empty := newPidMap(0)
	if _, e := empty.anyEntry(); e != nil {
		t.Fatal("anyEntry of an empty map")
	}
}
