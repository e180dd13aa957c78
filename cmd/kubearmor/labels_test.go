package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policy check --label shows what a host with those labels would enforce.
func TestPolicyCheckLabels(t *testing.T) {
	f := filepath.Join(t.TempDir(), "p.yaml")
	doc := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: prod-web
spec:
  nodeSelector:
    matchLabels:
      env: prod
      kubearmor.io/hostnamereg: "web-*"
  process:
    matchPaths:
    - path: /usr/bin/nc
  action: Block
`
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--host", "web-1", "--label", "env=prod"}, "ok: prod-web (1 rules; applies to this host)", 0},
		{[]string{"--host", "web-1", "--label", "env=dev,team=x"}, "ok: prod-web (0 rules; does not apply to host web-1 (labels env=dev,", 0},
		{[]string{"--host", "db-1", "--label", "env=prod"}, "does not apply to host db-1", 0},
		{[]string{"--host", "web-1"}, "does not apply to host web-1", 0},
		{[]string{"--label", "env"}, `label "env" is not key=value`, 2},
	} {
		var out, errOut bytes.Buffer
		code := runPolicy(append(append([]string{"check"}, tc.args...), f), &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, output:\n%s%s\nwant %q (exit %d)", tc.args, code, out.String(), errOut.String(), tc.want, tc.code)
		}
	}
}
