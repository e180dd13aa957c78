package bpflsm

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

func TestGateNames(t *testing.T) {
	for _, c := range []struct {
		match hostpolicy.MatchKind
		value string
		want  string
	}{
		{hostpolicy.MatchPath, "/etc/shadow", "shadow"},
		{hostpolicy.MatchDirectory, "/etc/ssh/", "ssh"},
		{hostpolicy.MatchDirectory, "/", ""},
		{hostpolicy.MatchPath, "/", ""},
		{hostpolicy.MatchExecName, "sleep", "sleep"},
	} {
		if got := pathName(c.match, c.value); got != c.want {
			t.Errorf("pathName(%v, %q) = %q, want %q", c.match, c.value, got, c.want)
		}
	}
	for _, c := range []struct{ pattern, name, suffix string }{
		{"/home/*/secret", "secret", ""},
		{"/home/*/sec*", "home", ""},
		{"/etc/*.conf", "", "conf"},
		{"/etc/*y", "etc", ""},
		{"/t?p/*", "", ""},
		{"/t?p/*y", "", "y"},
		{"/a\\*b/*", "a*b", ""}, // an escaped '*' is a literal byte
		{"/x/[ab]/y*", "x", ""},
		{"/x/*-very-long-suffix", "", "ffix"},
		{"/x/*(deleted)", "x", ""}, // d_path's suffix of an unlinked file
	} {
		g, err := compileGlob(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if name, suffix := g.gateNeed(); name != c.name || suffix != c.suffix {
			t.Errorf("gateNeed(%q) = %q, %q, want %q, %q", c.pattern, name, suffix, c.name, c.suffix)
		}
	}
}

// TestGatePassesMatches: every path a rule matches passes the gate built
// from that rule alone (the gate's one promise), and a path with none of
// the names or suffixes does not.
func TestGatePassesMatches(t *testing.T) {
	patterns := []string{"/tmp/*", "/tmp/*/x", "/usr/bin/apt*", "/a/*b*c", "/x?z", "/[a-c]*", "/home/*/.ssh/id_[a-z]*",
		"/tmp/x[0-9]/busybox-*-t?ol", "/a/\\*", "/etc/shadow*", "/*/secret.key", "/var/lib/*.db", "/home/*/.bashrc",
		"/*/bench-deny-f1?.conf", "/tmp/bench/*/[a-m]*-f2", "/tmp/*/bench-deny-f0/*.key", "/x/*(deleted)"}
	texts := []string{"/tmp/x", "/tmp/a/b", "/tmp/a/x", "/usr/bin/apt", "/usr/bin/apt-get", "/a/bxc", "/a/xbyyc",
		"/xyz", "/abc", "/home/u/.ssh/id_rsa", "/tmp/x1/busybox-ab-tool", "/a/*", "/etc/shadow", "/etc/shadow-",
		"/srv/secret.key", "/var/lib/x.db", "/var/lib/.db", "/home/ann/.bashrc", "/q/bench-deny-f1x.conf",
		"/tmp/bench/data/abc-f2", "/tmp/q/bench-deny-f0/a.key", "/x/y (deleted)", "/tmp/bench/data/sub/file.txt"}
	for _, p := range patterns {
		g, err := compileGlob(p)
		if err != nil {
			t.Fatal(err)
		}
		var s settings
		s.gatePattern(catFile, g)
		if s.noGate != 0 {
			continue
		}
		var f nameFilter
		for n := range s.names[catFile] {
			f.add(n, catFile, false)
		}
		for n := range s.suffixes[catFile] {
			f.add(n, catFile, true)
		}
		for _, text := range texts {
			comps := strings.Split(strings.TrimPrefix(text, "/"), "/")
			// d_path's " (deleted)" is not in the name the gate reads
			comps[len(comps)-1] = strings.TrimSuffix(comps[len(comps)-1], deletedSuffix)
			if g.match(text, globSteps) && !f.passes(comps, catFile) {
				t.Errorf("%q matches %q but the gate skips it", p, text)
			}
		}
	}
	var f nameFilter
	f.add("secret", catFile, false)
	f.add(".key", catFile, true)
	for _, c := range []struct {
		path string
		want bool
	}{{"/srv/secret/x", true}, {"/srv/a.key", true}, {"/srv/a.keys", false}, {"/secret.key/x", false}, {"/srv/secre", false}} {
		if got := f.passes(strings.Split(c.path[1:], "/"), catFile); got != c.want {
			t.Errorf("passes(%q) = %v, want %v", c.path, got, c.want)
		}
	}
}

// TestNameGateConfig: the categories whose unmatched paths may be skipped.
func TestNameGateConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		spec string
		want uint32
	}{
		{"names", "  file:\n    matchPaths:\n    - path: /etc/shadow\n  process:\n    matchPaths:\n    - path: /bin/su\n  action: Block\n", 1<<catFile | 1<<catProcess},
		{"root dir", "  file:\n    matchDirectories:\n    - dir: /\n  action: Block\n", 1 << catProcess},
		{"wild pattern", "  file:\n    matchPatterns:\n    - pattern: /t?p/*\n  action: Audit\n", 1 << catProcess},
		{"allow-list", "  file:\n    matchPaths:\n    - path: /etc/hostname\n  action: Allow\n", 1 << catProcess},
		{"source allow-list", "  process:\n    matchPaths:\n    - path: /bin/ls\n      fromSource:\n      - path: /bin/sh\n  action: Allow\n", 1 << catFile},
	} {
		ent := translate(compileDocs(t, policy("p", c.spec)))
		if got := ent.cfg.nameGate(); got != c.want {
			t.Errorf("%s: nameGate = %#b, want %#b", c.name, got, c.want)
		}
	}
	var s settings
	s.gateName(catFile, "x (deleted)")
	var f nameFilter
	for name := range s.names[catFile] {
		f.add(name, catFile, false)
	}
	if !f.passes([]string{"x"}, catFile) || !f.passes([]string{"x (deleted)"}, catFile) {
		t.Error(`a rule on "x (deleted)" must let an unlinked "x" through the gate`)
	}
}

