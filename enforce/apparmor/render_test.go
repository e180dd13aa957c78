package apparmor

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

var policy = hostpolicytest.HostPolicy

func compile(t *testing.T, postures hostpolicy.Postures, docs ...string) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, docs...)
}

// testPolicies cover every rule shape the renderer has.
var testPolicies = []string{
	policy("process", `  process:
    matchPaths:
    - path: /usr/bin/wget
    - execname: nc
      ownerOnly: true
    - path: "/opt/odd name/[x]*"
    matchDirectories:
    - dir: /opt/tools/
      recursive: true
    - dir: /srv/bin/
      fromSource:
      - path: /usr/bin/bash
    matchPatterns:
    - pattern: /home/*/bin/**
  action: Block`),
	policy("file", `  file:
    matchPaths:
    - path: /etc/shadow
      readOnly: true
    - path: /etc/owned
      ownerOnly: true
    - path: /etc/both
      readOnly: true
      ownerOnly: true
      fromSource:
      - path: /usr/bin/cat
    matchDirectories:
    - dir: /root/.ssh/
      recursive: true
    matchPatterns:
    - pattern: /etc/*.key
  action: Block`),
	policy("audit", `  file:
    matchPaths:
    - path: /etc/passwd
  process:
    matchPaths:
    - path: /usr/bin/id
  network:
    matchProtocols:
    - protocol: raw
  capabilities:
    matchCapabilities:
    - capability: sys_admin
  action: Audit`),
	policy("net", `  network:
    matchProtocols:
    - protocol: udp
    - protocol: icmp
    - protocol: tcp
      fromSource:
      - path: /usr/bin/curl
  capabilities:
    matchCapabilities:
    - capability: net_raw
  action: Block`),
	policy("allow", `  file:
    matchDirectories:
    - dir: /var/lib/app/
      recursive: true
      fromSource:
      - path: /usr/sbin/appd
    matchPaths:
    - path: /etc/app.conf
      readOnly: true
      ownerOnly: true
      fromSource:
      - path: /usr/sbin/appd
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/sbin/appd
  process:
    matchPaths:
    - path: /usr/bin/true
      fromSource:
      - path: /usr/sbin/appd
  action: Allow`),
}

// fileAllowPolicies are file allow-lists that leave processes alone: under
// block posture the profile keeps "/** px" and drops the blanket file rule,
// the shape that <abstractions/base>'s "ix" made the parser refuse
// ("conflicting x modifiers").
var fileAllowPolicies = []string{
	policy("file-allow", `  file:
    matchPaths:
    - path: /etc/hosts
    - path: /etc/resolv.conf
      readOnly: true
  action: Allow`),
	policy("file-allow-source", `  file:
    matchDirectories:
    - dir: /srv/data/
      recursive: true
      fromSource:
      - path: /usr/bin/cat
  action: Allow`),
}

func parser(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"apparmor_parser", "/sbin/apparmor_parser", "/usr/sbin/apparmor_parser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("apparmor_parser is not installed (apt-get install apparmor)")
	return ""
}

// checkProfiles runs apparmor_parser -Q -K (parse and compile, no kernel)
// on every profile.
func checkProfiles(t *testing.T, profiles map[string]string) {
	t.Helper()
	bin := parser(t)
	dir := t.TempDir()
	for name, text := range profiles {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-Q", "-K", f).CombinedOutput()
		if err != nil {
			t.Errorf("apparmor_parser rejects %s: %v\n%s\n--- profile:\n%s", name, err, out, text)
		}
	}
}

func TestProfilesParse(t *testing.T) {
	for _, postures := range []hostpolicy.Postures{{}, {File: "block", Network: "block", Capabilities: "block"}} {
		rs := compile(t, postures, testPolicies...)
		profiles, err := Render(rs)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{HostProfile, SourceProfile("/usr/bin/bash"), SourceProfile("/usr/bin/cat"),
			SourceProfile("/usr/bin/curl"), SourceProfile("/usr/sbin/appd")} {
			if profiles[want] == "" {
				t.Errorf("no profile %s", want)
			}
		}
		checkProfiles(t, profiles)
		for _, doc := range fileAllowPolicies {
			checkProfiles(t, mustRender(t, compile(t, postures, doc)))
		}
		checkProfiles(t, mustRender(t, compile(t, postures, append(slices.Clone(testPolicies), fileAllowPolicies...)...)))
	}
	checkProfiles(t, map[string]string{AgentProfile: unconfinedProfile(AgentProfile, "/usr/bin/kube armor")})
	// An empty RuleSet still gives the permissive host profile.
	empty, _ := Render(compile(t, hostpolicy.Postures{}))
	if len(empty) != 1 || empty[HostProfile] == "" {
		t.Errorf("empty RuleSet: %v", empty)
	}
	checkProfiles(t, empty)
}

