package bpflsm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/kernelfs"
)

// securityFS is where the active LSMs and the lockdown state are read.
var securityFS = kernelfs.Securityfs.Path

// Supported reports whether BPF-LSM enforcement works on this kernel, and
// why not. Either usual check alone lies: a kernel may list bpf in the
// active LSMs and still refuse LSM programs (EPERM), and a kernel booted
// without bpf in lsm= attaches LSM programs that never run. So it checks
// the list, then loads and attaches a probe and sees it fire on its own
// open(2). It mounts securityfs and bpffs when they are missing.
func Supported() error {
	if _, err := kernelfs.Ensure(kernelfs.Securityfs, kernelfs.BPF); err != nil {
		return fmt.Errorf("bpflsm: %w", err)
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
		return fmt.Errorf("bpflsm: the kernel refuses LSM programs: %w", refused(err, securityFS+"/lockdown"))
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

// memlockHint is what cilium/ebpf appends to an EPERM from a program load.
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// refusal is a program load the kernel refused, with a reason that does
// not send the reader the wrong way.
type refusal struct {
	text string
	err  error
}

func (r *refusal) Error() string { return r.text }
func (r *refusal) Unwrap() error { return r.err }

// refused rewrites cilium/ebpf's EPERM hint: the memlock limit was lifted
// before the load (and kernels since 5.11 charge BPF memory to the cgroup,
// not RLIMIT_MEMLOCK), so raising it cannot help. An EPERM to root here
// means the kernel, or a security policy over it, does not let LSM
// programs load; the lockdown mode (from lockdownFile) is named when set.
func refused(err error, lockdownFile string) error {
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	text := strings.Replace(err.Error(), memlockHint, "", 1) +
		" (the memlock limit is already lifted: this kernel does not let LSM programs load"
	if b, rerr := os.ReadFile(lockdownFile); rerr == nil {
		if mode := lockdownMode(string(b)); mode != "" && mode != "none" {
			text += "; kernel lockdown: " + mode
		}
	}
	return &refusal{text: text + ")", err: err}
}

// lockdownMode is the selected mode of /sys/kernel/security/lockdown
// ("none [integrity] confidentiality" gives "integrity").
func lockdownMode(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return ""
}
