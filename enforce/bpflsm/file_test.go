package bpflsm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

func writeFile(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func openRead(path string) error {
	f, err := os.Open(path)
	if err == nil {
		f.Close()
	}
	return err
}

func openWrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
	}
	return err
}

func TestFileBlockPath(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	secret := writeFile(t, filepath.Join(dir, "secret"))
	other := writeFile(t, filepath.Join(dir, "other"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-path", `
  file:
    matchPaths:
    - path: `+secret+`
  action: Block
`))
	id := ruleID(t, rs, "file-path")
	wantDenied(t, openRead(secret), "read")
	wantDenied(t, openWrite(secret), "write")
	wantAllowed(t, openRead(other), "read another file")
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpFile, secret)
	if ev.Data != "lsm=FILE_OPEN" {
		t.Errorf("Data = %q", ev.Data)
	}
	self, _ := os.Executable()
	if ev.Exe != self {
		t.Errorf("Exe = %q, want %q", ev.Exe, self)
	}
}

func TestFileReadOnly(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	ro := writeFile(t, filepath.Join(dir, "ro"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-readonly", `
  file:
    matchPaths:
    - path: `+ro+`
      readOnly: true
  action: Block
`))
	id := ruleID(t, rs, "file-readonly")
	wantAllowed(t, openRead(ro), "read a readOnly file")
	wantDenied(t, openWrite(ro), "write a readOnly file")
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpFile, ro)
	if ev.Path != ro || ev.File.Op != event.FileOpen || !ev.File.Write() {
		t.Errorf("write open: Path %q File %+v, want an open for writing", ev.Path, ev.File)
	}
}

func TestFileAudit(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	watched := writeFile(t, filepath.Join(dir, "watched"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-audit", `
  file:
    matchPaths:
    - path: `+watched+`
  action: Audit
`))
	wantAllowed(t, openRead(watched), "read an audited file")
	ev := wantVerdict(t, ruleID(t, rs, "file-audit"), event.VerdictAudit, event.OpFile, watched)
	if ev.Path != watched || ev.File != (event.File{Op: event.FileOpen, Flags: 0}) || ev.File.Write() {
		t.Errorf("read open: Path %q File %+v, want an open for reading", ev.Path, ev.File)
	}
}

func TestFileDirectoryAndPattern(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	inDir := writeFile(t, filepath.Join(dir, "secrets", "a"))
	deep := writeFile(t, filepath.Join(dir, "secrets", "x", "y", "b"))
	key := writeFile(t, filepath.Join(dir, "keys", "host.key"))
	notKey := writeFile(t, filepath.Join(dir, "keys", "host.pub"))
	deepKey := writeFile(t, filepath.Join(dir, "keys", "sub", "host.key"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-dir", `
  file:
    matchDirectories:
    - dir: `+dir+`/secrets/
      recursive: true
  action: Block
`), policy("file-pattern", `
  file:
    matchPatterns:
    - pattern: `+dir+`/keys/*.key
  action: Block
`))
	wantDenied(t, openRead(inDir), "file in a blocked directory")
	wantDenied(t, openRead(deep), "file deep in a recursively blocked directory")
	wantDenied(t, openRead(filepath.Join(dir, "secrets")), "the blocked directory itself")
	wantDenied(t, openRead(key), "file matching the pattern")
	wantAllowed(t, openRead(notKey), "file not matching the pattern")
	wantAllowed(t, openRead(deepKey), "file where * would cross /")
	wantVerdict(t, ruleID(t, rs, "file-dir"), event.VerdictBlock, event.OpFile, deep)
	wantVerdict(t, ruleID(t, rs, "file-pattern"), event.VerdictBlock, event.OpFile, key)
}

func TestFileFromSource(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	cat := copyBusybox(t, filepath.Join(dir, "busybox-cat"))
	target := writeFile(t, filepath.Join(dir, "target"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-source", `
  file:
    matchPaths:
    - path: `+target+`
      fromSource:
      - path: `+cat+`
  action: Block
`))
	out, err := exec.Command(cat, "cat", target).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("cat from the source: err=%v out=%q, want Permission denied", err, out)
	}
	out, err = exec.Command(busybox, "cat", target).CombinedOutput()
	if err != nil {
		t.Fatalf("cat from busybox: %v %q", err, out)
	}
	wantAllowed(t, openRead(target), "read from the test binary")
	ev := wantVerdict(t, ruleID(t, rs, "file-source"), event.VerdictBlock, event.OpFile, target)
	if ev.Exe != cat {
		t.Errorf("Exe = %q, want %q", ev.Exe, cat)
	}
}

func TestFileOwnerOnly(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	private := writeFile(t, filepath.Join(dir, "private"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-owner", `
  file:
    matchPaths:
    - path: `+private+`
      ownerOnly: true
  action: Block
`))
	wantAllowed(t, openRead(private), "read by the owner")
	cmd := exec.Command(busybox, "cat", private)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("cat by uid 65534: err=%v out=%q, want Permission denied", err, out)
	}
	ev := wantVerdict(t, ruleID(t, rs, "file-owner"), event.VerdictBlock, event.OpFile, private)
	if ev.UID != 65534 {
		t.Errorf("UID = %d", ev.UID)
	}
}

func TestFileAllowList(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	cat := copyBusybox(t, filepath.Join(dir, "busybox-cat"))
	allowed := writeFile(t, filepath.Join(dir, "allowed"))
	other := writeFile(t, filepath.Join(dir, "other"))
	allow := policy("file-allow", `
  file:
    matchPaths:
    - path: `+allowed+`
      fromSource:
      - path: `+cat+`
  action: Allow
`)
	t.Run("audit", func(t *testing.T) {
		apply(t, e, hostpolicy.Postures{File: "audit"}, allow)
		if out, err := exec.Command(cat, "cat", allowed, other).CombinedOutput(); err != nil {
			t.Fatalf("cat: %v %q", err, out)
		}
		wantVerdict(t, 0, event.VerdictPostureAudit, event.OpFile, other)
	})
	t.Run("block", func(t *testing.T) {
		apply(t, e, hostpolicy.Postures{File: "block"}, allow)
		if out, err := exec.Command(cat, "cat", allowed).CombinedOutput(); err != nil {
			t.Fatalf("cat allowed: %v %q", err, out)
		}
		out, err := exec.Command(cat, "cat", other).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Fatalf("cat other: err=%v out=%q, want Permission denied", err, out)
		}
		wantVerdict(t, 0, event.VerdictPostureBlock, event.OpFile, other)
		wantAllowed(t, openRead(other), "read from the test binary")
	})
}

// The kernel drops identical events beyond the burst and counts them.
func TestRateLimit(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	noisy := writeFile(t, filepath.Join(dir, "noisy"))
	e.opts.RateBurst = 3
	t.Cleanup(func() { e.opts.RateBurst = -1 })
	rs := apply(t, e, hostpolicy.Postures{}, policy("file-noisy", `
  file:
    matchPaths:
    - path: `+noisy+`
  action: Block
`))
	before, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		wantDenied(t, openRead(noisy), "read")
	}
	e.opts.RateBurst = -1 // the sentinel must not be limited
	apply(t, e, hostpolicy.Postures{}, policy("file-noisy", `
  file:
    matchPaths:
    - path: `+noisy+`
  action: Block
`))
	flush(t)
	id := ruleID(t, rs, "file-noisy")
	n := collected.Count(func(ev event.Event) bool { return ev.RuleID == id })
	after, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	suppressed := after.Suppressed - before.Suppressed
	if n >= 50 || suppressed == 0 || uint64(n)+suppressed != 50 {
		t.Fatalf("%d events and %d suppressed for 50 denials; want fewer events and the rest counted", n, suppressed)
	}
	t.Logf("50 denials: %d events, %d suppressed", n, suppressed)
}
