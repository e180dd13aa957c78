package bpflsm

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// An old version's ring buffer is decoded only when its record has this
// version's layout.
func TestLayoutFingerprint(t *testing.T) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	u64 := &btf.Int{Name: "u64", Size: 8}
	rec := func(members ...btf.Member) *btf.Struct {
		var size uint32
		for _, m := range members {
			s, _ := btf.Sizeof(m.Type)
			size = max(size, uint32(m.Offset.Bytes())+uint32(s))
		}
		return &btf.Struct{Name: "event", Size: size, Members: members}
	}
	base := rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "pid", Type: u32, Offset: 64})
	for _, tc := range []struct {
		name string
		b    *btf.Struct
		want bool
	}{
		{"identical", rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "pid", Type: u32, Offset: 64}), true},
		{"a member renamed", rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "tgid", Type: u32, Offset: 64}), false},
		{"a member moved", rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "pid", Type: u32, Offset: 96}), false},
		{"a member widened", rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "pid", Type: u64, Offset: 64}), false},
		{"a member added", rec(btf.Member{Name: "ts", Type: u64}, btf.Member{Name: "pid", Type: u32, Offset: 64}, btf.Member{Name: "uid", Type: u32, Offset: 96}), false},
	} {
		if got := string(layoutFingerprint(base)) == string(layoutFingerprint(tc.b)); got != tc.want {
			t.Errorf("%s: same fingerprint = %v, want %v", tc.name, got, tc.want)
		}
	}
}
