package bpflsm

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// parse compiles one policy for this host (host tests, no kernel needed).
func parse(t *testing.T, postures hostpolicy.Postures, doc string) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, doc)
}

func TestTranslate(t *testing.T) {
	type pathWant struct {
		kind  uint32
		src   string // fromSource path, "" for any
		path  string
		slot  uint8
		flags uint32
	}
	type netWant struct {
		kind, value uint32
		src         string
		slot        uint8
	}
	tests := []struct {
		name       string
		spec       string
		postures   hostpolicy.Postures
		paths      []pathWant
		nets       []netWant
		patterns   int
		unenforced int
		cfg        func(t *testing.T, c settings, sources map[string]sourceValue)
	}{{
		name: "process path, execname and directories",
		spec: `
  process:
    matchPaths:
    - path: /usr/bin/curl
    - execname: wget
      ownerOnly: true
    matchDirectories:
    - dir: /opt/tools/
      recursive: true
    - dir: /srv/
  action: Block`,
		paths: []pathWant{
			{kindExecPath, "", "/usr/bin/curl", slotBlock, 0},
			{kindExecName, "", "wget", slotBlock, flagOwner},
			{kindExecDir, "", "/opt/tools/", slotBlock, flagRecursive},
			{kindExecDir, "", "/srv/", slotBlock, 0},
		},
		cfg: func(t *testing.T, c settings, _ map[string]sourceValue) {
			want := uint32(1<<kindExecPath | 1<<kindExecName | 1<<kindExecDir | 1<<kindAncestor)
			if c.kinds != want || c.allowlist != 0 || c.hasSources != 0 {
				t.Errorf("cfg = %+v", c)
			}
		},
	}, {
		name: "file rules with readOnly and fromSource",
		spec: `
  file:
    matchPaths:
    - path: /etc/shadow
      readOnly: true
      fromSource:
      - path: /usr/bin/passwd
      - path: /usr/sbin/chpasswd
    matchDirectories:
    - dir: /root/
      recursive: true
  action: Audit`,
		paths: []pathWant{
			{kindFilePath, "/usr/bin/passwd", "/etc/shadow", slotAudit, flagReadOnly},
			{kindFilePath, "/usr/sbin/chpasswd", "/etc/shadow", slotAudit, flagReadOnly},
			{kindFileDir, "", "/root/", slotAudit, flagRecursive},
		},
		cfg: func(t *testing.T, c settings, sources map[string]sourceValue) {
			if c.hasSources != 1<<catFile || len(sources) != 2 {
				t.Errorf("hasSources = %#x, sources = %v", c.hasSources, sources)
			}
			// /etc/shadow's rules name sources; its ancestors' entries
			// are for the same sources; /root/ is for every task.
			if c.kinds&(1<<kindFilePath) == 0 || c.globalKinds&(1<<kindFilePath) != 0 || c.globalKinds&(1<<kindFileDir) == 0 {
				t.Errorf("kinds = %#x, globalKinds = %#x", c.kinds, c.globalKinds)
			}
		},
	}, {
		name: "allow-list per source and globally",
		spec: `
  process:
    matchPaths:
    - path: /bin/ls
      fromSource:
      - path: /bin/bash
  file:
    matchPaths:
    - path: /etc/hosts
  action: Allow`,
		postures: hostpolicy.Postures{File: "block"},
		paths: []pathWant{
			{kindExecPath, "/bin/bash", "/bin/ls", slotAllow, 0},
			{kindFilePath, "", "/etc/hosts", slotAllow, 0},
		},
		cfg: func(t *testing.T, c settings, sources map[string]sourceValue) {
			if c.allowlist != 1<<catFile {
				t.Errorf("global allow-list = %#x, want file only", c.allowlist)
			}
			if sources["/bin/bash"].allowlist != 1<<catProcess || c.hasSources != 1<<catProcess|1<<(catProcess+8) {
				t.Errorf("source allow-list = %+v, hasSources = %#x", sources["/bin/bash"], c.hasSources)
			}
			if c.postureBlock != 1<<catProcess|1<<catFile {
				t.Errorf("postureBlock = %#x, want process and file (they share the file posture)", c.postureBlock)
			}
		},
	}, {
		name: "network protocols and capabilities",
		spec: `
  network:
    matchProtocols:
    - protocol: tcp,udp
    - protocol: raw
    - protocol: all
      fromSource:
      - path: /usr/bin/nc
  capabilities:
    matchCapabilities:
    - capability: net_raw
    - capability: CAP_SYS_ADMIN
  action: Block`,
		nets: []netWant{
			{kindNetProto, 6, "", slotBlock},
			{kindNetProto, 17, "", slotBlock},
			{kindNetType, 3, "", slotBlock},
			{kindNetAny, 0, "/usr/bin/nc", slotBlock},
			{kindCap, 13, "", slotBlock},
			{kindCap, 21, "", slotBlock},
		},
		cfg: func(t *testing.T, c settings, _ map[string]sourceValue) {
			if c.caps != 1<<13|1<<21 {
				t.Errorf("caps = %#x", c.caps)
			}
			// Any-protocol rules exist only for a source: the hooks
			// skip the every-task lookup of that kind.
			if want := uint32(1<<kindNetProto | 1<<kindNetType | 1<<kindCap); c.globalKinds != want {
				t.Errorf("globalKinds = %#x, want %#x", c.globalKinds, want)
			}
			if c.kinds != c.globalKinds|1<<kindNetAny {
				t.Errorf("kinds = %#x, want globalKinds and the any-protocol kind", c.kinds)
			}
		},
	}, {
		name: "patterns",
		spec: `
  process:
    matchPatterns:
    - pattern: /usr/bin/apt*
  file:
    matchPatterns:
    - pattern: /home/*/.ssh/id_[a-z]*
      readOnly: true
  action: Block`,
		patterns: 2,
		cfg: func(t *testing.T, c settings, _ map[string]sourceValue) {
			if c.patternCats != 1<<catProcess|1<<catFile {
				t.Errorf("patternCats = %#x", c.patternCats)
			}
		},
	}, {
		name: "what BPFLSM cannot enforce is reported",
		spec: `
  process:
    matchPaths:
    - path: /bin/sh
      allowedArgs: ["-c"]
  network:
    matchDNSQueries:
    - domain: example.com
  syscalls:
    matchSyscalls:
    - syscall: [setuid]
  action: Block`,
		unenforced: 2,
	}, {
		name: "same key and action: the first rule decides, other flags are reported",
		spec: `
  file:
    matchPaths:
    - path: /etc/passwd
    - path: /etc/passwd
      severity: 3
    - path: /etc/passwd
      readOnly: true
  action: Block`,
		paths:      []pathWant{{kindFilePath, "", "/etc/passwd", slotBlock, 0}},
		unenforced: 1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := parse(t, tc.postures, policy("p", tc.spec))
			e := translate(rs)
			if len(e.unenforced) != tc.unenforced {
				t.Errorf("unenforced = %v, want %d", e.unenforced, tc.unenforced)
			}
			for id, reason := range e.unenforced {
				if _, ok := rs.Rule(id); !ok || reason == "" {
					t.Errorf("unenforced %d: %q", id, reason)
				}
			}
			if len(e.paths) != len(tc.paths) {
				t.Errorf("%d path entries, want %d: %v", len(e.paths), len(tc.paths), e.paths)
			}
			for _, w := range tc.paths {
				var src uint32
				if w.src != "" {
					src = e.sources[w.src].id
					if src == 0 {
						t.Errorf("no source id for %s", w.src)
					}
				}
				v, ok := e.paths[pathEntry{kind: w.kind, src: src, path: w.path}]
				if !ok {
					t.Errorf("no entry for %+v in %v", w, e.paths)
					continue
				}
				if v[w.slot].id == 0 || v[w.slot].flags != w.flags {
					t.Errorf("%+v: value %v", w, v)
				}
				if r, _ := rs.Rule(v[w.slot].id); r == nil || r.Value != w.path && !strings.HasSuffix(w.path, r.Value) {
					t.Errorf("%+v: rule id %d does not name this path", w, v[w.slot].id)
				}
			}
			if len(e.nets) != len(tc.nets) {
				t.Errorf("%d network entries, want %d: %v", len(e.nets), len(tc.nets), e.nets)
			}
			for _, w := range tc.nets {
				var src uint32
				if w.src != "" {
					src = e.sources[w.src].id
				}
				if v, ok := e.nets[netEntry{kind: w.kind, src: src, value: w.value}]; !ok || v[w.slot].id == 0 {
					t.Errorf("no entry for %+v in %v", w, e.nets)
				}
			}
			if len(e.patterns) != tc.patterns {
				t.Errorf("%d patterns, want %d", len(e.patterns), tc.patterns)
			}
			if tc.cfg != nil {
				tc.cfg(t, e.cfg, e.sources)
			}
		})
	}
}

