// Package kernelfs mounts the kernel's pseudo file systems the agent needs
// where nothing mounted them (minimal hosts, initramfs, containers): the
// enforcer selection reads securityfs, pinned BPF objects live on the BPF
// file system and the monitor's tracepoints need tracefs. It is the one
// place that mounts them; the agent, the BPF-LSM enforcer and the monitor
// call it. Sysctl (its one reader of /proc/sys) and Release are the host
// facts the tiers and the agent read.
package kernelfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// FS is a kernel file system at its conventional mount point.
type FS struct {
	Path, Type string
	Magic      int64 // statfs f_type of a mounted instance
}

// The file systems the agent uses.
var (
	Securityfs = FS{"/sys/kernel/security", "securityfs", unix.SECURITYFS_MAGIC}
	BPF        = FS{"/sys/fs/bpf", "bpf", unix.BPF_FS_MAGIC}
	Tracefs    = FS{"/sys/kernel/tracing", "tracefs", unix.TRACEFS_MAGIC}
)

// Mounted reports whether fs is mounted at its path.
func (fs FS) Mounted() bool {
	var st unix.Statfs_t
	return unix.Statfs(fs.Path, &st) == nil && int64(st.Type) == fs.Magic
}

// Ensure mounts each fs at its path unless it is mounted there already. It
// returns the ones it mounted, and an error naming every one it could not.
func Ensure(fss ...FS) (mounted []FS, err error) {
	var errs []error
	for _, fs := range fss {
		if fs.Mounted() {
			continue
		}
		if err := os.MkdirAll(fs.Path, 0o700); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fs.Path, err))
			continue
		}
		if err := unix.Mount(fs.Type, fs.Path, fs.Type, 0, ""); err != nil {
			if errors.Is(err, unix.EBUSY) && fs.Mounted() {
				continue // mounted by someone else meanwhile
			}
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", fs.Type, fs.Path, err))
			continue
		}
		mounted = append(mounted, fs)
	}
	return mounted, errors.Join(errs...)
}

// Sysctl reads /proc/sys/name (e.g. "kernel/kptr_restrict") without its
// trailing newline, "" when it cannot.
func Sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Release is the running kernel's release (uname -r), "" when it cannot be
// read.
func Release() string {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return ""
	}
	return unix.ByteSliceToString(uts.Release[:])
}

// ReleaseAtLeast reports whether release (as Release gives it) is
// major.minor or later; false when it does not parse.
func ReleaseAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
