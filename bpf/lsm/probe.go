package bpflsm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

const (
	securityFS = "/sys/kernel/security"
	bpfFS      = "/sys/fs/bpf"
)

// Supported reports whether BPF-LSM enforcement works on this kernel, and
// why not. Either usual check alone lies: a kernel may list bpf in the
// active LSMs and still refuse LSM programs (EPERM), and a kernel booted
// without bpf in lsm= attaches LSM programs that never run. So it checks
// the list, then loads and attaches a probe and sees it fire on its own
// open(2). It mounts securityfs and bpffs when they are missing.
func Supported() error {
	if err := ensureMounts(); err != nil {
		return err
	}
	lsms, err := os.ReadFile(securityFS + "/lsm")
	if err != nil {
		return fmt.Errorf("bpflsm: read active LSMs: %w", err)
	}
	if !hasLSM(string(lsms), "bpf") {
		return fmt.Errorf("bpflsm: bpf is not an active LSM (%s); boot with lsm=...,bpf", strings.TrimSpace(string(lsms)))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("bpflsm: remove memlock limit: %w", err)
	}
	spec, err := loadProbe()
	if err != nil {
		return fmt.Errorf("bpflsm: probe spec: %w", err)
	}
	if err := spec.Variables["target_tgid"].Set(uint32(os.Getpid())); err != nil {
		return fmt.Errorf("bpflsm: probe: %w", err)
	}
	var objs probeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("bpflsm: the kernel refuses LSM programs: %w", err)
	}
	defer objs.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: objs.ProbeFileOpen})
	if err != nil {
		return fmt.Errorf("bpflsm: attach probe: %w", err)
	}
	defer l.Close()
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("bpflsm: probe open: %w", err)
	}
	f.Close()
	var seen uint64
	if err := objs.Seen.Lookup(uint32(0), &seen); err != nil {
		return fmt.Errorf("bpflsm: read probe: %w", err)
	}
	if seen == 0 {
		return errors.New("bpflsm: LSM programs attach but do not run")
	}
	return nil
}

func hasLSM(list, name string) bool {
	for _, l := range strings.Split(strings.TrimSpace(list), ",") {
		if l == name {
			return true
		}
	}
	return false
}

// ensureMounts mounts securityfs and bpffs where they belong if nothing is
// mounted there yet.
func ensureMounts() error {
	for _, m := range []struct {
		dir, fstype string
		magic       int64
	}{
		{securityFS, "securityfs", unix.SECURITYFS_MAGIC},
		{bpfFS, "bpf", unix.BPF_FS_MAGIC},
	} {
		var st unix.Statfs_t
		if err := unix.Statfs(m.dir, &st); err == nil && int64(st.Type) == m.magic {
			continue
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("bpflsm: mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}