func mustRender(t *testing.T, rs *hostpolicy.RuleSet) map[string]string {
	t.Helper()
	profiles, err := Render(rs)
	if err != nil {
		t.Fatal(err)
	}
	return profiles
}

func TestExamplePoliciesParse(t *testing.T) {
	files, _ := filepath.Glob("../../examples/policies/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example policies")
	}
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		profiles, err := Render(compile(t, hostpolicy.Postures{}, string(doc)))
		if err != nil {
			t.Fatal(err)
		}
		checkProfiles(t, profiles)
	}
}

// TestRenderFileParses: RenderFile is one file apparmor_parser loads as it
// is, with several profiles (fromSource, allow-lists of files and of
// processes) and every example policy at once.
func TestRenderFileParses(t *testing.T) {
	var docs []string
	files, _ := filepath.Glob("../../examples/policies/*.yaml")
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(doc))
	}
	for _, postures := range []hostpolicy.Postures{{}, {File: "block", Network: "block", Capabilities: "block"}} {
		for name, set := range map[string][]string{"test": testPolicies, "examples": docs, "file-allow": fileAllowPolicies,
			"all": slices.Concat(testPolicies, fileAllowPolicies, docs)} {
			file := RenderFile(compile(t, postures, set...))
			if n := strings.Count(file, "\nabi <"); n != 1 {
				t.Errorf("%s: %d abi lines, want 1", name, n)
			}
			if strings.Count(file, "profile ") < 2 && name != "examples" {
				t.Errorf("%s: fewer than two profiles:\n%s", name, file)
			}
			checkProfiles(t, map[string]string{name + "-" + postures.File: file})
		}
	}
	// Nothing from the distribution's abstractions or tunables: what a
	// program needs to start is written out.
	file := RenderFile(compile(t, hostpolicy.Postures{File: "block"}, slices.Concat(testPolicies, fileAllowPolicies)...))
	if strings.Contains(file, "include <") || !strings.Contains(file, "  /dev/null rw,\n") {
		t.Errorf("the allow-list profiles should hold the start grants and include nothing:\n%s", file)
	}
}

