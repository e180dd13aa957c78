package apparmor

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// TestAllowListProgramsStart: under a file allow-list with block posture a
// dynamically linked program still starts (its loader, libraries and locale
// are in startGrants, with no exec permission that could clash with the
// profile's "/** px"), reads what the list allows and is refused the rest.
// The program is util-linux's setpriv, which the guest carries with its
// libraries; it resolves the user name "root" from /etc/passwd itself, so
// that a second RuleSet without /etc/passwd shows setpriv, not only the
// program it starts, runs under the profile. Needs root and AppArmor (the
// QEMU guest: vmtests/15-conformance-apparmor.sh).
func TestAllowListProgramsStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := Supported(); err != nil {
		t.Skipf("AppArmor is not usable here: %v", err)
	}
	const setpriv = "/usr/bin/setpriv"
	f, err := elf.Open(setpriv)
	if err != nil {
		t.Fatalf("%v (the guest carries util-linux's setpriv: scripts/vmtest)", err)
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if !dynamic {
		t.Fatalf("%s is statically linked: it proves nothing about libraries", setpriv)
	}
	dir := t.TempDir()
	allowed, other := filepath.Join(dir, "allowed"), filepath.Join(dir, "other")
	for _, p := range []string{allowed, other} {
		if err := os.WriteFile(p, []byte(filepath.Base(p)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Unpin(); err != nil {
			t.Errorf("Unpin: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	allowList := func(paths ...string) {
		t.Helper()
		var b strings.Builder
		b.WriteString("  file:\n    matchPaths:\n")
		for _, p := range paths {
			b.WriteString("    - path: " + p + "\n      readOnly: true\n")
		}
		b.WriteString("  action: Allow")
		rs := compile(t, hostpolicy.Postures{File: "block"}, policy("allow", b.String()))
		if _, err := e.Apply(rs); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(setpriv, args...).CombinedOutput()
		return string(out), err
	}

	allowList(allowed, "/etc/passwd")
	if out, err := run("--reuid", "root", "--clear-groups", "/bin/cat", allowed); err != nil || out != "allowed\n" {
		t.Errorf("allowed file: %v, output %q; want it read", err, out)
	}
	if out, err := run("/bin/cat", other); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("file outside the allow-list: %v, output %q; want Permission denied", err, out)
	}

	allowList(allowed)
	if out, err := run("--reuid", "root", "/bin/cat", allowed); err == nil {
		t.Errorf("setpriv resolved root without /etc/passwd in the allow-list (is it confined?): output %q", out)
	}
	if out, err := run("--reuid", "0", "/bin/cat", allowed); err != nil || out != "allowed\n" {
		t.Errorf("allowed file, numeric uid: %v, output %q; want it read", err, out)
	}
}