func TestTranslateLongPaths(t *testing.T) {
	long := "/" + strings.Repeat("a", 254)
	rs := &hostpolicy.RuleSet{Rules: []hostpolicy.Rule{
		{ID: 1, Category: hostpolicy.CategoryFile, Match: hostpolicy.MatchPath, Value: long, Action: hostpolicy.ActionBlock},
		{ID: 2, Category: hostpolicy.CategoryFile, Match: hostpolicy.MatchPath, Value: long + "b", Action: hostpolicy.ActionBlock},
		{ID: 3, Category: hostpolicy.CategoryFile, Match: hostpolicy.MatchPath, Value: "/x", Source: long + "b", Action: hostpolicy.ActionBlock},
	}}
	e := translate(rs)
	if _, ok := e.paths[pathEntry{kind: kindFilePath, path: long}]; !ok {
		t.Errorf("the 255-byte path has no entry")
	}
	if len(e.unenforced) != 2 || e.unenforced[2] == "" || e.unenforced[3] == "" {
		t.Errorf("unenforced = %v, want rules 2 and 3 (256 bytes)", e.unenforced)
	}
}

// Tests of the compiled glob with brackets path.Match does not parse.
func TestGlobClasses(t *testing.T) {
	for _, c := range []struct {
		pattern, text string
		want          bool
	}{
		{"/[]]x", "/]x", true},
		{"/[a-]x", "/-x", true},
		{"/[a-]x", "/bx", false},
		{"/[!/]x", "//x", false},
		{"/[\\*]", "/*", true},
	} {
		g, err := compileGlob(c.pattern)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := g.match(c.text, globSteps); got != c.want {
			t.Errorf("%q on %q = %v", c.pattern, c.text, got)
		}
	}
}