func TestRuleLines(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{File: "block", Network: "block"}, testPolicies...)
	profiles, _ := Render(rs)
	host, appd := profiles[HostProfile], profiles[SourceProfile("/usr/sbin/appd")]
	bash := profiles[SourceProfile("/usr/bin/bash")]
	for _, c := range []struct {
		profile, text string
		want          bool
	}{
		{host, `profile kubearmor-host /** flags=(attach_disconnected,mediate_deleted) {`, true},
		{host, `  audit deny "/usr/bin/wget" x,`, true},
		{host, `  audit deny other "/**/nc" x,`, true},
		{host, `  audit deny "/opt/odd name/\[x\]\*" x,`, true},
		{host, `  audit deny "/opt/tools/{,**}" x,`, true},
		{host, `  audit deny "/home/*/bin/*" x,`, true},
		{host, `  audit deny "/etc/shadow" wkl,`, true},
		{host, `  audit deny other "/etc/owned" rwklmx,`, true},
		{host, `  audit deny "/root/.ssh/{,**}" rwklmx,`, true},
		{host, `  audit deny "/etc/*.key" rwklmx,`, true},
		{host, `  audit "/etc/passwd" rwklm,`, true},
		{host, `  audit "/usr/bin/id" px,`, true},
		{host, `  audit network raw,`, true},
		{host, `  audit capability sys_admin,`, true},
		{host, `  audit deny network udp,`, true},
		{host, `  audit deny capability net_raw,`, true},
		// fromSource rules stay in their program's profile
		{host, `/srv/bin/`, false},
		{host, `network tcp`, false},
		{bash, `profile kubearmor-src-usr-bin-bash "/usr/bin/bash" flags=`, true},
		{bash, `  audit deny "/srv/bin/{,*}" x,`, true},
		{bash, `  audit deny "/usr/bin/wget" x,`, true}, // and the rules for every program
		{profiles[SourceProfile("/usr/bin/cat")], `  audit deny owner "/etc/both" wkl,`, true},
		{profiles[SourceProfile("/usr/bin/cat")], `  audit deny other "/etc/both" rwklmx,`, true},
		// the host is not in allow-list mode: blanket rules stay
		{host, "  /{,**} rwlkm,\n", true},
		{host, "  /** px,\n", true},
		{host, "  network,\n", true},
		// appd's allow-list: block posture drops the file, process and
		// network blanket rules, keeps capabilities (no Allow there)
		{appd, "  /{,**} rwlkm,\n", false},
		{appd, "  /** px,\n", false},
		{appd, "  network,\n", false},
		{appd, "  capability,\n", true},
		{appd, "  /{usr/,}lib/*-linux-gnu*/**.so* mr,\n", true},
		{appd, "include <", false},
		{host, "/{usr/,}lib/*-linux-gnu*/**.so* mr,", false},
		{appd, `  "/var/lib/app/{,**}" rwklm,`, true},
		{appd, `  owner "/etc/app.conf" rkm,`, true},
		{appd, `  network tcp,`, true},
		{appd, `  "/usr/bin/true" px,`, true},
	} {
		if got := strings.Contains(c.profile, c.text); got != c.want {
			t.Errorf("profile has %q: %v, want %v\n%s", c.text, got, c.want, c.profile)
		}
	}
}

// TestFileAllowList: a file allow-list under block posture drops the
// blanket file rule, keeps exec open ("/** px") and grants what programs
// need to start, none of it with an exec permission that could conflict
// with "px" (the parser refuses "conflicting x modifiers").
func TestFileAllowList(t *testing.T) {
	for _, c := range []struct {
		postures  hostpolicy.Postures
		strict    bool
		profile   string
		allowLine string
	}{
		{hostpolicy.Postures{File: "block"}, true, HostProfile, `  "/etc/hosts" rwklm,`},
		{hostpolicy.Postures{File: "audit"}, false, HostProfile, `  "/etc/hosts" rwklm,`},
		{hostpolicy.Postures{File: "block"}, true, SourceProfile("/usr/bin/cat"), `  "/srv/data/{,**}" rwklm,`},
	} {
		p := mustRender(t, compile(t, c.postures, fileAllowPolicies...))[c.profile]
		for _, l := range []struct {
			text string
			want bool
		}{
			{c.allowLine, true},
			{`  "/etc/resolv.conf" rkm,`, true},
			{"  /** px,\n", true},
			{"  /{,**} rwlkm,\n", !c.strict},
			{"  /dev/null rw,\n", c.strict},
			{"  /{usr/,}lib/*-linux-gnu*/**.so* mr,\n", c.strict},
			{"  owner /{home/*,root}/.Private/** mrwlk,\n", c.strict},
		} {
			if strings.Contains(p, l.text) != l.want {
				t.Errorf("%s, posture %s: has %q: %v, want %v\n%s", c.profile, c.postures.File, l.text, !l.want, l.want, p)
			}
		}
	}
	for _, g := range startGrants {
		perms := strings.Fields(strings.TrimSuffix(g, ","))
		if strings.ContainsAny(perms[len(perms)-1], "xiupPUC") {
			t.Errorf("start grant %q has an exec permission", g)
		}
	}
}

func TestUnenforced(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{}, policy("u", `  process:
    matchPaths:
    - path: /usr/bin/su
      pts: false
    - path: /usr/bin/env
      allowedArgs: [x]
  network:
    matchProtocols:
    - protocol: icmpv6
    - protocol: sctp
    - protocol: udp
  action: Block`))
	for _, r := range rs.Rules {
		why := Unenforced(&r)
		if (r.Value == "udp") != (why == "") {
			t.Errorf("%s: %q", r.Value, why)
		}
	}
	profiles, _ := Render(rs)
	if strings.Contains(profiles[HostProfile], "/usr/bin/su") || !strings.Contains(profiles[HostProfile], "deny network udp,") {
		t.Errorf("profile:\n%s", profiles[HostProfile])
	}
}

