package bpflsm

import (
	"os"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

func TestKallsyms(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]uint64
		err      bool
	}{
		{"both", "ffffffff81000000 T _stext\nffffffff82a0c0c0 D rename_lock\nffffffff82a0d100 d mount_lock\n",
			map[string]uint64{"rename_lock": 0xffffffff82a0c0c0, "mount_lock": 0xffffffff82a0d100}, false},
		{"hidden by kptr_restrict", "0000000000000000 D rename_lock\n0000000000000000 d mount_lock\n",
			map[string]uint64{"rename_lock": 0, "mount_lock": 0}, false},
		{"a module's symbol of the same name is not the kernel's",
			"ffffffffc0001000 d rename_lock\t[evil]\nffffffff82a0c0c0 D rename_lock\n",
			map[string]uint64{"rename_lock": 0xffffffff82a0c0c0}, false},
		{"absent (no CONFIG_KALLSYMS_ALL)", "ffffffff81000000 T _stext\n", map[string]uint64{}, false},
		{"a prefix is another name", "ffffffff82a0c0c0 D rename_lock_x\n", map[string]uint64{}, false},
		{"bad address", "zzzz D rename_lock\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kallsyms(strings.NewReader(tc.in), "rename_lock", "mount_lock")
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error: %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %#x, want %#x", k, got[k], v)
				}
			}
		})
	}
}

// TestMemoAddressesFromFile: the constants are set from the file, and a
// file without them leaves the memo off with a reason, never an error.
func TestMemoAddressesFromFile(t *testing.T) {
	spec, err := loadEnforcer()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		off           bool
	}{
		{"listed", "ffffffff82a0c0c0 D rename_lock\nffffffff82a0d100 d mount_lock\n", false},
		{"hidden", "0000000000000000 D rename_lock\n0000000000000000 d mount_lock\n", true},
		{"missing", "", true},
	} {
		path := dir + "/" + strings.ReplaceAll(tc.name, " ", "-")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		why, err := setMemoAddresses(spec, path)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (why != "") != tc.off {
			t.Errorf("%s: why the memo is off = %q, want a reason: %v", tc.name, why, tc.off)
		}
		var got uint64
		if err := spec.Variables["rename_lock_addr"].Get(&got); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]uint64{false: 0xffffffff82a0c0c0, true: 0}[tc.off]; got != want {
			t.Errorf("%s: rename_lock_addr = %#x, want %#x", tc.name, got, want)
		}
	}
	if why, err := setMemoAddresses(spec, dir+"/does-not-exist"); err != nil || why == "" {
		t.Errorf("an unreadable kallsyms: why %q, err %v; want a reason and no error", why, err)
	}
}

// TestLoadsWithKptrRestrict: with kernel.kptr_restrict 2 every kernel
// address reads 0. The enforcer must still load and enforce, with the
// name memo off (before, the loader refused the object: its ksyms could
// not be resolved).
func TestLoadsWithKptrRestrict(t *testing.T) {
	kernel(t)
	const knob = "/proc/sys/kernel/kptr_restrict"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skipf("cannot read %s: %v", knob, err)
	}
	if err := os.WriteFile(knob, []byte("2"), 0o644); err != nil {
		t.Skipf("cannot set %s: %v", knob, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
	e, err := New(Options{RateBurst: -1})
	if err != nil {
		t.Fatalf("New with kptr_restrict 2: %v", err)
	}
	// a cleanup, not a defer: apply's reset of the rules (a cleanup too,
	// registered later, so run first) needs the enforcer open
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	dir := testDir(t)
	denied := writeFile(t, rel(dir, "kptr/denied"))
	other := writeFile(t, rel(dir, "kptr/other"))
	apply(t, e, hostpolicy.Postures{},
		policy("kptr", "  file:\n    matchPaths:\n    - path: "+denied+"\n  action: Block\n"))
	wantDenied(t, openRead(denied), "read of a blocked file with kptr_restrict 2")
	before := memoWrites(t, e)
	for i := 0; i < 50; i++ {
		wantAllowed(t, openRead(other), "read of a file no rule concerns")
	}
	if n := memoWrites(t, e) - before; n != 0 {
		t.Errorf("%d answers remembered with the sequences' addresses hidden, want 0 (the memo is off)", n)
	}
	wantDenied(t, openRead(denied), "read of a blocked file with kptr_restrict 2, again")
}