// The kernel's glob machine, run in Go, agrees with path.Match (whose '*'
// and '?' do not cross '/' either) on every case.
func TestGlobMatchesLikePathMatch(t *testing.T) {
	patterns := []string{
		"/tmp/*", "/tmp/*/x", "/usr/bin/apt*", "/a/*b*c", "*", "/x?z", "/[a-c]*", "/[!a-c]*",
		"/home/*/.ssh/id_[a-z]*", "/a/b", "/a*", "/*/*", "/tmp/x[0-9]/busybox-*-t?ol", "/a/\\*",
		"/**/x", "/a/*/*/b*", "/etc/shadow*", "/*/secret.key", "/var/lib/*.db", "/home/*/.bashrc",
	}
	texts := []string{
		"/tmp/x", "/tmp/a/b", "/tmp/", "/tmp/a/x", "/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/apt/x",
		"/a/bxc", "/a/bc", "/a/xbyyc", "/a/bcx", "/xyz", "/x/z", "/abc", "/dog", "/home/u/.ssh/id_rsa",
		"/home/u/v/.ssh/id_rsa", "/home/u/.ssh/id_", "/a/b", "/a", "/ab/cd", "/a/*", "/a/x", "/q/x",
		"/a/b/c/bd", "/a/b/c/d/bd", "/]x", "/-x", "/tmp/x1/busybox-ab-tool", "/tmp/x1/busybox-ab-tools",
		"/tmp/x1/d/busybox-ab-tool", "", "/etc/shadow", "/etc/shadow-", "/etc/shado", "/etc/shadoW",
		"/srv/secret.key", "/srv/secret.kez", "/secret.key", "/var/lib/x.db", "/var/lib/.db", "/var/lib/x.dbx",
		"/home/ann/.bashrc", "/home/.bashrc", "/home/ann/x.bashrc",
	}
	for _, p := range patterns {
		g, err := compileGlob(p)
		if err != nil {
			t.Fatalf("compile %q: %v", p, err)
		}
		goPattern := strings.ReplaceAll(strings.ReplaceAll(p, "**", "*"), "[!", "[^")
		for _, s := range texts {
			want, err := path.Match(goPattern, s)
			if err != nil {
				t.Fatalf("path.Match(%q): %v", goPattern, err)
			}
			if got := g.match(s, globSteps); got != want {
				t.Errorf("glob %q on %q = %v, want %v", p, s, got, want)
			}
			// The kernel never looks at a pattern the index files under
			// a list this path does not check.
			sel, b := g.indexSlot()
			if slots := pathSlots(s); want && !slices.Contains(slots[:], [2]uint8{sel, b}) {
				t.Errorf("pattern %q matches %q but is indexed under (%d, %q), which the path does not check", p, s, sel, b)
			}
		}
	}
}