func TestLoadOrder(t *testing.T) {
	names := []string{HostProfile, SourceProfile("/usr/bin/cat"), AgentProfile, ParserProfile, SourceProfile("/usr/bin/bash")}
	sortByLoadOrder(names)
	want := []string{AgentProfile, ParserProfile, SourceProfile("/usr/bin/bash"), SourceProfile("/usr/bin/cat"), HostProfile}
	if !slices.Equal(names, want) {
		t.Errorf("load order %v, want %v", names, want)
	}
}

// TestAncestorLines: every existing directory above a protected path (a
// Block or Audit file rule, a process Block rule, a pattern's literal
// directory) gets "w" denied (audited for Audit rules), none for Allow rules
// or missing directories, and a record about such a directory is attributed
// to the rule.
func TestAncestorLines(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/prot", "p/q", "x/bin", "y"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	doc := func(name, body string) string {
		return policy(name, strings.ReplaceAll(body, "ROOT", root))
	}
	rs := compile(t, hostpolicy.DefaultPostures,
		doc("block", `  file:
    matchDirectories:
    - dir: ROOT/a/b/prot/
      recursive: true
    matchPaths:
    - path: ROOT/missing/secret
      readOnly: true
    matchPatterns:
    - pattern: ROOT/p/q/*.key
  process:
    matchPaths:
    - path: ROOT/x/bin/tool
  action: Block`),
		doc("audit", `  file:
    matchPaths:
    - path: ROOT/p/audited
  process:
    matchPaths:
    - path: ROOT/y/audited
  action: Audit`),
		doc("allow", `  file:
    matchPaths:
    - path: ROOT/a/allowed
  action: Allow`))
	host := RenderFile(rs)
	for _, c := range []struct {
		text string
		want bool
	}{
		{`audit deny "` + root + `/a/b/" w,`, true},
		{`audit deny "` + root + `/a/" w,`, true},
		{`audit deny "` + root + `/" w,`, true},
		{`audit deny "/tmp/" w,`, true},
		{`"` + root + `/a/b/prot/" w,`, false}, // the rule's own glob covers it
		{`"` + root + `/missing/" w,`, false},  // does not exist: mkdir stays possible
		{`audit deny "` + root + `/p/q/" w,`, true},
		{`audit deny "` + root + `/x/bin/" w,`, true},
		{`audit "` + root + `/p/" w,`, true},
		{`"` + root + `/y/" w,`, false}, // a process Audit rule guards nothing
		{`"/" w,`, false},
	} {
		if got := strings.Contains(host, c.text); got != c.want {
			t.Errorf("profile has %q: %v, want %v\n%s", c.text, got, c.want, host)
		}
	}
	profiles, _ := Render(rs)
	checkProfiles(t, profiles)

	ruleOf := func(v string) *hostpolicy.Rule {
		for i := range rs.Rules {
			if rs.Rules[i].Value == strings.ReplaceAll(v, "ROOT", root) {
				return &rs.Rules[i]
			}
		}
		t.Fatalf("no rule %s", v)
		return nil
	}
	for _, c := range []struct {
		dir    string
		denied bool
		want   *hostpolicy.Rule
	}{
		{root + "/a/b/", true, ruleOf("ROOT/a/b/prot/")},
		{root + "/a", true, ruleOf("ROOT/a/b/prot/")},
		{root + "/x/bin/", true, ruleOf("ROOT/x/bin/tool")},
		{root + "/p/", false, ruleOf("ROOT/p/audited")},
		{root + "/p/q/", false, nil},
		{root + "/missing/", true, nil},
		{"/srv/", true, nil},
	} {
		if got := AncestorRule(rs, c.dir, "", c.denied); got != c.want {
			t.Errorf("AncestorRule(%s, denied %v) = %v, want %v", c.dir, c.denied, got, c.want)
		}
	}
}
