package decide

import (
	"fmt"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// compile builds a RuleSet from spec bodies, one policy (p0, p1, ...) each.
func compile(t *testing.T, postures hostpolicy.Postures, specs ...string) *hostpolicy.RuleSet {
	t.Helper()
	docs := make([]string, len(specs))
	for i, spec := range specs {
		docs[i] = hostpolicytest.HostPolicy(fmt.Sprintf("p%d", i), spec)
	}
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, docs...)
}

type facts struct{ write, owner, tty bool }

func (f facts) Write() bool { return f.write }
func (f facts) Owner() bool { return f.owner }
func (f facts) TTY() bool   { return f.tty }

func TestPath(t *testing.T) {
	type op struct {
		cat     hostpolicy.Category
		subject string
		source  string
		isDir   bool
		f       facts
		verdict event.Verdict
		value   string // Value of the deciding rule, "" for posture/none
	}
	proc, file := hostpolicy.CategoryProcess, hostpolicy.CategoryFile
	tests := []struct {
		name     string
		postures hostpolicy.Postures
		specs    []string
		ops      []op
	}{{
		name: "process paths, names, directories and patterns",
		specs: []string{`  process:
    matchPaths:
    - path: /usr/bin/curl
    - execname: wget
    matchDirectories:
    - dir: /opt/tools/
      recursive: true
    - dir: /srv/
    matchPatterns:
    - pattern: /home/*/bin/nc*
  action: Block`},
		ops: []op{
			{proc, "/usr/bin/curl", "/bin/sh", false, facts{}, event.VerdictBlock, "/usr/bin/curl"},
			{proc, "/usr/local/bin/wget", "", false, facts{}, event.VerdictBlock, "wget"},
			{proc, "/opt/tools/a/b/c", "", false, facts{}, event.VerdictBlock, "/opt/tools/"},
			{proc, "/srv/x", "", false, facts{}, event.VerdictBlock, "/srv/"},
			{proc, "/srv/sub/x", "", false, facts{}, event.VerdictNone, ""},
			{proc, "/home/ann/bin/ncat", "", false, facts{}, event.VerdictBlock, "/home/*/bin/nc*"},
			{proc, "/home/ann/x/bin/ncat", "", false, facts{}, event.VerdictNone, ""},
			{proc, "/usr/bin/true", "", false, facts{}, event.VerdictNone, ""},
			// process rules never decide opens
			{file, "/usr/bin/curl", "", false, facts{}, event.VerdictNone, ""},
		},
	}, {
		name: "file readOnly and ownerOnly",
		specs: []string{`  file:
    matchPaths:
    - path: /etc/ro
      readOnly: true
    - path: /etc/own
      ownerOnly: true
    - path: /etc/both
      readOnly: true
      ownerOnly: true
  action: Block`},
		ops: []op{
			{file, "/etc/ro", "", false, facts{}, event.VerdictNone, ""},
			{file, "/etc/ro", "", false, facts{write: true}, event.VerdictBlock, "/etc/ro"},
			{file, "/etc/own", "", false, facts{owner: true, write: true}, event.VerdictNone, ""},
			{file, "/etc/own", "", false, facts{}, event.VerdictBlock, "/etc/own"},
			{file, "/etc/both", "", false, facts{owner: true}, event.VerdictNone, ""},
			{file, "/etc/both", "", false, facts{owner: true, write: true}, event.VerdictBlock, "/etc/both"},
			{file, "/etc/both", "", false, facts{}, event.VerdictBlock, "/etc/both"},
		},
	}, {
		name: "precedence: exact path over directory, deepest directory, source first",
		specs: []string{`  file:
    matchPaths:
    - path: /data/keep/ok
    matchDirectories:
    - dir: /data/
      recursive: true
  action: Audit`, `  file:
    matchDirectories:
    - dir: /data/secret/
      recursive: true
    - dir: /data/secret/
      recursive: true
      fromSource:
      - path: /usr/bin/backup
  action: Block`},
		ops: []op{
			{file, "/data/keep/ok", "", false, facts{}, event.VerdictAudit, "/data/keep/ok"},
			{file, "/data/secret/k", "/bin/cat", false, facts{}, event.VerdictBlock, "/data/secret/"},
			{file, "/data/secret/k", "/usr/bin/backup", false, facts{}, event.VerdictBlock, "/data/secret/"},
			{file, "/data/other", "", false, facts{}, event.VerdictAudit, "/data/"},
			// the directory itself, opened as a directory
			{file, "/data/secret", "", true, facts{}, event.VerdictBlock, "/data/secret/"},
		},
	}, {
		name:     "allow-list with block posture, per source",
		postures: hostpolicy.Postures{File: "block"},
		specs: []string{`  file:
    matchDirectories:
    - dir: /etc/app/
      fromSource:
      - path: /usr/bin/app
    matchPaths:
    - path: /etc/app/key
      readOnly: true
      fromSource:
      - path: /usr/bin/app
  action: Allow`},
		ops: []op{
			{file, "/etc/app/conf", "/usr/bin/app", false, facts{write: true}, event.VerdictNone, ""},
			{file, "/etc/app/key", "/usr/bin/app", false, facts{}, event.VerdictNone, ""},
			{file, "/etc/app/key", "/usr/bin/app", false, facts{write: true}, event.VerdictPostureBlock, ""},
			{file, "/etc/passwd", "/usr/bin/app", false, facts{}, event.VerdictPostureBlock, ""},
			// other programs are not in allow-list mode
			{file, "/etc/passwd", "/bin/cat", false, facts{}, event.VerdictNone, ""},
		},
	}, {
		name: "tty only",
		specs: []string{`  process:
    matchPaths:
    - path: /bin/su
      pts: false
  action: Block`},
		ops: []op{
			{proc, "/bin/su", "", false, facts{}, event.VerdictNone, ""},
			{proc, "/bin/su", "", false, facts{tty: true}, event.VerdictBlock, "/bin/su"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := New(compile(t, tt.postures, tt.specs...), nil)
			for _, o := range tt.ops {
				d := tab.Path(o.cat, o.subject, o.source, o.isDir, o.f)
				got := ""
				if d.Rule != nil {
					got = d.Rule.Value
				}
				if d.Verdict != o.verdict || got != o.value {
					t.Errorf("%s %s from %q %+v: got verdict %d rule %q, want %d %q", o.cat, o.subject, o.source, o.f, d.Verdict, got, o.verdict, o.value)
				}
				if d.Deny != (o.verdict == event.VerdictBlock || o.verdict == event.VerdictPostureBlock) {
					t.Errorf("%s %s: Deny %v with verdict %d", o.cat, o.subject, d.Deny, d.Verdict)
				}
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{Network: "block"}, `  network:
    matchProtocols:
    - protocol: udp
    - protocol: raw
      fromSource:
      - path: /usr/bin/ping
  action: Block`, `  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/bin/curl
  action: Allow`)
	tab := New(rs, nil)
	for _, c := range []struct {
		typ, proto, source string
		verdict            event.Verdict
	}{
		{"dgram", "udp", "", event.VerdictBlock},
		{"stream", "tcp", "", event.VerdictNone},
		{"raw", "icmp", "/usr/bin/ping", event.VerdictBlock},
		{"raw", "icmp", "/bin/other", event.VerdictNone},
		{"stream", "tcp", "/usr/bin/curl", event.VerdictNone},
		{"dgram", "udp", "/usr/bin/curl", event.VerdictBlock},
		{"raw", "icmp", "/usr/bin/curl", event.VerdictPostureBlock},
	} {
		if d := tab.Network(c.typ, c.proto, c.source, NoFacts{}); d.Verdict != c.verdict {
			t.Errorf("%s/%s from %q: verdict %d, want %d", c.typ, c.proto, c.source, d.Verdict, c.verdict)
		}
	}
}

func TestGlobAndPrefix(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		match         bool
		prefix        string
	}{
		{"/etc/*.conf", "/etc/a.conf", true, "/etc/"},
		{"/etc/*.conf", "/etc/x/a.conf", false, "/etc/"},
		{"/etc/**.conf", "/etc/a.conf", true, "/etc/"},
		{"/home/*/.ssh/id_?sa", "/home/u/.ssh/id_rsa", true, "/home/"},
		{"/tmp/[ab]x", "/tmp/cx", false, "/tmp/"},
		{"/plain/file", "/plain/file", true, "/plain/file"},
	} {
		if got := MatchGlob(c.pattern, c.name); got != c.match {
			t.Errorf("MatchGlob(%q, %q) = %v", c.pattern, c.name, got)
		}
		if got := LiteralPrefix(c.pattern); got != c.prefix {
			t.Errorf("LiteralPrefix(%q) = %q, want %q", c.pattern, got, c.prefix)
		}
	}
}
