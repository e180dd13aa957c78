package main

import (
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// The generated sets must compile to exactly their size, all Block, with
// the probe blocked and nothing that could match what the loops touch: a
// match would deny a loop (aborting the run) or, worse, audit it silently.
func TestGeneratedPolicies(t *testing.T) {
	for _, size := range []int{10, 1000} {
		files, total := renderPolicies(size)
		if total != size {
			t.Errorf("size %d: rendered %d rules", size, total)
		}
		var policies []*hostpolicy.Policy
		for name, text := range files {
			ps, diags := hostpolicy.Parse(name+".yaml", []byte(text))
			if diags.HasErrors() {
				t.Fatalf("size %d: %s does not parse: %v\n%s", size, name, diags.Err(), text)
			}
			policies = append(policies, ps...)
		}
		rs := hostpolicy.Compile(policies, hostpolicy.Options{Host: "vmtest"})
		if len(rs.Rules) != size {
			t.Errorf("size %d: compiled to %d rules", size, len(rs.Rules))
		}
		probeBlocked := false
		kinds := map[string]bool{}
		for _, r := range rs.Rules {
			kinds[r.Category.String()+"/"+r.Match.String()+"/"+strconv.FormatBool(r.Source != "")] = true
			if r.Action != "Block" {
				t.Errorf("size %d: rule %s has action %s", size, r.Value, r.Action)
			}
			if r.Category == hostpolicy.CategoryProcess && r.Match == hostpolicy.MatchPath && r.Value == probePath {
				probeBlocked = true
				continue
			}
			if target, hit := matchesLoop(r); hit {
				t.Errorf("size %d: rule %v %s matches %s", size, r.Match, r.Value, target)
			}
		}
		if !probeBlocked {
			t.Errorf("size %d: no rule blocks the probe %s", size, probePath)
		}
		if len(kinds) != 10 {
			t.Errorf("size %d: %d kinds of rules, want the same 10 in both sets: %v", size, len(kinds), kinds)
		}
	}
}

// matchesLoop reports whether a rule could apply to a loop's operation.
func matchesLoop(r hostpolicy.Rule) (string, bool) {
	var target string
	switch r.Category {
	case hostpolicy.CategoryProcess:
		target = execPath
	case hostpolicy.CategoryFile:
		target = openPath
	default: // network and capabilities: only from other programs
		return "a source", r.Source == ""
	}
	if r.Source != "" && r.Source != "/opt/vmtest/bpflsm-bench" {
		return "", false
	}
	switch r.Match {
	case hostpolicy.MatchPath:
		return target, r.Value == target
	case hostpolicy.MatchExecName:
		return target, r.Value == path.Base(target)
	case hostpolicy.MatchDirectory:
		return target, strings.HasPrefix(target, r.Value)
	case hostpolicy.MatchPattern:
		ok, err := path.Match(r.Value, target)
		return target, ok || err != nil
	}
	return target, true
}

func TestNoRules(t *testing.T) {
	if files, n := renderPolicies(0); len(files) != 0 || n != 0 {
		t.Errorf("size 0 rendered %d files, %d rules", len(files), n)
	}
}

func TestWritePolicies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	n, err := writePolicies(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1000 || len(entries) < 1000/perPolicy {
		t.Errorf("wrote %d rules in %d files", n, len(entries))
	}
}