func TestGlobLiteralEnds(t *testing.T) {
	for _, tc := range []struct {
		pattern  string
		pre, suf string
	}{
		{"/tmp/*", "/tmp/", ""},
		{"*.key", "", ".key"},
		{"/etc/shadow", "/etc/sha", "c/shadow"},
		{"/a?b", "/a", "b"},
		{"/[ab]x", "/", "x"},
		{"/a/\\*", "/a/*", "/a/*"},
		{"/var/lib/*/data.sqlite3", "/var/lib", ".sqlite3"},
	} {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("compile %q: %v", tc.pattern, err)
		}
		pre, preLen, suf, sufLen := g.literalEnds()
		if got := unpack(pre, preLen); got != tc.pre {
			t.Errorf("%q: prefix %q, want %q", tc.pattern, got, tc.pre)
		}
		if got := unpack(suf, sufLen); got != tc.suf {
			t.Errorf("%q: suffix %q, want %q", tc.pattern, got, tc.suf)
		}
	}
}

func unpack(v uint64, n uint8) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return string(b)
}

func TestGlobErrors(t *testing.T) {
	for _, p := range []string{"", "/a[", "/a\\", "/[z-a]", "/" + strings.Repeat("[a]", 9), "/" + strings.Repeat("a", 200)} {
		if _, err := compileGlob(p); err == nil {
			t.Errorf("compileGlob(%q) accepted", p)
		}
	}
}

// The step bound holds for the worst patterns of the longest paths: the
// kernel's loop limit is never what decides.
func TestGlobStepsBound(t *testing.T) {
	for _, p := range []string{"/" + strings.Repeat("*a", 63) + "b", "/*" + strings.Repeat("?", 120) + "b"} {
		g, err := compileGlob(p)
		if err != nil {
			t.Fatal(err)
		}
		text := "/" + strings.Repeat("a", 254)
		matched, steps := g.run(text, 1<<30)
		if matched || steps > globSteps {
			t.Errorf("%q: matched=%v after %d steps, want no match within %d", p, matched, steps, globSteps)
		}
	}
}

// pathSlots are the candidate lists a path checks, as the kernel picks them.
func pathSlots(path string) [3][2]uint8 {
	var last, second uint8
	if len(path) > 0 {
		last = path[len(path)-1]
	}
	if len(path) > 1 {
		second = path[1]
	}
	return [3][2]uint8{{patternSelLast, last}, {patternSelSecond, second}, {patternSelAny, 0}}
}

