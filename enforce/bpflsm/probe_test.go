package bpflsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRefusedReason(t *testing.T) {
	dir := t.TempDir()
	lockdown := filepath.Join(dir, "lockdown")
	eperm := fmt.Errorf("load program: %w"+memlockHint, unix.EPERM)
	for _, tt := range []struct {
		name     string
		err      error
		lockdown string // file content; "" = no file
		want     string
	}{
		{"EPERM, lockdown integrity", eperm, "none [integrity] confidentiality\n",
			"load program: operation not permitted (the memlock limit is already lifted: this kernel does not let LSM programs load; kernel lockdown: integrity)"},
		{"EPERM, no lockdown", eperm, "[none] integrity confidentiality\n",
			"load program: operation not permitted (the memlock limit is already lifted: this kernel does not let LSM programs load)"},
		{"EPERM, no lockdown file", eperm, "",
			"load program: operation not permitted (the memlock limit is already lifted: this kernel does not let LSM programs load)"},
		{"other errors unchanged", fmt.Errorf("load program: %w", unix.EINVAL), "", "load program: invalid argument"},
	} {
		os.Remove(lockdown)
		if tt.lockdown != "" {
			if err := os.WriteFile(lockdown, []byte(tt.lockdown), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got := refused(tt.err, lockdown)
		if got.Error() != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
		if !errors.Is(got, errors.Unwrap(tt.err)) {
			t.Errorf("%s: %v no longer wraps %v", tt.name, got, errors.Unwrap(tt.err))
		}
	}
}

// TestSupportedReason: on a kernel that refuses BPF-LSM (this host), the
// reason Supported gives must not suggest raising MEMLOCK.
func TestSupportedReason(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	err := Supported()
	if err == nil {
		// Where BPF-LSM works (the test guest) the claim itself is checked:
		// bpf must be an active LSM.
		lsms, rerr := os.ReadFile("/sys/kernel/security/lsm")
		if rerr != nil {
			t.Fatalf("Supported() says yes, but the active LSMs cannot be read: %v", rerr)
		}
		if !slices.Contains(strings.Split(strings.TrimSpace(string(lsms)), ","), "bpf") {
			t.Fatalf("Supported() says yes, but bpf is not among the active LSMs: %s", lsms)
		}
		return
	}
	t.Logf("refusal: %v", err)
	if strings.Contains(err.Error(), "MEMLOCK") {
		t.Errorf("the reason suggests MEMLOCK: %v", err)
	}
}
