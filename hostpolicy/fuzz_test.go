package hostpolicy

import (
	"fmt"
	"strings"
	"testing"
)

// The decoders face files anyone with write access to the policy directory
// writes, and payloads any PolicyService client sends: whatever the input,
// they must return (policies or diagnostics) without panicking, and what they
// accept must compile.

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte(wrap("  process:\n    matchPaths:\n    - path: /bin/a\n      fromSource:\n      - path: /bin/sh\n")))
	f.Add([]byte(wrap("  network:\n    matchProtocols:\n    - protocol: tcp,udp\n  syscalls:\n    matchPaths:\n    - syscall: [unlink]\n      path: /home/\n")))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("---\n---\nkind: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, diags := Parse("f.yaml", data)
		for _, d := range diags {
			_ = d.String()
		}
		if diags.HasErrors() && ps != nil {
			t.Fatal("policies returned alongside errors")
		}
		rs := Compile(ps, Options{Host: "h"})
		for _, r := range rs.Rules {
			if got, ok := rs.Rule(r.ID); !ok || got.ID != r.ID {
				t.Fatalf("rule %d not found by ID", r.ID)
			}
		}
		if n := len(rs.Rules) + len(rs.ContainerRules); n != CountRules(ps, Options{Host: "h"}) || n > MaxRulesPerFile {
			t.Fatalf("compiled %d rules, counted %d (cap %d)", n, CountRules(ps, Options{Host: "h"}), MaxRulesPerFile)
		}
	})
}

// FuzzAliasShapes builds the shapes that make a few bytes of YAML stand for
// many rules: matchPaths, fromSource and syscall lists repeated through
// aliases, over several documents. Whatever the sizes, a file is either
// refused by a cap (rules per policy or file, nodes after expansion) with a
// file:line error and a handful of diagnostics, or accepted with as many
// rules as counted and no more than the cap.
//
// The caps are scaled down 100 times (2,000 nodes, 41 KB, 200 rules) so that each
// input costs microseconds and scripts/fuzz's 100,000 inputs stay short;
// TestRuleCapsAndAliasBombs covers the real caps.
func FuzzAliasShapes(f *testing.F) {
	nodes, bytes, policy, file := nodeCap, byteCap, policyRuleCap, fileRuleCap
	nodeCap, byteCap, policyRuleCap, fileRuleCap = nodes/100, bytes/100, policy/100, file/100
	f.Cleanup(func() { nodeCap, byteCap, policyRuleCap, fileRuleCap = nodes, bytes, policy, file })
	f.Add(uint16(30), uint16(30), uint8(1), uint8(0))
	f.Add(uint16(10), uint16(15), uint8(2), uint8(0))
	f.Add(uint16(100), uint16(100), uint8(1), uint8(3))
	f.Add(uint16(5), uint16(5), uint8(6), uint8(5))
	f.Fuzz(func(t *testing.T, paths, sources uint16, docs, syscalls uint8) {
		paths, sources, docs, syscalls = max(paths%128, 1), max(sources%128, 1), max(docs%8, 1), syscalls%16
		var b strings.Builder
		for d := 0; d < int(docs); d++ {
			spec := "  file:\n    matchPaths: [&p {path: /etc/shadow, fromSource: &s [&a {path: /usr/bin/app}" +
				strings.Repeat(", *a", int(sources)-1) + "]}" + strings.Repeat(", *p", int(paths)-1) + "]\n"
			if syscalls > 0 {
				spec += "  syscalls:\n    matchPaths:\n    - path: /tmp/\n      syscall: [open" + strings.Repeat(", open", int(syscalls)-1) + "]\n      fromSource: *s\n"
			}
			fmt.Fprintf(&b, "---\n%s", strings.Replace(wrap(spec), "test-policy", fmt.Sprintf("p%d", d), 1))
		}
		if b.Len() > MaxDocumentBytes {
			return
		}
		ps, diags := Parse("f.yaml", []byte(b.String()))
		if diags.HasErrors() {
			if ps != nil {
				t.Fatal("policies returned alongside errors")
			}
			if len(diags) > 3*int(docs)+3 {
				t.Fatalf("%d diagnostics for %d documents", len(diags), docs)
			}
			for _, d := range diags {
				if !d.Warning && (d.Line == 0 || !(strings.Contains(d.Msg, "more than the limit of") || strings.Contains(d.Msg, "YAML nodes") || strings.Contains(d.Msg, "bytes of text"))) {
					t.Fatalf("not a cap error with a line: %s", d)
				}
			}
			return
		}
		rs := Compile(ps, Options{Host: "h"})
		if n := len(rs.Rules); n != CountRules(ps, Options{Host: "h"}) || n > fileRuleCap {
			t.Fatalf("compiled %d rules, counted %d", n, CountRules(ps, Options{Host: "h"}))
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"type":"ADDED","object":{"metadata":{"name":"hsp-block-sleep"},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"}},"process":{"matchPaths":[{"path":"/usr/bin/sleep"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"device":{},"severity":5,"message":"blocked sleep","action":"Block"},"status":{}}}`))
	f.Add([]byte(`{"type":"DELETED","object":{"metadata":{"name":"x"}}}`))
	f.Add([]byte(`{"type":"ADDED","object":{"metadata":{},"spec":{"nodeSelector":{},"action":""},"status":{}}}`))
	f.Add([]byte(strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, diags := ParseEvent(data)
		if ev != nil {
			if diags.HasErrors() {
				t.Fatal("event returned alongside errors")
			}
			if ev.Policy == nil || ev.Policy.Metadata.Name == "" {
				t.Fatal("accepted event without a policy name")
			}
			Compile([]*Policy{ev.Policy}, Options{Host: "h"})
		}
	})
}
