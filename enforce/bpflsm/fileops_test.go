package bpflsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// The file-operation tests try, as an attacker would, every way around a
// file rule that the path hooks close: each operation is a real system
// call the kernel refuses (or lets through and reports), and at the end
// the protected content is what it was.

const fixtureData = "data\n"

// fileOp is one operation on the fixture of dir (fileOpsFixture).
type fileOp struct {
	name     string
	data     string // the Data of its alert
	resource string // relative to the fixture's directory
	do       func(dir string) error
	readOnly bool // a read: readOnly rules let it through without an alert
}

func rel(dir, p string) string { return filepath.Join(dir, p) }

var fileOps = []fileOp{
	{name: "open read", data: "lsm=FILE_OPEN", resource: "prot/secret", readOnly: true,
		do: func(d string) error { return openRead(rel(d, "prot/secret")) }},
	{name: "open write", data: "lsm=FILE_OPEN", resource: "prot/secret",
		do: func(d string) error { return openWrite(rel(d, "prot/secret")) }},
	{name: "truncate", data: "lsm=FILE_TRUNCATE", resource: "prot/secret",
		do: func(d string) error { return syscall.Truncate(rel(d, "prot/secret"), 0) }},
	{name: "unlink", data: "lsm=FILE_UNLINK", resource: "prot/secret",
		do: func(d string) error { return syscall.Unlink(rel(d, "prot/secret")) }},
	{name: "rmdir", data: "lsm=FILE_RMDIR", resource: "prot/sub",
		do: func(d string) error { return syscall.Rmdir(rel(d, "prot/sub")) }},
	{name: "mkdir", data: "lsm=FILE_MKDIR", resource: "prot/newdir",
		do: func(d string) error { return syscall.Mkdir(rel(d, "prot/newdir"), 0o755) }},
	{name: "mknod", data: "lsm=FILE_MKNOD", resource: "prot/newfile",
		do: func(d string) error { return syscall.Mknod(rel(d, "prot/newfile"), syscall.S_IFREG|0o644, 0) }},
	{name: "create", data: "lsm=FILE_MKNOD", resource: "prot/created",
		do: func(d string) error {
			f, err := os.OpenFile(rel(d, "prot/created"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
			if err == nil {
				f.Close()
			}
			return err
		}},
	{name: "symlink inside", data: "lsm=FILE_SYMLINK", resource: "prot/symlink",
		do: func(d string) error { return syscall.Symlink("/etc/hostname", rel(d, "prot/symlink")) }},
	{name: "hard link out", data: "lsm=FILE_LINK", resource: "prot/secret",
		do: func(d string) error { return syscall.Link(rel(d, "prot/secret"), rel(d, "free/hardlink")) }},
	{name: "rename out", data: "lsm=FILE_RENAME", resource: "prot/secret",
		do: func(d string) error { return syscall.Rename(rel(d, "prot/secret"), rel(d, "free/moved")) }},
	{name: "rename the directory out", data: "lsm=FILE_RENAME", resource: "prot",
		do: func(d string) error { return syscall.Rename(rel(d, "prot"), rel(d, "free/movedprot")) }},
	{name: "rename over", data: "lsm=FILE_RENAME", resource: "prot/secret",
		do: func(d string) error { return syscall.Rename(rel(d, "free/evil"), rel(d, "prot/secret")) }},
	{name: "chmod", data: "lsm=FILE_CHMOD", resource: "prot/secret",
		do: func(d string) error { return syscall.Chmod(rel(d, "prot/secret"), 0o666) }},
	{name: "chown", data: "lsm=FILE_CHOWN", resource: "prot/secret",
		do: func(d string) error { return syscall.Chown(rel(d, "prot/secret"), 65534, 65534) }},
}

// fileOpsFixture (re)creates dir/prot/secret, dir/prot/sub/, dir/free/ and
// dir/free/evil, and removes what earlier operations made. Under Block and
// readOnly rules it runs before the rules are applied.
func fileOpsFixture(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(rel(dir, "free/movedprot")); err == nil {
		if err := os.Rename(rel(dir, "free/movedprot"), rel(dir, "prot")); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"prot/newdir", "prot/newfile", "prot/created", "prot/symlink", "free/hardlink", "free/moved"} {
		if err := os.RemoveAll(rel(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"prot/sub", "free"} {
		if err := os.MkdirAll(rel(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(rel(dir, "prot/secret")); err != nil || string(b) != fixtureData {
		if err := os.WriteFile(rel(dir, "prot/secret"), []byte(fixtureData), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(rel(dir, "prot/secret"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(rel(dir, "free/evil"), []byte("evil\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// opAlert matches the alert of one operation.
func opAlert(rule uint32, v event.Verdict, data, resource string) func(event.Event) bool {
	return func(ev event.Event) bool {
		return ev.RuleID == rule && ev.Verdict == v && ev.Data == data && ev.Resource == resource
	}
}

// wantFileOpEvent waits until more than before alerts of one operation
// have arrived (the fixture's own writes raise alerts too) and checks the
// last one.
func wantFileOpEvent(t *testing.T, before int, rule uint32, v event.Verdict, data, resource string) {
	t.Helper()
	pred := opAlert(rule, v, data, resource)
	for i := 0; i < 600 && collected.Count(pred) <= before; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if collected.Count(pred) <= before {
		t.Errorf("no %s alert for %s (verdict %d, rule %d); got:\n%s", data, resource, v, rule, eventtest.Dump(collected.All(nil)))
		return
	}
	ev := wantVerdict(t, rule, v, event.OpFile, resource)
	self, _ := os.Executable()
	if ev.Exe != self {
		t.Errorf("Exe = %q, want %q", ev.Exe, self)
	}
}

// wantIntact checks that the protected file and directory are as the
// fixture made them and nothing got an unprotected name.
func wantIntact(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Stat(rel(dir, "prot/secret"))
	if err != nil {
		t.Fatalf("protected file: %v", err)
	}
	b, err := os.ReadFile(rel(dir, "prot/secret"))
	if err != nil || string(b) != fixtureData {
		t.Errorf("protected content = %q, %v; want %q", b, err, fixtureData)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("protected mode = %v, want 0644", st.Mode().Perm())
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || sys.Nlink != 1 {
		t.Errorf("protected owner %d, links %d; want 0 and 1", sys.Uid, sys.Nlink)
	}
	for _, p := range []string{"free/hardlink", "free/moved", "free/movedprot", "prot/newdir", "prot/newfile", "prot/created", "prot/symlink"} {
		if _, err := os.Lstat(rel(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v)", p, err)
		}
	}
	if _, err := os.Stat(rel(dir, "prot/sub")); err != nil {
		t.Errorf("prot/sub: %v", err)
	}
}

// TestFileOpsDirectory runs every operation against a recursive directory
// rule with each action: Block refuses all of them, readOnly all but the
// read, Audit none (and reports each).
func TestFileOpsDirectory(t *testing.T) {
	for _, mode := range []struct {
		name, action string
		readOnly     bool
	}{{"block", "Block", false}, {"readonly", "Block", true}, {"audit", "Audit", false}} {
		t.Run(mode.name, func(t *testing.T) {
			e := kernel(t)
			dir := testDir(t)
			fileOpsFixture(t, dir)
			ro := ""
			if mode.readOnly {
				ro = "\n      readOnly: true"
			}
			rs := apply(t, e, hostpolicy.Postures{}, policy("fileops-"+mode.name, `
  file:
    matchDirectories:
    - dir: `+dir+`/prot/
      recursive: true`+ro+`
  action: `+mode.action+`
`))
			id := ruleID(t, rs, "fileops-"+mode.name)
			for _, op := range fileOps {
				if mode.action == "Audit" {
					fileOpsFixture(t, dir)
				}
				res := rel(dir, op.resource)
				verdict := event.VerdictBlock
				if mode.action == "Audit" {
					verdict = event.VerdictAudit
				}
				before := collected.Count(opAlert(id, verdict, op.data, res))
				err := op.do(dir)
				switch {
				case mode.action == "Audit":
					if err != nil {
						t.Errorf("%s: %v, want success", op.name, err)
						continue
					}
					wantFileOpEvent(t, before, id, verdict, op.data, res)
				case mode.readOnly && op.readOnly:
					if err != nil {
						t.Errorf("%s: %v, want success", op.name, err)
					}
				default:
					if !errors.Is(err, syscall.EACCES) {
						t.Errorf("%s: %v, want permission denied", op.name, err)
						continue
					}
					wantFileOpEvent(t, before, id, verdict, op.data, res)
				}
			}
			if mode.action != "Audit" {
				// With the rules gone, so that a Block rule lets the
				// check read the file.
				if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
					t.Fatal(err)
				}
				wantIntact(t, dir)
			}
		})
	}
}

// TestFileOpsPath: a rule on one file protects it, and the directories
// above it against being renamed away, and nothing else.
func TestFileOpsPath(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	secret := writeFile(t, rel(dir, "a/b/secret"))
	other := writeFile(t, rel(dir, "a/b/other"))
	if err := os.MkdirAll(rel(dir, "free"), 0o755); err != nil {
		t.Fatal(err)
	}
	rs := apply(t, e, hostpolicy.Postures{}, policy("fileops-path", `
  file:
    matchPaths:
    - path: `+secret+`
  action: Block
`))
	id := ruleID(t, rs, "fileops-path")
	for _, c := range []struct {
		name, data, resource string
		err                  error
	}{
		{"rename the parent out", "lsm=FILE_RENAME", rel(dir, "a/b"), syscall.Rename(rel(dir, "a/b"), rel(dir, "free/b"))},
		{"rename the grandparent out", "lsm=FILE_RENAME", rel(dir, "a"), syscall.Rename(rel(dir, "a"), rel(dir, "free/a"))},
		{"hard link", "lsm=FILE_LINK", secret, syscall.Link(secret, rel(dir, "free/link"))},
		{"unlink", "lsm=FILE_UNLINK", secret, syscall.Unlink(secret)},
		{"rename over", "lsm=FILE_RENAME", secret, syscall.Rename(other, secret)},
	} {
		if !errors.Is(c.err, syscall.EACCES) {
			t.Errorf("%s: %v, want permission denied", c.name, c.err)
			continue
		}
		wantFileOpEvent(t, 0, id, event.VerdictBlock, c.data, c.resource)
	}
	// Unprotected neighbours stay usable.
	wantAllowed(t, syscall.Mkdir(rel(dir, "a/b/newdir"), 0o755), "mkdir beside the protected file")
	wantAllowed(t, syscall.Link(other, rel(dir, "free/other-link")), "hard link of an unprotected file")
	wantAllowed(t, syscall.Rename(other, rel(dir, "free/other")), "rename of an unprotected file")
	wantAllowed(t, syscall.Unlink(rel(dir, "free/other")), "unlink of an unprotected file")
	if b, err := os.ReadFile(secret); err == nil || len(b) != 0 {
		t.Errorf("read of the protected file: %q, %v; want permission denied", b, err)
	}
}

// TestFileOpsProcess: a blocked program cannot get another name (a hard
// link, a rename of it or of its directory) to be run by.
func TestFileOpsProcess(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	prog := copyBusybox(t, rel(dir, "bin/busybox-blocked"))
	if err := os.MkdirAll(rel(dir, "free"), 0o755); err != nil {
		t.Fatal(err)
	}
	rs := apply(t, e, hostpolicy.Postures{}, policy("fileops-process", `
  process:
    matchPaths:
    - path: `+prog+`
  action: Block
`))
	id := ruleID(t, rs, "fileops-process")
	for _, c := range []struct {
		name, data, resource string
		err                  error
	}{
		{"hard link", "lsm=FILE_LINK", prog, syscall.Link(prog, rel(dir, "free/busybox-link"))},
		{"rename", "lsm=FILE_RENAME", prog, syscall.Rename(prog, rel(dir, "free/busybox-moved"))},
		{"rename its directory", "lsm=FILE_RENAME", rel(dir, "bin"), syscall.Rename(rel(dir, "bin"), rel(dir, "free/bin"))},
	} {
		if !errors.Is(c.err, syscall.EACCES) {
			t.Errorf("%s: %v, want permission denied", c.name, c.err)
			continue
		}
		wantFileOpEvent(t, 0, id, event.VerdictBlock, c.data, c.resource)
	}
	for _, p := range []string{"free/busybox-link", "free/busybox-moved", "free/bin"} {
		if _, err := os.Lstat(rel(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v)", p, err)
		}
	}
	// Reading it (a copy) is a file operation no process rule covers.
	wantAllowed(t, openRead(prog), "read of a blocked program")
}

// sh runs a shell command inside the container and returns its exit code.
func (c *fakeContainer) sh(t *testing.T, cmd string) int {
	t.Helper()
	if _, err := fmt.Fprintf(c.in, "%s; echo rc=$?\n", cmd); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := c.out.ReadString('\n')
		if err != nil {
			t.Fatalf("container shell: %v", err)
		}
		var rc int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "rc=%d", &rc); err == nil {
			return rc
		}
	}
}

// TestFileOpsContainer: the same operations, run inside a container (the
// cgroup stand-in) that a container policy's Block directory rule selects:
// each is refused there, with the container's identity in the alert, and
// the host, which no rule covers, is not held back.
func TestFileOpsContainer(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	fileOpsFixture(t, dir)
	web := startContainer(t, "fileops", true)
	t.Cleanup(func() {
		if _, err := e.SetContainers(nil); err != nil {
			t.Errorf("SetContainers(nil): %v", err)
		}
	})
	rs := apply(t, e, hostpolicy.Postures{},
		containerPolicyDoc("ctr-fileops", "      kubearmor.io/container.name: fileops\n", `  file:
    matchDirectories:
    - dir: `+dir+`/prot/
      recursive: true
  action: Block
`))
	id := containerRuleID(t, rs, "ctr-fileops")
	if un, err := e.SetContainers([]hostpolicy.Container{{ID: "fileops", CgroupID: web.cgroupID, Info: info("fileops")}}); err != nil || len(un) != 0 {
		t.Fatalf("SetContainers: %v %v", un, err)
	}
	bb := busybox
	p := func(s string) string { return rel(dir, s) }
	for _, c := range []struct{ name, data, resource, cmd string }{
		{"open read", "lsm=FILE_OPEN", "prot/secret", bb + " cat " + p("prot/secret")},
		{"open write", "lsm=FILE_OPEN", "prot/secret", "echo x >>" + p("prot/secret")},
		// busybox truncate opens the file for writing first, and that
		// open is what is refused (truncate(2) by path: TestFileOpsDirectory)
		{"truncate", "lsm=FILE_OPEN", "prot/secret", bb + " truncate -s 0 " + p("prot/secret")},
		{"unlink", "lsm=FILE_UNLINK", "prot/secret", bb + " rm -f " + p("prot/secret")},
		{"rmdir", "lsm=FILE_RMDIR", "prot/sub", bb + " rmdir " + p("prot/sub")},
		{"mkdir", "lsm=FILE_MKDIR", "prot/newdir", bb + " mkdir " + p("prot/newdir")},
		{"mknod", "lsm=FILE_MKNOD", "prot/newfile", bb + " mknod " + p("prot/newfile") + " p"},
		{"create", "lsm=FILE_MKNOD", "prot/created", bb + " touch " + p("prot/created")},
		{"symlink inside", "lsm=FILE_SYMLINK", "prot/symlink", bb + " ln -s /etc/hostname " + p("prot/symlink")},
		{"hard link out", "lsm=FILE_LINK", "prot/secret", bb + " ln " + p("prot/secret") + " " + p("free/hardlink")},
		{"rename out", "lsm=FILE_RENAME", "prot/secret", bb + " mv " + p("prot/secret") + " " + p("free/moved")},
		{"rename the directory out", "lsm=FILE_RENAME", "prot", bb + " mv " + p("prot") + " " + p("free/movedprot")},
		{"rename over", "lsm=FILE_RENAME", "prot/secret", bb + " mv -f " + p("free/evil") + " " + p("prot/secret")},
		{"chmod", "lsm=FILE_CHMOD", "prot/secret", bb + " chmod 666 " + p("prot/secret")},
		{"chown", "lsm=FILE_CHOWN", "prot/secret", bb + " chown 65534 " + p("prot/secret")},
	} {
		if rc := web.sh(t, c.cmd+" 2>/dev/null"); rc == 0 {
			t.Errorf("%s in the container: allowed, want refused", c.name)
			continue
		}
		pred := opAlert(id, event.VerdictBlock, c.data, p(c.resource))
		ev := waitEvent(t, c.name, pred)
		if ev.CgroupID != web.cgroupID || ev.PidNS != web.pidNS || ev.Retval != -13 {
			t.Errorf("%s: alert cgroup %d pidns %d retval %d, want %d %d -13", c.name, ev.CgroupID, ev.PidNS, ev.Retval, web.cgroupID, web.pidNS)
		}
	}
	// The host is outside the container policy's scope.
	wantAllowed(t, syscall.Chmod(p("prot/secret"), 0o644), "chmod on the host")
	wantAllowed(t, openRead(p("prot/secret")), "read on the host")
	wantIntact(t, dir)
}
