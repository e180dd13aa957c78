package bpflsm

import (
	"os"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// TestFileOpsPreexistingLinks: hard links made before the rules are other names
// of a protected inode that no rule covers by path; the inode tags Apply
// writes (inodes.go) decide them as the rule's name. A file rule's file,
// a file in a Block directory, a blocked program and an Audit rule's file,
// each reached through a link made before Apply: refused (or reported),
// with the name used in Resource. A later Apply without the rule lifts it
// (the tag is stale), and one with the rule again brings it back.
func TestFileOpsPreexistingLinks(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	secret := writeFile(t, rel(dir, "etc/secret"))
	inDir := writeFile(t, rel(dir, "blk/sub/f"))
	audited := writeFile(t, rel(dir, "aud/file"))
	lone := writeFile(t, rel(dir, "blk/lone")) // one link: not tagged, nothing to tag
	prog := copyBusybox(t, rel(dir, "bin/busybox-blocked"))
	if err := os.MkdirAll(rel(dir, "free"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{secret: "free/x", inDir: "free/y", audited: "free/z", prog: "free/busybox-link"}
	for from, to := range links {
		if err := os.Link(from, rel(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	docs := func(withSecret bool) []string {
		d := []string{policy("old-dir", `
  file:
    matchDirectories:
    - dir: `+dir+`/blk/
      recursive: true
  action: Block
`), policy("old-prog", `
  process:
    matchPaths:
    - path: `+prog+`
  action: Block
`), policy("old-audit", `
  file:
    matchPaths:
    - path: `+audited+`
  action: Audit
`)}
		if withSecret {
			d = append(d, policy("old-secret", `
  file:
    matchPaths:
    - path: `+secret+`
  action: Block
`))
		}
		return d
	}
	rs := apply(t, e, hostpolicy.Postures{}, docs(true)...)
	secretID, dirID, progID, audit := ruleID(t, rs, "old-secret"), ruleID(t, rs, "old-dir"), ruleID(t, rs, "old-prog"), ruleID(t, rs, "old-audit")
	if st, err := e.Stats(); err != nil || st.InodeTags < 4 || st.InodeTags > 5 || st.InodeTagFail != 0 || st.TagWalkCut {
		t.Errorf("Stats: %d tagged, %d failed (%v), cut %v (%v); want 4 (5 with the sentinel file), 0, false", st.InodeTags, st.InodeTagFail, st.InodeTagErr, st.TagWalkCut, err)
	}

	x, y, z := rel(dir, "free/x"), rel(dir, "free/y"), rel(dir, "free/z")
	wantDenied(t, openRead(x), "read through an old link to a blocked file")
	wantFileOpEvent(t, 0, secretID, event.VerdictBlock, "lsm=FILE_OPEN", x)
	wantDenied(t, openWrite(y), "write through an old link to a file in a blocked directory")
	wantFileOpEvent(t, 0, dirID, event.VerdictBlock, "lsm=FILE_OPEN", y)
	wantDenied(t, run(rel(dir, "free/busybox-link"), "true"), "exec of an old link to a blocked program")
	wantVerdict(t, progID, event.VerdictBlock, event.OpProcess, rel(dir, "free/busybox-link"))
	wantAllowed(t, openRead(z), "read through an old link to an audited file")
	wantFileOpEvent(t, 0, audit, event.VerdictAudit, "lsm=FILE_OPEN", z)
	// by their own names, as before
	wantDenied(t, openRead(secret), "read of the blocked file")
	wantDenied(t, openRead(lone), "read of a file in the blocked directory")
	wantDenied(t, run(prog, "true"), "exec of the blocked program")

	// The rule on secret goes: its tag is stale, the link works.
	apply(t, e, hostpolicy.Postures{}, docs(false)...)
	if st, err := e.Stats(); err != nil || st.InodeTags < 3 || st.InodeTagFail != 0 {
		t.Errorf("Stats after the second Apply: %d tagged, %d failed (%v) (%v); want 3 (4 with the sentinel file), 0", st.InodeTags, st.InodeTagFail, st.InodeTagErr, err)
	}
	wantAllowed(t, openRead(x), "read through the old link once the rule is gone")
	wantAllowed(t, openRead(secret), "read of the file once the rule is gone")
	wantDenied(t, openRead(y), "the directory rule's link still")
	// and comes back
	rs = apply(t, e, hostpolicy.Postures{}, docs(true)...)
	secretID = ruleID(t, rs, "old-secret")
	before := collected.Count(opAlert(secretID, event.VerdictBlock, "lsm=FILE_OPEN", x))
	wantDenied(t, openRead(x), "read through the old link once the rule is back")
	wantFileOpEvent(t, before, secretID, event.VerdictBlock, "lsm=FILE_OPEN", x)

	// A new file under the old name of a deleted one inherits nothing.
	if err := os.Remove(x); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, os.WriteFile(rel(dir, "free/new"), []byte("n"), 0o644), "a new file beside")
	wantAllowed(t, openRead(rel(dir, "free/new")), "read of the new file")

	if _, err := e.Apply(compile(t, hostpolicy.Postures{})); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != fixtureData {
		t.Errorf("protected content: %q, %v; want %q", b, err, fixtureData)
	}
}
