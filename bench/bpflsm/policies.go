package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ruleKind is one kind of rule: where it goes in a policy and how its i-th
// list item reads. Every item is one compiled rule.
type ruleKind struct {
	name    string // policy name stem
	section string // process, file, network or capabilities
	list    string // matchPaths, matchDirectories, ...
	item    func(i int) string
	count10 int
	count1k int
}

var protocols = []string{"tcp", "udp", "icmp", "raw"}

var capabilities = []string{"sys_module", "sys_rawio", "sys_boot", "sys_time", "mknod",
	"net_admin", "sys_ptrace", "setfcap", "sys_nice", "sys_resource"}

// ruleKinds: both sets enable the same kinds, so every hook does the same
// kind of work with 10 rules as with 1,000 and the difference is map size and
// the number of patterns the kernel walks. None matches the loops' paths or
// the benchmark program as a source.
var ruleKinds = []ruleKind{
	{"exec-paths", "process", "matchPaths", func(i int) string {
		if i == 0 {
			return "- path: " + probePath
		}
		return fmt.Sprintf("- path: /usr/local/sbin/bench-deny-%d", i)
	}, 1, 140},
	{"exec-names", "process", "matchPaths", func(i int) string {
		return fmt.Sprintf("- execname: bench-deny-tool-%d", i)
	}, 1, 10},
	{"exec-dirs", "process", "matchDirectories", func(i int) string {
		return fmt.Sprintf("- dir: /opt/bench-deny-%d/\n  recursive: %t", i, i%2 == 0)
	}, 1, 50},
	{"exec-patterns", "process", "matchPatterns", func(i int) string {
		return fmt.Sprintf("- pattern: %s", patterns(i, "x"))
	}, 1, 20},
	{"file-paths", "file", "matchPaths", func(i int) string {
		return fmt.Sprintf("- path: /srv/bench-deny/f-%d/secret.key\n  readOnly: %t", i, i%3 == 0)
	}, 1, 450},
	{"file-sources", "file", "matchPaths", func(i int) string {
		return fmt.Sprintf("- path: /srv/bench-src/data-%d\n  fromSource:\n  - path: /usr/bin/bench-src-%d", i, i)
	}, 1, 30},
	{"file-dirs", "file", "matchDirectories", func(i int) string {
		return fmt.Sprintf("- dir: /var/bench-deny/d-%d/\n  recursive: %t", i, i%2 == 0)
	}, 1, 200},
	{"file-patterns", "file", "matchPatterns", func(i int) string {
		return fmt.Sprintf("- pattern: %s", patterns(i, "f"))
	}, 1, 60},
	{"net", "network", "matchProtocols", func(i int) string {
		return fmt.Sprintf("- protocol: %s\n  fromSource:\n  - path: /usr/bin/bench-net-%d", protocols[i%len(protocols)], i)
	}, 1, 30},
	{"caps", "capabilities", "matchCapabilities", func(i int) string {
		return fmt.Sprintf("- capability: %s\n  fromSource:\n  - path: /usr/bin/bench-cap-%d", capabilities[i%len(capabilities)], i)
	}, 1, 10},
}

// patterns gives shapes that make the matcher work past the first byte:
// a literal prefix shared with the loops' paths, then stars, '?' and classes.
func patterns(i int, tag string) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf("/tmp/*/bench-deny-%s%d/*.key", tag, i)
	case 1:
		return fmt.Sprintf("/*/bench-deny-%s%d?.conf", tag, i)
	case 2:
		return fmt.Sprintf("/tmp/bench/*/[a-m]*-%s%d", tag, i)
	default:
		return fmt.Sprintf("/home/*/.bench-%s%d/*", tag, i)
	}
}

const perPolicy = 100

// writePolicies writes the rule set of the given size (0, 10 or 1000) into dir
// as KubeArmorHostPolicy files of at most perPolicy rules each, every one
// with action Block, and returns the number of rules written.
func writePolicies(dir string, size int) (int, error) {
	files, total := renderPolicies(size)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("policy dir: %w", err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(text), 0o644); err != nil {
			return 0, fmt.Errorf("write policy %s: %w", name, err)
		}
	}
	return total, nil
}

// renderPolicies returns policy texts by name and the number of rules.
func renderPolicies(size int) (map[string]string, int) {
	files := map[string]string{}
	total := 0
	for _, k := range ruleKinds {
		n := 0
		switch size {
		case 10:
			n = k.count10
		case 1000:
			n = k.count1k
		}
		for start := 0; start < n; start += perPolicy {
			end := min(start+perPolicy, n)
			var b strings.Builder
			name := fmt.Sprintf("bench-%d-%s-%d", size, k.name, start/perPolicy)
			fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\n"+
				"metadata:\n  name: %s\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n"+
				"  %s:\n    %s:\n", name, k.section, k.list)
			for i := start; i < end; i++ {
				for _, line := range strings.Split(k.item(i), "\n") {
					b.WriteString("    " + line + "\n")
				}
			}
			b.WriteString("  action: Block\n")
			files[name] = b.String()
			total += end - start
		}
	}
	return files, total
}
