package runtimetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// HostLock takes, for the whole run of a test package, the machine-wide
// lock that keeps apart the test packages running containers (this lab:
// dockerd, containerd, runc, overlayfs) and those running a fanotify
// permission group on the host's filesystems (enforce/fanotify, and
// cmd/kubearmor, whose agents choose that tier on a host without BPF-LSM or
// AppArmor). Side by side on Linux 6.18 the two deadlocked (CI on dbfce33
// and 072e064): the tier marked the lab's overlays with the filesystem
// holding their layers, which the tier no longer does
// (enforce/fanotify.TestStackedNeverMarked). The lock stays because the
// tier's allow-list tests still make every open on the host wait for a test
// process, which is no place to time a container's start. Tests in one
// package run one after another, so the lock is per package, never per
// test: a second flock in the same process would wait on the first; and a
// package with fuzz targets takes it only where it starts the lab, since
// fuzz workers run TestMain too. unlock releases it.
func HostLock() (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "kubearmor-tests-host.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host test lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("host test lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// RunLocked is m.Run under HostLock, for the TestMain of a package that
// holds the lock for its whole run; it returns the exit code (1 when the
// lock cannot be taken).
func RunLocked(m *testing.M) int {
	unlock, err := HostLock()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unlock()
	return m.Run()
}
