package hostpolicy

import (
	"fmt"
	"strings"
	"testing"
)

// aliasPolicy is a policy of paths x sources file rules written with YAML
// aliases on line 10: one fromSource entry repeated sources times, one
// matchPaths entry repeated paths times. The issue's 300 x 300 file is
// 3 KB and stands for 90,000 rules.
func aliasPolicy(name string, paths, sources int) string {
	return strings.Replace(wrap(fmt.Sprintf("  file:\n    matchPaths: [&p {path: /etc/shadow, fromSource: &s [&a {path: /usr/bin/app}%s]}%s]\n",
		strings.Repeat(", *a", sources-1), strings.Repeat(", *p", paths-1))), "test-policy", name, 1)
}

// taggedPolicy has 1,000 rules whose tags alias one list of 50 tags: about
// 53,000 nodes once expanded, well under every rule cap.
func taggedPolicy(name string) string {
	return strings.Replace(wrap(fmt.Sprintf("  file:\n    matchPaths: [&p {path: /a, tags: [%s]}%s]\n",
		strings.TrimPrefix(strings.Repeat(", t", 50), ", "), strings.Repeat(", *p", 999))), "test-policy", name, 1)
}

// laughs is the billion-laughs chain l0..ln, ten references per level, as
// the keys of a mapping indented by four.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString("    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "    l%d: &l%d [*l%d%s]\n", i, i, i-1, strings.Repeat(fmt.Sprintf(", *l%d", i-1), 9))
	}
	return b.String()
}

func TestRuleCapsAndAliasBombs(t *testing.T) {
	issue := aliasPolicy("test-policy", 300, 300)
	if len(issue) > 4096 {
		t.Fatalf("the issue's file is 4 KB; this one is %d bytes", len(issue))
	}
	for _, tc := range []struct {
		name string
		doc  string
		want []string // substrings of the errors; none: accepted
	}{
		{"under the cap", aliasPolicy("test-policy", 100, 150), nil},
		{"the issue's 300 x 300 alias file", issue,
			[]string{"p.yaml:10: spec.file.matchPaths: 90000 rules after expanding fromSource, more than the limit of 20000 per policy"}},
		{"the policy cap counts every list", aliasPolicy("test-policy", 100, 150) +
			"  syscalls:\n    matchSyscalls:\n    - syscall: [open" + strings.Repeat(", open", 99) + "]\n      fromSource: [{path: /bin/x}" + strings.Repeat(", {path: /bin/x}", 59) + "]\n",
			[]string{"p.yaml:10: spec.file.matchPaths: 15000 rules after expanding fromSource (21000 in the whole policy), more than the limit of 20000 per policy"}},
		{"the file cap counts every document", aliasPolicy("first", 100, 150) + "---\n" + aliasPolicy("second", 100, 150),
			[]string{"p.yaml:17: spec: policy second brings the file to 30000 rules, more than the limit of 20000 per file"}},
		{"alias bomb: 1000 x 1000 in 10 KB", aliasPolicy("test-policy", 1000, 1000),
			[]string{"p.yaml:10: spec.file.matchPaths[", "aliases expand to more than 200000 YAML nodes (an alias bomb?); refused"}},
		{"the node bound is per file, not per document", taggedPolicy("a") + "---\n" + taggedPolicy("b") + "---\n" + taggedPolicy("c") + "---\n" + taggedPolicy("d"),
			[]string{"p.yaml:43: spec.file.matchPaths[", "aliases expand to more than 200000 YAML nodes"}},
		{"billion laughs in an unknown field is never expanded", wrap("  lol:\n" + laughs(9) + "  file:\n    matchPaths:\n    - path: /a\n"),
			[]string{"p.yaml:9: spec.lol: unknown field"}},
		{"billion laughs as tags", wrap("  lol:\n" + laughs(9) + "  tags: *l8\n  file:\n    matchPaths:\n    - path: /a\n"),
			[]string{"spec.tags[0]: expected a string, found a list"}},
		{"billion laughs as fromSource", wrap("  lol:\n" + laughs(9) + "  file:\n    matchPaths:\n    - path: /a\n      fromSource: *l8\n"),
			[]string{"spec.file.matchPaths[0].fromSource[0]: expected a mapping, found a list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, diags := Parse("p.yaml", []byte(tc.doc))
			errs := diags.Err()
			if tc.want == nil {
				if errs != nil {
					t.Fatalf("want accepted, got:\n%v", errs)
				}
				if n, want := len(Compile(ps, Options{Host: "h"}).Rules), CountRules(ps, Options{Host: "h"}); n != want || n == 0 {
					t.Fatalf("compiled %d rules, counted %d", n, want)
				}
				return
			}
			if ps != nil || errs == nil {
				t.Fatalf("want refused, got %d policies and %v", len(ps), errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs.Error(), w) {
					t.Fatalf("want an error containing %q, got:\n%v", w, errs)
				}
			}
			// One finding per node of the source at most: nothing is
			// reported once per expansion.
			if n := len(diags); n > 25 {
				t.Fatalf("%d diagnostics for one bad input", n)
			}
		})
	}
}