// TestAncestors: every directory above a protected path gets an ancestor
// entry (renaming it would move the path out of its rule), with the Block
// and Audit rules below it; allow rules and process Audit rules add none.
func TestAncestors(t *testing.T) {
	type want struct {
		dir     string
		slot    uint8
		policy  string
		flags   uint32
		fromSrc string
	}
	tests := []struct {
		name string
		docs []string
		want []want
	}{{
		name: "file path, readOnly and ownerOnly flags dropped",
		docs: []string{policy("f", `
  file:
    matchPaths:
    - path: /srv/data/secret
      readOnly: true
      ownerOnly: true
  action: Block`)},
		want: []want{{"/srv", slotBlock, "f", 0, ""}, {"/srv/data", slotBlock, "f", 0, ""}},
	}, {
		name: "directory rule: above it, not the directory itself",
		docs: []string{policy("d", `
  file:
    matchDirectories:
    - dir: /srv/data/
      recursive: true
  action: Audit`)},
		want: []want{{"/srv", slotAudit, "d", 0, ""}},
	}, {
		name: "process Block rule; process Audit and file Allow add nothing",
		docs: []string{policy("pb", `
  process:
    matchPaths:
    - path: /opt/bin/tool
  action: Block`), policy("pa", `
  process:
    matchPaths:
    - path: /usr/bin/audited
  action: Audit`), policy("fa", `
  file:
    matchPaths:
    - path: /var/allowed/file
  action: Allow`)},
		want: []want{{"/opt", slotBlock, "pb", 0, ""}, {"/opt/bin", slotBlock, "pb", 0, ""}},
	}, {
		name: "pattern: its literal directory and above",
		docs: []string{policy("g", `
  file:
    matchPatterns:
    - pattern: /etc/keys/*.key
  action: Block`)},
		want: []want{{"/etc", slotBlock, "g", 0, ""}, {"/etc/keys", slotBlock, "g", 0, ""}},
	}, {
		name: "fromSource keeps the source",
		docs: []string{policy("s", `
  file:
    matchPaths:
    - path: /run/app/sock
      fromSource:
      - path: /usr/bin/app
  action: Block`)},
		want: []want{{"/run", slotBlock, "s", 0, "/usr/bin/app"}, {"/run/app", slotBlock, "s", 0, "/usr/bin/app"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := hostpolicytest.Compile(t, hostpolicy.Options{Host: "h"}, tc.docs...)
			e := translate(rs)
			if len(e.unenforced) != 0 {
				t.Fatalf("unenforced: %v", e.unenforced)
			}
			if len(e.ancestors) != len(tc.want) {
				t.Errorf("%d ancestor entries, want %d: %v", len(e.ancestors), len(tc.want), e.ancestors)
			}
			if e.cfg.kinds&(1<<kindAncestor) == 0 {
				t.Errorf("kinds %#x lacks the ancestor bit", e.cfg.kinds)
			}
			for _, w := range tc.want {
				var src uint32
				if w.fromSrc != "" {
					src = e.sources[w.fromSrc].id
				}
				v, ok := e.ancestors[pathEntry{kind: kindAncestor, src: src, path: w.dir}]
				if !ok {
					t.Errorf("no ancestor entry for %s (src %d): %v", w.dir, src, e.ancestors)
					continue
				}
				var id uint32
				for _, r := range rs.Rules {
					if r.Policy == w.policy {
						id = r.ID
					}
				}
				if got := v[w.slot]; got.id != id || got.flags != w.flags {
					t.Errorf("%s slot %d = %+v, want id %d flags %#x", w.dir, w.slot, got, id, w.flags)
				}
			}
		})
	}
}

func TestLiteralDir(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"/etc/keys/*.key", "/etc/keys"},
		{"/etc/keys/host.key", "/etc/keys"},
		{"/home/*/secret", "/home"},
		{"/*", "/"},
		{"*.key", "/"},
		{"/a\\*b/c*", "/a*b"},
	} {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.literalDir(); got != tc.want {
			t.Errorf("literalDir(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}
