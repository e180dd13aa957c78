package bpflsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// TestNameRules: the rules a tag carries are what match_path finds for the
// name: the exact path first, then per action the deepest directory rule,
// a non-recursive one only in the name's own directory.
func TestNameRules(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{},
		policy("exact", `
  file:
    matchPaths:
    - path: /srv/a/secret
      readOnly: true
  action: Block
`), policy("rec", `
  file:
    matchDirectories:
    - dir: /srv/
      recursive: true
  action: Audit
`), policy("here", `
  file:
    matchDirectories:
    - dir: /srv/a/
  action: Block
`), policy("prog", `
  process:
    matchPaths:
    - path: /srv/a/secret
  action: Block
`))
	ent := translate(rs)
	id := func(p string) uint32 { return ruleID(t, rs, p) }
	for _, c := range []struct {
		name            string
		kindPath, kindD uint32
		path            string
		block, audit    uint32
		blockFlags      uint32
	}{
		{"exact wins over the directory", kindFilePath, kindFileDir, "/srv/a/secret", id("exact"), id("rec"), flagReadOnly},
		{"non-recursive directory rule in its own directory", kindFilePath, kindFileDir, "/srv/a/other", id("here"), id("rec"), 0},
		{"non-recursive directory rule not below", kindFilePath, kindFileDir, "/srv/a/sub/x", 0, id("rec"), 0},
		{"recursive directory rule below", kindFilePath, kindFileDir, "/srv/b/c/d", 0, id("rec"), 0},
		{"nothing", kindFilePath, kindFileDir, "/etc/x", 0, 0, 0},
		{"process rules are their own category", kindExecPath, kindExecDir, "/srv/a/secret", id("prog"), 0, 0},
	} {
		v := ent.nameRules(c.kindPath, c.kindD, c.path, 0)
		if v[slotBlock].id != c.block || v[slotAudit].id != c.audit || v[slotBlock].flags&flagReadOnly != c.blockFlags {
			t.Errorf("%s: %s -> %+v, want block %d (flags %#x) audit %d", c.name, c.path, v, c.block, c.blockFlags, c.audit)
		}
	}
}

// TestTagNames: matchPaths names are tagged, and in a directory rule's
// directories the regular files with more than one link, up to the bound.
func TestTagNames(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	linked, deep, lone := mk("d/linked"), mk("d/sub/deep"), mk("d/lone")
	flat := mk("flat/linked")
	for _, p := range []string{linked, deep, flat, mk("flat/sub/deep")} {
		if err := os.Link(p, p+".2"); err != nil {
			t.Fatal(err)
		}
	}
	rs := compile(t, hostpolicy.Postures{}, policy("p", strings.ReplaceAll(`
  file:
    matchPaths:
    - path: ROOT/named
    matchDirectories:
    - dir: ROOT/d/
      recursive: true
    - dir: ROOT/flat/
  action: Block
`, "ROOT", root)))
	names, walked, cut := tagNames(translate(rs), nil)
	delete(names, sentinelPath) // compile's own Audit rule
	want := []string{filepath.Join(root, "named"), linked, linked + ".2", deep, deep + ".2", flat, flat + ".2"}
	if cut || len(names) != len(want) {
		t.Errorf("tagNames: %v (cut %v), want %v", names, cut, want)
	}
	for _, p := range want {
		if _, ok := names[p]; !ok {
			t.Errorf("%s not tagged: %v", p, names)
		}
	}
	if _, ok := names[lone]; ok {
		t.Errorf("a file with one link was tagged")
	}
	// The next Apply does not walk again: it keeps what the walk found
	// while it still has more than one link.
	if err := os.Remove(linked + ".2"); err != nil {
		t.Fatal(err)
	}
	mk("d/new")
	if err := os.Link(filepath.Join(root, "d/new"), filepath.Join(root, "d/new.2")); err != nil {
		t.Fatal(err)
	}
	again, _, _ := tagNames(translate(rs), walked)
	for _, p := range []string{linked, linked + ".2", filepath.Join(root, "d/new")} {
		if _, ok := again[p]; ok {
			t.Errorf("%s tagged again: %v", p, again)
		}
	}
	if _, ok := again[deep]; !ok {
		t.Errorf("%s no longer tagged: %v", deep, again)
	}
}
