package bpflsm

import (
	"os"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/kernelfs"
)

// memoWrites is the kernel's count of name gate answers remembered.
func memoWrites(t *testing.T, e *Enforcer) uint64 {
	t.Helper()
	s, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.NameMemos
}

// TestNameMemo: an object opened once, while no rule could match its path,
// and opened again after its path came to match one, is decided by that
// rule. Each case first opens the object so that the gate's answer is
// remembered, then changes what the path is (a rename of an ancestor, a
// hard link, a bind mount, a moved mount, an Apply), then opens it under
// its new name. Audit rules, so that the changes themselves are not
// refused; the alert proves the rule decided.
func TestNameMemo(t *testing.T) {
	e := kernel(t)
	if why := nameMemoOff(kernelfs.Sysctl("kernel/kptr_restrict")); why != "" {
		t.Skip(why)
	}
	dir := testDir(t)

	// The memo is in use: one fresh file opened 200 times is remembered
	// once (plus whatever else the guest opens meanwhile), not 200 times.
	// Without this, the cases below would pass with no memo at all.
	rs := apply(t, e, hostpolicy.Postures{},
		policy("m-rename", "  file:\n    matchDirectories:\n    - dir: "+dir+"/rn/memo-rdir/\n  action: Audit\n"),
		policy("m-link", "  file:\n    matchPaths:\n    - path: "+dir+"/ln/memo-link\n  action: Audit\n"),
		policy("m-bind", "  file:\n    matchDirectories:\n    - dir: "+dir+"/bd/memo-bdir/\n  action: Audit\n"),
		policy("m-move", "  file:\n    matchDirectories:\n    - dir: "+dir+"/mv/memo-mdir/\n  action: Audit\n"),
	)
	hot := writeFile(t, rel(dir, "hot/f"))
	before := memoWrites(t, e)
	for i := 0; i < 200; i++ {
		if err := openRead(hot); err != nil {
			t.Fatal(err)
		}
	}
	if n := memoWrites(t, e) - before; n == 0 || n >= 100 {
		t.Fatalf("200 opens of one file no rule concerns remembered %d answers: want at least 1 and far fewer than 200 (is the memo off? rename_lock and mount_lock must resolve in /proc/kallsyms)", n)
	}

	// remembered makes a file no rule concerns and opens it: its
	// creating open or the next one is remembered.
	remembered := func(path string) string {
		t.Helper()
		before := memoWrites(t, e)
		writeFile(t, path)
		wantAllowed(t, openRead(path), "read of a file no rule concerns")
		if memoWrites(t, e) == before {
			t.Fatalf("no open of %s was remembered", path)
		}
		return path
	}
	audited := func(policyName, path string) {
		t.Helper()
		id := ruleID(t, rs, policyName)
		n := collected.Count(opAlert(id, event.VerdictAudit, "lsm=FILE_OPEN", path))
		wantAllowed(t, openRead(path), "read of the audited file")
		wantFileOpEvent(t, n, id, event.VerdictAudit, "lsm=FILE_OPEN", path)
	}

	t.Run("rename of an ancestor", func(t *testing.T) {
		remembered(rel(dir, "rn/plain/f"))
		if err := os.Rename(rel(dir, "rn/plain"), rel(dir, "rn/memo-rdir")); err != nil {
			t.Fatal(err)
		}
		audited("m-rename", rel(dir, "rn/memo-rdir/f"))
	})

	t.Run("hard link", func(t *testing.T) {
		plain := remembered(rel(dir, "ln/plain"))
		if err := os.Link(plain, rel(dir, "ln/memo-link")); err != nil {
			t.Fatal(err)
		}
		audited("m-link", rel(dir, "ln/memo-link"))
	})

	t.Run("bind mount", func(t *testing.T) {
		remembered(rel(dir, "bd/src/f"))
		target := rel(dir, "bd/memo-bdir")
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(rel(dir, "bd/src"), target, "", syscall.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(target, syscall.MNT_DETACH) })
		audited("m-bind", rel(dir, "bd/memo-bdir/f"))
	})

	// The same dentry on the same mount, the mount moved under a name a
	// rule holds: only the mount tree's sequence tells.
	t.Run("moved mount", func(t *testing.T) {
		from, to := rel(dir, "mv/a"), rel(dir, "mv/memo-mdir")
		for _, d := range []string{from, to} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Mount("memo", from, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		remembered(rel(dir, "mv/a/f"))
		if err := syscall.Mount(from, to, "", syscall.MS_MOVE, ""); err != nil {
			syscall.Unmount(from, syscall.MNT_DETACH)
			t.Fatalf("move mount: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(to, syscall.MNT_DETACH) })
		audited("m-move", rel(dir, "mv/memo-mdir/f"))
	})

	// The answer of one Apply is not the next one's.
	t.Run("apply", func(t *testing.T) {
		path := remembered(rel(dir, "ap/memo-adir/f"))
		rs = apply(t, e, hostpolicy.Postures{},
			policy("m-apply", "  file:\n    matchDirectories:\n    - dir: "+dir+"/ap/memo-adir/\n  action: Audit\n"))
		audited("m-apply", path)
	})
}

func TestNameMemoOff(t *testing.T) {
	for _, tc := range []struct {
		kptrRestrict string
		off          bool
	}{{"0\n", false}, {"1\n", false}, {"2\n", true}, {"", false}} {
		if got := nameMemoOff(tc.kptrRestrict); (got != "") != tc.off {
			t.Errorf("nameMemoOff(%q) = %q, want a reason: %v", tc.kptrRestrict, got, tc.off)
		}
	}
}
