package hostpolicy

import (
	"strings"
	"testing"
)

// wrap puts spec lines (indented two spaces, under "spec:") into a complete policy.
func wrap(spec string) string {
	return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: test-policy
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
` + spec
}

func diagStrings(ds Diagnostics) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Each case is one rule of reference §1.4 (or a structural check of the
// decoder); want is a substring of the one expected diagnostic, "" for clean.
func TestValidationRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		want    string
		warning bool
	}{
		{name: "clean", doc: wrap("  process:\n    matchPaths:\n    - path: /usr/bin/sleep\n")},
		{name: "path relative", doc: wrap("  file:\n    matchPaths:\n    - path: etc/passwd\n"),
			want: `p.yaml:11: spec.file.matchPaths[0].path: must be absolute: "etc/passwd"`},
		{name: "path ends in slash", doc: wrap("  file:\n    matchPaths:\n    - path: /etc/\n"),
			want: `spec.file.matchPaths[0].path: "/etc/" names a directory; use matchDirectories`},
		{name: "path too long", doc: wrap("  file:\n    matchPaths:\n    - path: /" + strings.Repeat("a", 255) + "\n"),
			want: "spec.file.matchPaths[0].path: longer than 255 bytes"},
		{name: "path of 255 bytes", doc: wrap("  file:\n    matchPaths:\n    - path: /" + strings.Repeat("a", 254) + "\n")},
		{name: "path missing", doc: wrap("  file:\n    matchPaths:\n    - readOnly: true\n"),
			want: "spec.file.matchPaths[0].path: missing"},
		{name: "dir relative", doc: wrap("  file:\n    matchDirectories:\n    - dir: etc/\n"),
			want: `spec.file.matchDirectories[0].dir: must be absolute`},
		{name: "dir without trailing slash is a warning", doc: wrap("  process:\n    matchDirectories:\n    - dir: /usr/bin\n"),
			want: `warning: spec.process.matchDirectories[0].dir: "/usr/bin" taken as "/usr/bin/"`, warning: true},
		{name: "dir root", doc: wrap("  file:\n    matchDirectories:\n    - dir: /\n      recursive: true\n")},
		{name: "execname with slash", doc: wrap("  process:\n    matchPaths:\n    - execname: bin/ls\n"),
			want: `spec.process.matchPaths[0].execname: must be a file name without '/'`},
		{name: "execname and path", doc: wrap("  process:\n    matchPaths:\n    - execname: ls\n      path: /bin/ls\n"),
			want: `spec.process.matchPaths[0]: give path or execname, not both`},
		{name: "fromSource relative", doc: wrap("  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: cat\n"),
			want: `spec.file.matchPaths[0].fromSource[0].path: must be absolute`},
		{name: "fromSource dir outside syscalls", doc: wrap("  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - dir: /usr/bin/\n"),
			want: `fromSource takes a path here, not a dir`},
		{name: "protocol unknown", doc: wrap("  network:\n    matchProtocols:\n    - protocol: xtcp\n"),
			want: `spec.network.matchProtocols[0].protocol: unknown protocol "xtcp"`},
		{name: "protocol upper case", doc: wrap("  network:\n    matchProtocols:\n    - protocol: TCP\n")},
		{name: "protocol comma list", doc: wrap("  network:\n    matchProtocols:\n    - protocol: tcp,udp\n")},
		{name: "capability unknown", doc: wrap("  capabilities:\n    matchCapabilities:\n    - capability: net_rawx\n"),
			want: `unknown capability "net_rawx"`},
		{name: "capability cap_ prefix", doc: wrap("  capabilities:\n    matchCapabilities:\n    - capability: cap_net_raw\n")},
		{name: "severity too high", doc: wrap("  severity: 11\n  file:\n    matchPaths:\n    - path: /a\n"),
			want: "p.yaml:9: spec.severity: must be between 1 and 10, not 11"},
		{name: "severity negative", doc: wrap("  file:\n    matchPaths:\n    - path: /a\n      severity: -1\n"),
			want: "spec.file.matchPaths[0].severity: must be between 1 and 10"},
		{name: "severity wrong type", doc: wrap("  severity: high\n"),
			want: `spec.severity: expected an integer, found string "high"`},
		{name: "action unknown", doc: wrap("  action: Deny\n"),
			want: `spec.action: must be Allow, Audit or Block, not "Deny"`},
		{name: "rule action lower case is a warning", doc: wrap("  file:\n    matchPaths:\n    - path: /a\n      action: block\n"),
			want: `warning: spec.file.matchPaths[0].action: "block" taken as "Block"`, warning: true},
		{name: "allowedArgs over 20", doc: wrap("  process:\n    matchPaths:\n    - path: /bin/x\n      allowedArgs: [" + strings.TrimSuffix(strings.Repeat("a,", 21), ",") + "]\n"),
			want: "allowedArgs: at most 20 arguments, found 21"},
		{name: "device level", doc: wrap("  device:\n    matchDevice:\n    - class: MASS-STORAGE\n      level: 0\n"),
			want: "spec.device.matchDevice[0].level: must be at least 1"},
		{name: "syscall unknown", doc: wrap("  syscalls:\n    matchSyscalls:\n    - syscall: [setuid, frobnicate]\n"),
			want: `spec.syscalls.matchSyscalls[0].syscall[1]: unknown syscall "frobnicate"`},
		{name: "syscall path dir", doc: wrap("  syscalls:\n    matchPaths:\n    - syscall: [unlink]\n      path: /home/\n      recursive: true\n")},
		{name: "syscall fromSource dir", doc: wrap("  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n      fromSource:\n      - dir: /usr/bin/\n        recursive: true\n")},
		{name: "pattern relative", doc: wrap("  file:\n    matchPatterns:\n    - pattern: '*.key'\n"),
			want: `spec.file.matchPatterns[0].pattern: must be an absolute path pattern`},
		{name: "pattern malformed", doc: wrap("  process:\n    matchPatterns:\n    - pattern: /usr/bin/[apt\n"),
			want: `bad pattern "/usr/bin/[apt"`},
		{name: "unknown field", doc: wrap("  file:\n    matchPath:\n    - path: /a\n"),
			want: "p.yaml:10: spec.file.matchPath: unknown field"},
		{name: "unknown field wrong case", doc: wrap("  file:\n    matchpaths:\n    - path: /a\n"),
			want: `spec.file.matchpaths: unknown field (did you mean "matchPaths"?)`},
		{name: "list expected", doc: wrap("  file:\n    matchPaths:\n      path: /a\n"),
			want: "spec.file.matchPaths: expected a list, found a mapping"},
		{name: "bool expected", doc: wrap("  file:\n    matchPaths:\n    - path: /a\n      readOnly: yes\n"),
			want: `spec.file.matchPaths[0].readOnly: expected true or false, found string "yes"`},
		{name: "field twice", doc: wrap("  severity: 2\n  severity: 3\n"),
			want: "spec.severity: field given twice"},
		{name: "no rules is a warning", doc: wrap(""), want: "warning: spec: policy has no rules", warning: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse("p.yaml", []byte(tc.doc))
			// "no rules" is expected only where the case asks for it.
			var relevant Diagnostics
			for _, d := range diags {
				noise := d.Msg == "policy has no rules" || strings.HasPrefix(d.Msg, "USB device rules")
				if !noise || strings.Contains(tc.want, d.Msg) {
					relevant = append(relevant, d)
				}
			}
			if tc.want == "" {
				if len(relevant) != 0 {
					t.Fatalf("want no diagnostics, got:\n%s", diagStrings(relevant))
				}
				return
			}
			if len(relevant) != 1 || !strings.Contains(relevant[0].String(), tc.want) {
				t.Fatalf("want one diagnostic containing %q, got:\n%s", tc.want, diagStrings(relevant))
			}
			if relevant[0].Warning != tc.warning {
				t.Fatalf("warning = %v, want %v", relevant[0].Warning, tc.warning)
			}
		})
	}
}

func TestDocumentLevelChecks(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"bad apiVersion", strings.Replace(wrap(""), "security.kubearmor.com/v1", "v1", 1), `p.yaml:1: apiVersion: must be security.kubearmor.com/v1, not "v1"`},
		{"bad kind", strings.Replace(wrap(""), "KubeArmorHostPolicy", "KubeArmorPolicy", 1), `p.yaml:2: kind: must be KubeArmorHostPolicy`},
		{"missing name", strings.Replace(wrap(""), "  name: test-policy\n", "", 1), "metadata.name: missing"},
		{"name with slash", strings.Replace(wrap(""), "test-policy", "../etc/x", 1), `metadata.name: "../etc/x" is not a valid name`},
		{"not a mapping", "- a\n- b\n", "p.yaml:1: a policy must be a mapping, found a list"},
		{"yaml syntax", "kind: [\n", "p.yaml:"},
		{"duplicate in file", wrap("") + "---\n" + wrap(""), "p.yaml:13: metadata.name: policy test-policy is already defined at line 4"},
		{"bad hostnamereg", strings.Replace(wrap(""), `kubearmor.io/hostname: "*"`, `kubearmor.io/hostnamereg: "node-("`, 1), `bad pattern "node-("`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse("p.yaml", []byte(tc.doc))
			if !diags.HasErrors() || !strings.Contains(diagStrings(diags), tc.want) {
				t.Fatalf("want an error containing %q, got:\n%s", tc.want, diagStrings(diags))
			}
		})
	}
}

func TestMultiDocumentFile(t *testing.T) {
	doc := "---\n" + wrap("  process:\n    matchPaths:\n    - path: /bin/a\n") + "---\n" +
		strings.Replace(wrap("  process:\n    matchPaths:\n    - path: /bin/b\n"), "test-policy", "second", 1) + "---\n"
	ps, diags := Parse("p.yaml", []byte(doc))
	if diags.HasErrors() || len(ps) != 2 {
		t.Fatalf("want 2 policies, got %d:\n%s", len(ps), diagStrings(diags))
	}
	if ps[1].Metadata.Name != "second" || ps[1].Origin.LineOf("spec.process.matchPaths[0].path") != 24 {
		t.Fatalf("second document: name %q line %d", ps[1].Metadata.Name, ps[1].Origin.LineOf("spec.process.matchPaths[0].path"))
	}
}

func TestOneBadDocumentRejectsTheFile(t *testing.T) {
	doc := wrap("  process:\n    matchPaths:\n    - path: /bin/a\n") + "---\n" +
		strings.Replace(wrap("  process:\n    matchPaths:\n    - path: bin/b\n"), "test-policy", "second", 1)
	ps, diags := Parse("p.yaml", []byte(doc))
	if ps != nil || !diags.HasErrors() {
		t.Fatalf("a file with one bad document must be rejected whole, got %d policies", len(ps))
	}
}

func TestKubernetesExportFieldsAreIgnored(t *testing.T) {
	doc := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /a\nstatus:\n  status: OK\n"),
		"  name: test-policy\n", "  name: test-policy\n  uid: 1234\n  resourceVersion: \"5\"\n  creationTimestamp: null\n", 1)
	if _, diags := Parse("p.yaml", []byte(doc)); len(diags) != 0 {
		t.Fatalf("kubectl export fields must be accepted silently:\n%s", diagStrings(diags))
	}
}
