package hostpolicy

import (
	"fmt"
	"testing"
)

// ruleSizes are the host sizes the compile benchmarks cover: from a busy
// host (1k rules) to the per-host cap (MaxRulesPerHost).
var ruleSizes = []int{1_000, 10_000, 100_000}

// identicalPolicy is one policy of n identical file rules: the shape of a
// file whose matchPaths and fromSource are YAML aliases of one entry. It is
// built directly, past Validate's per-policy cap, so Compile's own cost is
// what is measured.
func identicalPolicy(n int) []*Policy {
	p := benchPolicy("identical")
	src := make([]Source, n)
	for i := range src {
		src[i] = Source{Path: "/usr/bin/app"}
	}
	p.Spec.File.MatchPaths = []FilePath{{Path: "/etc/shadow", FromSource: src}}
	Normalize(p)
	return []*Policy{p}
}

// distinctPolicies are n distinct file rules in policies of 100 rules each,
// the shape of a host with many policy files.
func distinctPolicies(n int) []*Policy {
	var out []*Policy
	for i := 0; i < n; i += 100 {
		p := benchPolicy(fmt.Sprintf("distinct-%06d", i/100))
		for j := 0; j < 100 && i+j < n; j++ {
			p.Spec.File.MatchPaths = append(p.Spec.File.MatchPaths, FilePath{
				Path:       fmt.Sprintf("/srv/data/%d/file-%d", i/100, j),
				FromSource: []Source{{Path: fmt.Sprintf("/usr/bin/app%d", j%7)}},
			})
		}
		Normalize(p)
		out = append(out, p)
	}
	return out
}

func benchPolicy(name string) *Policy {
	return &Policy{APIVersion: APIVersion, Kind: KindHostPolicy, Metadata: Metadata{Name: name},
		Spec:   Spec{NodeSelector: NodeSelector{MatchLabels: map[string]string{LabelHostname: "*"}}},
		Origin: Origin{File: name + ".yaml", Line: 1}}
}

// BenchmarkCompile: time and allocated bytes per compile must grow linearly
// with the number of rules, identical or distinct (docs/benchmarks.md).
func BenchmarkCompile(b *testing.B) {
	for _, shape := range []struct {
		name  string
		build func(int) []*Policy
	}{{"identical", identicalPolicy}, {"distinct", distinctPolicies}} {
		for _, n := range ruleSizes {
			ps := shape.build(n)
			b.Run(fmt.Sprintf("%s/%d", shape.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if rs := Compile(ps, Options{Host: "h"}); len(rs.Rules) != n {
						b.Fatalf("%d rules, want %d", len(rs.Rules), n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/rule")
			})
		}
	}
}

// BenchmarkParse: what the store spends on the largest inputs under its
// lock. A file at the per-file cap (20,000 rules through aliases) is
// accepted; the 300 x 300 alias file is refused by the cap; an alias
// bomb is refused at the node bound.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name   string
		doc    string
		accept bool
	}{
		{"at-cap-100x200", aliasPolicy("test-policy", 100, 200), true},
		{"issue-300x300-refused", aliasPolicy("test-policy", 300, 300), false},
		{"bomb-1000x1000-refused", aliasPolicy("test-policy", 1000, 1000), false},
	} {
		data := []byte(tc.doc)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, diags := Parse("p.yaml", data); diags.HasErrors() == tc.accept {
					b.Fatalf("accepted: %v", !diags.HasErrors())
				}
			}
		})
	}
}
