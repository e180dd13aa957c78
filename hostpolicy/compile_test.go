package hostpolicy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, doc string) []*Policy {
	t.Helper()
	ps, diags := Parse("p.yaml", []byte(doc))
	if diags.HasErrors() {
		t.Fatalf("parse:\n%s", diagStrings(diags))
	}
	return ps
}

func compileOne(t testing.TB, doc string) *RuleSet {
	t.Helper()
	return Compile(mustParse(t, doc), Options{Host: "node-1"})
}

// The normalization rules of reference §1.5.
func TestNormalization(t *testing.T) {
	t.Run("spec action defaults to Block", func(t *testing.T) {
		rs := compileOne(t, wrap("  file:\n    matchPaths:\n    - path: /a\n"))
		if rs.Rules[0].Action != ActionBlock {
			t.Fatalf("action %q", rs.Rules[0].Action)
		}
	})
	t.Run("spec action lower case", func(t *testing.T) {
		rs := compileOne(t, wrap("  action: audit\n  file:\n    matchPaths:\n    - path: /a\n"))
		if rs.Rules[0].Action != ActionAudit {
			t.Fatalf("action %q", rs.Rules[0].Action)
		}
	})
	t.Run("inheritance rule <- block <- spec", func(t *testing.T) {
		// upstream's hsp-block-process-dir-bin.yaml case (§9.2 case 5)
		rs := compileOne(t, wrap(`  severity: 5
  tags: [global-tag]
  message: global-msg
  action: Block
  process:
    tags: [process-tag]
    message: process-msg
    matchDirectories:
    - dir: /usr/bin
      recursive: true
      severity: 3
  file:
    matchPaths:
    - path: /etc/hosts
`))
		p, f := rs.Rules[0], rs.Rules[1]
		if p.Severity != 3 || !slices.Equal(p.Tags, []string{"process-tag"}) || p.Message != "process-msg" || p.Action != ActionBlock || p.Value != "/usr/bin/" {
			t.Fatalf("process rule %+v", p)
		}
		if f.Severity != 5 || !slices.Equal(f.Tags, []string{"global-tag"}) || f.Message != "global-msg" || f.Action != ActionBlock {
			t.Fatalf("file rule %+v", f)
		}
	})
	t.Run("block action overrides spec", func(t *testing.T) {
		rs := compileOne(t, wrap("  action: Block\n  network:\n    action: Audit\n    matchProtocols:\n    - protocol: udp\n"))
		if rs.Rules[0].Action != ActionAudit {
			t.Fatalf("action %q", rs.Rules[0].Action)
		}
	})
	t.Run("syscall rules always audit", func(t *testing.T) {
		rs := compileOne(t, wrap("  action: Block\n  severity: 7\n  syscalls:\n    matchSyscalls:\n    - syscall: [setuid, SETGID]\n"))
		if len(rs.Rules) != 2 || rs.Rules[0].Action != ActionAudit || rs.Rules[1].Value != "setgid" || rs.Rules[1].Severity != 7 {
			t.Fatalf("rules %+v", rs.Rules)
		}
	})
	t.Run("comma expansion", func(t *testing.T) {
		rs := compileOne(t, wrap(`  network:
    matchProtocols:
    - protocol: "TCP, udp"
      fromSource:
      - path: /usr/bin/curl
  capabilities:
    matchCapabilities:
    - capability: net_raw,CAP_SYS_ADMIN
`))
		var got []string
		for _, r := range rs.Rules {
			got = append(got, r.Value+"@"+r.Source)
		}
		want := []string{"tcp@/usr/bin/curl", "udp@/usr/bin/curl", "net_raw@", "sys_admin@"}
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("one rule per fromSource", func(t *testing.T) {
		rs := compileOne(t, wrap("  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: /bin/cat\n      - path: /bin/head\n"))
		if len(rs.Rules) != 2 || rs.Rules[0].Source != "/bin/cat" || rs.Rules[1].Source != "/bin/head" || rs.Rules[0].ID == rs.Rules[1].ID {
			t.Fatalf("rules %+v", rs.Rules)
		}
	})
	t.Run("paths cleaned", func(t *testing.T) {
		rs := compileOne(t, wrap("  file:\n    matchPaths:\n    - path: /etc//ssh/../hosts\n"))
		if rs.Rules[0].Value != "/etc/hosts" {
			t.Fatalf("value %q", rs.Rules[0].Value)
		}
	})
	t.Run("pts false means tty only", func(t *testing.T) {
		rs := compileOne(t, wrap("  process:\n    matchPaths:\n    - path: /bin/su\n      pts: false\n"))
		if !rs.Rules[0].TTYOnly {
			t.Fatal("TTYOnly not set")
		}
	})
}

func TestRuleMetadataAndIDs(t *testing.T) {
	doc := wrap("  severity: 4\n  tags: [a, b]\n  message: m\n  process:\n    matchPaths:\n    - path: /bin/a\n    - execname: b\n")
	rs := compileOne(t, doc)
	for _, r := range rs.Rules {
		got, ok := rs.Rule(r.ID)
		if !ok || got.Policy != "test-policy" || got.Severity != 4 || got.Message != "m" || !slices.Equal(got.Tags, []string{"a", "b"}) {
			t.Fatalf("Rule(%d) = %+v, %v", r.ID, got, ok)
		}
		if r.ID == 0 {
			t.Fatal("ID 0 is reserved for default posture")
		}
	}
	if rs.Rules[1].Match != MatchExecName || !strings.HasPrefix(rs.Rules[1].Origin, "p.yaml:") {
		t.Fatalf("execname rule %+v", rs.Rules[1])
	}
	// Stable: adding an unrelated policy, or reordering, keeps every ID.
	other := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /x\n"), "test-policy", "aaa-first", 1)
	rs2 := Compile(append(mustParse(t, other), mustParse(t, doc)...), Options{Host: "node-1"})
	for _, r := range rs.Rules {
		got, ok := rs2.Rule(r.ID)
		if !ok || got.Value != r.Value {
			t.Fatalf("rule %s lost its ID %d after recompiling", r.Value, r.ID)
		}
	}
}

func TestAllowListAndPostures(t *testing.T) {
	rs := Compile(mustParse(t, wrap("  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n")),
		Options{Host: "h", Postures: Postures{File: "block"}})
	if !rs.AllowList(CategoryProcess) || rs.AllowList(CategoryFile) || rs.AllowList(CategoryNetwork) {
		t.Fatal("a process Allow puts only process operations into allow-list mode")
	}
	if rs.Posture(CategoryProcess) != "block" || rs.Posture(CategoryFile) != "block" || rs.Posture(CategoryNetwork) != "audit" {
		t.Fatalf("postures %+v", rs.Postures)
	}
}

func TestNodeSelection(t *testing.T) {
	for _, tc := range []struct {
		labels string
		host   string
		want   bool
	}{
		{`kubearmor.io/hostname: "*"`, "any", true},
		{`kubearmor.io/hostname: node-1`, "node-1", true},
		{`kubearmor.io/hostname: node-1`, "node-10", false},
		{`kubearmor.io/hostname: "a, node-1,b"`, "node-1", true},
		{`kubearmor.io/hostname: "a,b"`, "node-1", false},
		{`kubearmor.io/hostnamereg: "node-*"`, "node-7", true},
		{`kubearmor.io/hostnamereg: "node-*"`, "my-node-7", false},
		{`kubearmor.io/hostnamereg: "web[0-9]+"`, "web12", true},
		{"kubearmor.io/hostname: node-1\n      kubearmor.io/hostnamereg: \"node-*\"", "node-1", true},
		{"kubearmor.io/hostname: node-2\n      kubearmor.io/hostnamereg: \"node-*\"", "node-1", false},
		{`kubernetes.io/hostname: node-1`, "node-1", false},
		{`team: web`, "node-1", false},
		{`{}`, "node-1", false},
	} {
		t.Run(fmt.Sprintf("%s@%s", tc.labels, tc.host), func(t *testing.T) {
			doc := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), `kubearmor.io/hostname: "*"`, tc.labels, 1)
			if tc.labels == "{}" {
				doc = strings.Replace(doc, "matchLabels:\n      {}", "matchLabels: {}", 1)
			}
			ps, diags := Parse("p.yaml", []byte(doc))
			if diags.HasErrors() {
				t.Fatalf("parse:\n%s", diagStrings(diags))
			}
			if got := Selects(ps[0], tc.host); got != tc.want {
				t.Fatalf("Selects = %v, want %v", got, tc.want)
			}
			if rs := Compile(ps, Options{Host: tc.host}); (len(rs.Rules) > 0) != tc.want {
				t.Fatalf("compiled %d rules", len(rs.Rules))
			}
		})
	}
}