// PolicyService requests are YAML to the decoder, so they may use aliases
// too: the same caps apply, and what is rendered for the file is bounded.
func TestAliasedRequests(t *testing.T) {
	req := func(spec string) []byte {
		return []byte(`{"type": "ADDED", "object": {"metadata": {"name": "aliased"}, "spec": {"nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}}, ` + spec + `}}}`)
	}
	bomb := `"file": {"matchPaths": [&p {"path": "/etc/shadow", "fromSource": [&a {"path": "/bin/x"}` + strings.Repeat(", *a", 299) + `]}` + strings.Repeat(", *p", 299) + `]}`
	if len(bomb) > 2900 {
		t.Fatalf("the issue's request is 2.9 KB; this one is %d bytes", len(bomb))
	}
	big := `"tags": [&t "` + strings.Repeat("x", 10_000) + `"` + strings.Repeat(", *t", 199) + `], "file": {"matchPaths": [{"path": "/a"}]}`
	huge := `"tags": [&t "` + strings.Repeat("x", 10_000) + `"` + strings.Repeat(", *t", 99_999) + `], "file": {"matchPaths": [{"path": "/a"}]}`
	if len(req(huge)) > MaxDocumentBytes {
		t.Fatalf("request of %d bytes", len(req(huge)))
	}
	for _, tc := range []struct{ name, spec, want string }{
		{"90,000 rules", bomb, "request:1: spec.file.matchPaths: 90000 rules after expanding fromSource, more than the limit of 20000 per policy"},
		{"1 GB once rendered, refused before rendering", huge, "request:1: spec.tags[419]: aliases expand to more than 4194304 bytes of text (an alias bomb?); refused"},
		{"2 MB once rendered", big, "request:1: policy aliased is 2001611 bytes as YAML once its aliases are expanded; the limit of a policy file is 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, diags := ParseEvent(req(tc.spec))
			if ev != nil || !strings.Contains(diagStrings(diags), tc.want) {
				t.Fatalf("want refused with %q, got %v:\n%s", tc.want, ev, diagStrings(diags))
			}
		})
	}
	ev, diags := ParseEvent(req(`"tags": [&t "a", *t], "file": {"matchPaths": [&p {"path": "/a"}, *p]}`))
	if ev == nil || diags.HasErrors() || !strings.Contains(string(ev.YAML), "- path: /a\n") {
		t.Fatalf("a small aliased request is accepted and rendered without aliases: %v\n%s", diagStrings(diags), ev.YAML)
	}
}

// However many findings an input makes, at most MaxDiagnostics are
// reported, and then how many more there were.
func TestDiagnosticsAreLimited(t *testing.T) {
	aliased := wrap("  file:\n    matchPaths: [&p {path: /a, bogus: 1}" + strings.Repeat(", *p", 99_999) + "]\n")
	plain := wrap("  file:\n    matchPaths:\n" + strings.Repeat("    - path: /a\n      bogus: 1\n", 5_000))
	for name, doc := range map[string]string{"aliased": aliased, "plain": plain} {
		_, diags := Parse("p.yaml", []byte(doc))
		if len(diags) != MaxDiagnostics+1 || !diags.HasErrors() {
			t.Fatalf("%s: %d diagnostics", name, len(diags))
		}
		if last := diags[len(diags)-1].String(); !strings.HasPrefix(last, "p.yaml: and ") || !strings.HasSuffix(last, " more errors and 0 more warnings, not shown") {
			t.Fatalf("%s: last finding %q", name, last)
		}
	}
	_, diags := ParseEvent([]byte(`{"type": "ADDED", "object": {"metadata": {"name": "x"}, "spec": {"file": {"matchPaths": [&p {"path": "/a", "bogus": 1}` + strings.Repeat(", *p", 999) + `]}}}}`))
	if len(diags) != MaxDiagnostics+1 || diags[len(diags)-1].String() != "request: and 900 more errors and 0 more warnings, not shown" {
		t.Fatalf("request: %d diagnostics, last %v", len(diags), diags[len(diags)-1])
	}
}

func TestNameFitsAFileName(t *testing.T) {
	name := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		n    int
		want string
	}{
		{MaxNameLen, ""},
		{MaxNameLen + 1, "p.yaml:4: metadata.name: 251 bytes long; the limit is 250, so that the file <name>.yaml fits in 255 bytes"},
		{253, "p.yaml:4: metadata.name: 253 bytes long; the limit is 250"},
	} {
		_, diags := Parse("p.yaml", []byte(strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), "test-policy", name(tc.n), 1)))
		got := ""
		if err := diags.Err(); err != nil {
			got = err.Error()
		}
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("name of %d bytes: want %q, got %q", tc.n, tc.want, got)
		}
		if len(name(tc.n)+".yaml") <= 255 != (tc.want == "") {
			t.Errorf("name of %d bytes: the limit does not match file names", tc.n)
		}
		del := `{"type":"DELETED","object":{"metadata":{"name":"` + name(tc.n) + `"}}}`
		if ev, diags := ParseEvent([]byte(del)); (ev == nil) != (tc.want != "") {
			t.Errorf("DELETED with a name of %d bytes: %v", tc.n, diagStrings(diags))
		}
	}
}

func TestFitHost(t *testing.T) {
	ps := mustParse(t, aliasPolicy("test-policy", 10, 1)+"---\n"+
		strings.Replace(strings.Replace(aliasPolicy("elsewhere", 10, 1), `"*"`, "other-host", 1), "test-policy", "elsewhere", 1))
	opts := Options{Host: "h"}
	if n := CountRules(ps, opts); n != 10 {
		t.Fatalf("CountRules = %d, want 10 (the second policy is for another host)", n)
	}
	if n, diags := FitHost("/p/f.yaml", ps, MaxRulesPerHost-10, opts); n != 10 || diags != nil {
		t.Fatalf("exactly at the cap: n %d, %v", n, diags)
	}
	n, diags := FitHost("/p/f.yaml", ps, MaxRulesPerHost-9, opts)
	want := "/p/f.yaml:6: spec: policy test-policy compiles to 10 rules; with the 99991 rules of the other policies in force, this host would have 100001, more than the limit of 100000 per host"
	if n != 10 || len(diags) != 1 || diags[0].String() != want {
		t.Fatalf("one past the cap: n %d\n got %v\nwant %s", n, diags, want)
	}
}