// TestNameGate: the gate skips only paths no rule can match, so each of
// these must still be decided by its rule. The names of the directories
// used (free, moved, mnt, ...) are in no rule: only the component the rule
// names lets the path through, and it must be seen as the path shows it.
// Audit rules where the test renames or re-creates (Block would refuse
// the operation itself).
func TestNameGate(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	// made before Apply: a Block rule refuses creating them
	writeFile(t, rel(dir, "p/gate-long-name-A"))
	writeFile(t, rel(dir, "p/gate-long-name-B"))
	writeFile(t, rel(dir, "p/gate-lon"))
	writeFile(t, rel(dir, "mnt/gate-target"))
	writeFile(t, rel(dir, "pat/orig/gate-key.pem"))
	// names longer than a dentry's inline name (32 or 40 bytes): the gate
	// reads them where d_name points
	longFile := rel(dir, "p/gate-external-name-"+strings.Repeat("x", 40))
	longDir := rel(dir, "gate-external-directory-"+strings.Repeat("y", 40))
	writeFile(t, longFile)
	writeFile(t, longDir+"/f")
	prog := copyBusybox(t, rel(dir, "bin/busybox-gate"))
	rs := apply(t, e, hostpolicy.Postures{},
		policy("g-exact", "  file:\n    matchPaths:\n    - path: "+dir+"/new/gate-secret\n  action: Audit\n"),
		policy("g-long", "  file:\n    matchPaths:\n    - path: "+dir+"/p/gate-long-name-A\n  action: Block\n"),
		policy("g-dir", "  file:\n    matchDirectories:\n    - dir: "+dir+"/gate-dir/\n      recursive: true\n  action: Audit\n"),
		policy("g-mnt", "  file:\n    matchPaths:\n    - path: "+dir+"/mnt/gate-target\n  action: Block\n"),
		policy("g-pat", "  file:\n    matchPatterns:\n    - pattern: "+dir+"/pat/*/gate-key.pem\n  action: Block\n"),
		policy("g-exec", "  process:\n    matchPaths:\n    - path: "+prog+"\n  action: Block\n"),
		policy("g-ext", "  file:\n    matchPaths:\n    - path: "+longFile+"\n  action: Block\n"),
		policy("g-extdir", "  file:\n    matchDirectories:\n    - dir: "+longDir+"/\n  action: Block\n"),
	)
	exact, long, dirID, mnt := ruleID(t, rs, "g-exact"), ruleID(t, rs, "g-long"), ruleID(t, rs, "g-dir"), ruleID(t, rs, "g-mnt")
	pat, execID := ruleID(t, rs, "g-pat"), ruleID(t, rs, "g-exec")

	// A file reached through a renamed ancestor: made as old/gate-secret
	// after Apply, then old renamed to new.
	writeFile(t, rel(dir, "old/gate-secret"))
	if err := os.Rename(rel(dir, "old"), rel(dir, "new")); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, openRead(rel(dir, "new/gate-secret")), "read of the audited file")
	wantFileOpEvent(t, 0, exact, event.VerdictAudit, "lsm=FILE_OPEN", rel(dir, "new/gate-secret"))

	// A directory rule's directory made after Apply, removed and made
	// again by renaming another directory into its name, and then a bind
	// mount over it.
	inDir := rel(dir, "gate-dir/f")
	for i := 0; i < 2; i++ {
		if i == 0 {
			writeFile(t, inDir)
		} else {
			writeFile(t, rel(dir, "elsewhere/f"))
			if err := os.Rename(rel(dir, "elsewhere"), rel(dir, "gate-dir")); err != nil {
				t.Fatal(err)
			}
		}
		n := collected.Count(opAlert(dirID, event.VerdictAudit, "lsm=FILE_OPEN", inDir))
		wantAllowed(t, openRead(inDir), "read in the audited directory")
		wantFileOpEvent(t, n, dirID, event.VerdictAudit, "lsm=FILE_OPEN", inDir)
		if err := os.RemoveAll(rel(dir, "gate-dir")); err != nil {
			t.Fatal(err)
		}
	}

	// A component equal to a rule's name only in its first bytes, or
	// with the same length and first 8 bytes (the same filter bit).
	wantDenied(t, openRead(rel(dir, "p/gate-long-name-A")), "read of the blocked file")
	wantFileOpEvent(t, 0, long, event.VerdictBlock, "lsm=FILE_OPEN", rel(dir, "p/gate-long-name-A"))
	wantAllowed(t, openRead(rel(dir, "p/gate-long-name-B")), "a name sharing the rule name's filter bit")
	wantAllowed(t, openRead(rel(dir, "p/gate-lon")), "a prefix of the rule's name")

	wantDenied(t, openRead(longFile), "read of the blocked file with a long name")
	wantFileOpEvent(t, 0, ruleID(t, rs, "g-ext"), event.VerdictBlock, "lsm=FILE_OPEN", longFile)
	wantDenied(t, openRead(longDir+"/f"), "read in the blocked directory with a long name")
	wantFileOpEvent(t, 0, ruleID(t, rs, "g-extdir"), event.VerdictBlock, "lsm=FILE_OPEN", longDir+"/f")

	// Bind mounts: the path shows the mount point's name, not the
	// mounted dentry's own. A file mounted over the rule's name, and a
	// directory mounted over the audited directory's.
	src := writeFile(t, rel(dir, "src/other"))
	if err := syscall.Mount(src, rel(dir, "mnt/gate-target"), "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(rel(dir, "mnt/gate-target"), syscall.MNT_DETACH) })
	wantAllowed(t, openRead(src), "read of the mounted file by its own name")
	wantDenied(t, openRead(rel(dir, "mnt/gate-target")), "read through the bind mount")
	wantFileOpEvent(t, 0, mnt, event.VerdictBlock, "lsm=FILE_OPEN", rel(dir, "mnt/gate-target"))
	writeFile(t, rel(dir, "srcdir/f"))
	if err := os.MkdirAll(rel(dir, "gate-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(rel(dir, "srcdir"), rel(dir, "gate-dir"), "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(rel(dir, "gate-dir"), syscall.MNT_DETACH) })
	n := collected.Count(opAlert(dirID, event.VerdictAudit, "lsm=FILE_OPEN", inDir))
	wantAllowed(t, openRead(inDir), "read through the directory bind mount")
	wantFileOpEvent(t, n, dirID, event.VerdictAudit, "lsm=FILE_OPEN", inDir)

	// A pattern with a literal component, under a directory renamed after
	// Apply (the wildcard's part).
	if err := os.Rename(rel(dir, "pat/orig"), rel(dir, "pat/moved")); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, openRead(rel(dir, "pat/moved/gate-key.pem")), "read of a file the pattern matches")
	wantFileOpEvent(t, 0, pat, event.VerdictBlock, "lsm=FILE_OPEN", rel(dir, "pat/moved/gate-key.pem"))

	// Exec: the blocked program, and one no rule names.
	wantDenied(t, run(prog, "true"), "exec of the blocked program")
	wantVerdict(t, execID, event.VerdictBlock, event.OpProcess, prog)
	wantAllowed(t, run(copyBusybox(t, rel(dir, "free/busybox-other")), "true"), "exec of a program no rule names")

	// Hard links to an audited file, made before and after Apply: the
	// link's name is in no rule, the inode's tag decides.
	audited := writeFile(t, rel(dir, "aud/gate-audited"))
	if err := os.Link(audited, rel(dir, "free/before")); err != nil {
		t.Fatal(err)
	}
	rs = apply(t, e, hostpolicy.Postures{},
		policy("g-aud", "  file:\n    matchPaths:\n    - path: "+audited+"\n  action: Audit\n"))
	aud := ruleID(t, rs, "g-aud")
	if err := os.Link(audited, rel(dir, "free/after")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"free/before", "free/after"} {
		wantAllowed(t, openRead(rel(dir, name)), "read through a link to the audited file")
		wantFileOpEvent(t, 0, aud, event.VerdictAudit, "lsm=FILE_OPEN", rel(dir, name))
	}

	// A pattern with no literal component turns the gate off for files.
	writeFile(t, rel(dir, "wx/xy"))
	rs = apply(t, e, hostpolicy.Postures{},
		policy("g-wild", "  file:\n    matchPatterns:\n    - pattern: /t[m]p/bpfls?/Test*Gate/w*/x*\n  action: Block\n"))
	wild := ruleID(t, rs, "g-wild")
	wantDenied(t, openRead(rel(dir, "wx/xy")), "read of a file the all-wildcard pattern matches")
	wantFileOpEvent(t, 0, wild, event.VerdictBlock, "lsm=FILE_OPEN", rel(dir, "wx/xy"))
}
