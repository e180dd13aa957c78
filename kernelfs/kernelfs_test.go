package kernelfs

import (
	"os"
	"strings"
	"testing"
)

// On a host with the three file systems mounted (systemd mounts them all),
// Ensure finds them and mounts nothing.
func TestEnsureMountedNothingToDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to see every mount point")
	}
	for _, fs := range []FS{Securityfs, BPF, Tracefs} {
		if !fs.Mounted() {
			t.Skipf("%s is not mounted at %s on this host", fs.Type, fs.Path)
		}
	}
	mounted, err := Ensure(Securityfs, BPF, Tracefs)
	if err != nil || len(mounted) != 0 {
		t.Fatalf("Ensure = %v, %v; want nothing mounted, no error", mounted, err)
	}
}

// A path that cannot be a mount point is an error that names it.
func TestEnsureNamesTheFailure(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notadir")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	bad := FS{Path: f.Name() + "/sub", Type: "tmpfs", Magic: 0x01021994}
	_, err = Ensure(bad)
	if err == nil || !strings.Contains(err.Error(), bad.Path) {
		t.Fatalf("Ensure(%s) = %v, want an error naming the path", bad.Path, err)
	}
}

func TestSysctl(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"kernel/ostype", "Linux"}, // newline trimmed
		{"kernel/no-such-sysctl", ""},
	} {
		if got := Sysctl(tc.name); got != tc.want {
			t.Errorf("Sysctl(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		want         bool
	}{
		{"6.12.57+deb13-cloud-amd64", 6, 12, true},
		{"6.1.0-57-cloud-amd64", 6, 12, false},
		{"6.18.0", 6, 13, true},
		{"7.0.1", 6, 13, true},
		{"5.15.0", 6, 1, false},
		{"", 6, 1, false},
		{"garbage", 6, 1, false},
	} {
		if got := ReleaseAtLeast(tc.release, tc.major, tc.minor); got != tc.want {
			t.Errorf("ReleaseAtLeast(%q, %d, %d) = %v, want %v", tc.release, tc.major, tc.minor, got, tc.want)
		}
	}
	if Release() == "" {
		t.Error("Release() is empty on a running kernel")
	}
}
