package hostpolicy

import (
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
