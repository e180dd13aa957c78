package hostpolicy

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Labels beside the host name: every label of the selector must be one the
// host carries with the same value; the host name forms keep working.
func TestSelectByLabels(t *testing.T) {
	host := Options{Host: "web-3", Labels: map[string]string{"env": "prod", "team": "web", LabelDistro: "debian"}}
	for _, tc := range []struct {
		labels string
		want   bool
	}{
		{`env: prod`, true},
		{`env: staging`, false},
		{"env: prod\n      team: web", true},
		{"env: prod\n      team: db", false},
		{"env: prod\n      kubearmor.io/hostname: web-3", true},
		{"env: prod\n      kubearmor.io/hostname: web-4", false},
		{"env: prod\n      kubearmor.io/hostnamereg: \"web-*\"", true},
		{"env: prod\n      kubearmor.io/hostnamereg: \"db-*\"", false},
		{`kubearmor.io/os-id: debian`, true},
		{`region: eu`, false},
		{`env: ""`, false},
	} {
		t.Run(tc.labels, func(t *testing.T) {
			doc := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), `kubearmor.io/hostname: "*"`, tc.labels, 1)
			ps, diags := Parse("p.yaml", []byte(doc))
			if diags.HasErrors() {
				t.Fatalf("parse:\n%s", diagStrings(diags))
			}
			if got := host.Selects(ps[0]); got != tc.want {
				t.Fatalf("Selects = %v, want %v", got, tc.want)
			}
			if rs := Compile(ps, host); (len(rs.Rules) > 0) != tc.want {
				t.Fatalf("compiled %d rules", len(rs.Rules))
			}
			if n := CountRules(ps, host); (n > 0) != tc.want {
				t.Fatalf("CountRules = %d", n)
			}
			// Without labels only the host name forms can match.
			if Selects(ps[0], "web-3") && strings.Contains(tc.labels, "env") {
				t.Fatal("a label matched a host that carries none")
			}
		})
	}
}

func TestHostLabels(t *testing.T) {
	rel := []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n# comment\nVERSION_ID=\"12\"\nID=debian\n")
	l := HostLabels(rel, map[string]string{"env": "prod"})
	want := fmt.Sprintf("env=prod,kubearmor.io/os-id=debian,kubearmor.io/os-version-id=12,kubernetes.io/arch=%s,kubernetes.io/os=%s", runtime.GOARCH, runtime.GOOS)
	if got := FormatLabels(l); got != want {
		t.Fatalf("labels\n got %s\nwant %s", got, want)
	}
	if l := HostLabels(nil, nil); len(l) != 2 {
		t.Fatalf("no os-release: want os and arch only, got %v", l)
	}
	if l := HostLabels([]byte("ID='rhel'\nVERSION_ID=9.4\n"), map[string]string{LabelDistro: "custom"}); l[LabelDistro] != "custom" || l[LabelDistroVersion] != "9.4" {
		t.Fatalf("hostLabels override the agent's own labels: %v", l)
	}
}

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"env=prod, team=web", "env=prod,team=web", ""},
		{"", "", ""},
		{"example.com/rack=r12", "example.com/rack=r12", ""},
		{"env", "", `label "env" is not key=value`},
		{"env=prod,env=dev", "", "label env given twice"},
		{"kubearmor.io/hostname=x", "", "is the host name's"},
		{"kubearmor.io/hostnamereg=x", "", "is the host name's"},
		{"-env=prod", "", "the name must be"},
		{"Ex.com/env=prod", "", "the prefix before / must be a DNS name"},
		{"env=has space", "", `value "has space"`},
		{"env=" + strings.Repeat("a", 64), "", "at most 63"},
		{"env=", "env=", ""},
	} {
		got, err := ParseLabels(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && FormatLabels(got) != tc.want:
			t.Errorf("%q: got %s, want %s", tc.in, FormatLabels(got), tc.want)
		}
	}
}

// A selector label no host can carry is a warning naming the field; the
// policy is accepted (upstream accepts it) and applies nowhere.
func TestSelectorLabelSyntaxWarns(t *testing.T) {
	doc := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), `kubearmor.io/hostname: "*"`, `"bad key!": x`, 1)
	ps, diags := Parse("p.yaml", []byte(doc))
	if len(ps) != 1 || diags.HasErrors() || !strings.Contains(diagStrings(diags), "warning: spec.nodeSelector.matchLabels.bad key!: label key") {
		t.Fatalf("want an accepted policy with a warning, got:\n%s", diagStrings(diags))
	}
	doc = strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\n"), `kubearmor.io/hostname: "*"`, `env: prod`, 1)
	if _, diags := Parse("p.yaml", []byte(doc)); len(diags) != 0 {
		t.Fatalf("a well-formed label needs no warning, got:\n%s", diagStrings(diags))
	}
}