func TestEmptySelectorWarns(t *testing.T) {
	doc := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), "    matchLabels:\n      kubearmor.io/hostname: \"*\"\n", "    matchLabels: {}\n", 1)
	ps, diags := Parse("p.yaml", []byte(doc))
	if len(ps) != 1 || diags.HasErrors() || !strings.Contains(diagStrings(diags), "warning: spec.nodeSelector.matchLabels: empty selector: the policy never applies") {
		t.Fatalf("want an accepted policy with a warning, got:\n%s", diagStrings(diags))
	}
	if Selects(ps[0], "anything") {
		t.Fatal("an empty selector never matches")
	}
}

func TestAppArmorPoliciesAreSkipped(t *testing.T) {
	rs := compileOne(t, wrap("  apparmor: |\n    deny /etc/x r,\n  file:\n    matchPaths:\n    - path: /a\n"))
	if len(rs.Rules) != 0 {
		t.Fatalf("a policy with native AppArmor rules is skipped on hosts, as upstream; got %d rules", len(rs.Rules))
	}
}

// karmor's exact bytes (karmor-client.md §5), including the trailing-"---" empty object.
func TestParseKarmorEvent(t *testing.T) {
	add := `{"type":"ADDED","object":{"metadata":{"name":"hsp-block-sleep"},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"}},"process":{"matchPaths":[{"path":"/usr/bin/sleep"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"severity":5,"message":"blocked sleep","action":"Block"},"status":{}}}`
	ev, diags := ParseEvent([]byte(add))
	if ev == nil || diags.HasErrors() {
		t.Fatalf("ParseEvent: %s", diagStrings(diags))
	}
	rs := Compile([]*Policy{ev.Policy}, Options{Host: "h"})
	if ev.Type != "ADDED" || len(rs.Rules) != 1 || rs.Rules[0].Severity != 5 || rs.Rules[0].Message != "blocked sleep" {
		t.Fatalf("event %+v rules %+v", ev, rs.Rules)
	}
	if !strings.Contains(string(ev.YAML), "kind: KubeArmorHostPolicy") {
		t.Fatalf("YAML rendering:\n%s", ev.YAML)
	}
	// Upstream decodes JSON keys case-insensitively.
	ev, diags = ParseEvent([]byte(strings.Replace(strings.Replace(add, `"matchPaths"`, `"MatchPaths"`, 1), `"type"`, `"Type"`, 1)))
	if ev == nil || diags.HasErrors() {
		t.Fatalf("case-insensitive keys: %s", diagStrings(diags))
	}
	empty := `{"type":"ADDED","object":{"metadata":{},"spec":{"nodeSelector":{},"process":{},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"action":""},"status":{}}}`
	if ev, diags := ParseEvent([]byte(empty)); ev != nil || !strings.Contains(diagStrings(diags), "metadata.name: missing") {
		t.Fatalf("empty object must be rejected with a clear error, got %v\n%s", ev, diagStrings(diags))
	}
	del := strings.Replace(add, `"ADDED"`, `"DELETED"`, 1)
	if ev, _ := ParseEvent([]byte(del)); ev == nil || ev.Type != "DELETED" {
		t.Fatal("DELETED event")
	}
	for _, bad := range []string{``, `[]`, `{"type":"ADDED"}`, `{"type":"UPSERT","object":{}}`, `{"type":"ADDED","object":[1]}`, `{"type":"ADDED","object":{"spec":{"severity":"x"}}}`, `{`} {
		if ev, diags := ParseEvent([]byte(bad)); ev != nil || !diags.HasErrors() {
			t.Fatalf("%q: want an error, got %v", bad, ev)
		}
	}
}

func BenchmarkCompile1000Rules(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&sb, "---\n%s", strings.Replace(wrap("  file:\n    matchPaths:\n"), "test-policy", fmt.Sprintf("p%d", i), 1))
		for j := 0; j < 100; j++ {
			fmt.Fprintf(&sb, "    - path: /srv/data/%d/file-%d\n      fromSource:\n      - path: /usr/bin/app%d\n", i, j, j%7)
		}
	}
	ps := mustParse(b, sb.String())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs := Compile(ps, Options{Host: "h"})
		if len(rs.Rules) != 1000 {
			b.Fatalf("%d rules", len(rs.Rules))
		}
	}
}

func TestDeleteNeedsAValidName(t *testing.T) {
	for _, name := range []string{"", "../../etc/x", "UPPER"} {
		payload := `{"type":"DELETED","object":{"metadata":{"name":"` + name + `"}}}`
		if ev, diags := ParseEvent([]byte(payload)); ev != nil || !diags.HasErrors() {
			t.Errorf("DELETED %q must be rejected", name)
		}
	}
}
