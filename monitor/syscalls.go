package monitor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/armorhost/kubearmor/event"
	"golang.org/x/sys/unix"
)

// Scope is a set of visibility scopes, upstream's hostVisibility values.
type Scope uint32

// Scope bits: the SCOPE_* constants of monitor.bpf.c (generated).
const (
	ScopeProcess      = Scope(monitorBPFScopeSCOPE_PROCESS)
	ScopeFile         = Scope(monitorBPFScopeSCOPE_FILE)
	ScopeNetwork      = Scope(monitorBPFScopeSCOPE_NETWORK)
	ScopeCapabilities = Scope(monitorBPFScopeSCOPE_CAPABILITIES)

	ScopeAll = ScopeProcess | ScopeFile | ScopeNetwork | ScopeCapabilities
)

// ParseVisibility reads upstream's visibility string ("process,file",
// "default", "none", ...). Like upstream it matches substrings, so "dns"
// and "ima" are accepted and ignored.
func ParseVisibility(s string) (Scope, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "none":
		return 0, nil
	case "default":
		return ScopeAll, nil
	}
	var sc Scope
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "process":
			sc |= ScopeProcess
		case "file":
			sc |= ScopeFile
		case "network":
			sc |= ScopeNetwork
		case "capabilities":
			sc |= ScopeCapabilities
		case "dns", "ima", "":
		default:
			return 0, fmt.Errorf("visibility %q: unknown scope %q (want process, file, network, capabilities, dns, ima, default or none)", s, part)
		}
	}
	return sc, nil
}

func (s Scope) String() string {
	var parts []string
	for _, n := range []struct {
		bit  Scope
		name string
	}{{ScopeProcess, "process"}, {ScopeFile, "file"}, {ScopeNetwork, "network"}, {ScopeCapabilities, "capabilities"}} {
		if s&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// x86-64 syscall numbers (the kernel's, as golang.org/x/sys/unix has them;
// the monitor is built for amd64 only, gen.go).
const (
	sysOpen      = unix.SYS_OPEN
	sysSendto    = unix.SYS_SENDTO
	sysSendmsg   = unix.SYS_SENDMSG
	sysTruncate  = unix.SYS_TRUNCATE
	sysRename    = unix.SYS_RENAME
	sysMkdir     = unix.SYS_MKDIR
	sysLink      = unix.SYS_LINK
	sysSymlink   = unix.SYS_SYMLINK
	sysChmod     = unix.SYS_CHMOD
	sysMknod     = unix.SYS_MKNOD
	sysMkdirat   = unix.SYS_MKDIRAT
	sysMknodat   = unix.SYS_MKNODAT
	sysRenameat  = unix.SYS_RENAMEAT
	sysLinkat    = unix.SYS_LINKAT
	sysSymlinkat = unix.SYS_SYMLINKAT
	sysFchmodat  = unix.SYS_FCHMODAT
	sysSendmmsg  = unix.SYS_SENDMMSG
	sysRenameat2 = unix.SYS_RENAMEAT2
	sysFchmodat2 = unix.SYS_FCHMODAT2
	sysSocket    = unix.SYS_SOCKET
	sysConnect   = unix.SYS_CONNECT
	sysAccept    = unix.SYS_ACCEPT
	sysBind      = unix.SYS_BIND
	sysListen    = unix.SYS_LISTEN
	sysExecve    = unix.SYS_EXECVE
	sysRmdir     = unix.SYS_RMDIR
	sysUnlink    = unix.SYS_UNLINK
	sysChown     = unix.SYS_CHOWN
	sysPtrace    = unix.SYS_PTRACE
	sysSetuid    = unix.SYS_SETUID
	sysSetgid    = unix.SYS_SETGID
	sysSetreuid  = unix.SYS_SETREUID
	sysSetregid  = unix.SYS_SETREGID
	sysSetresuid = unix.SYS_SETRESUID
	sysSetresgid = unix.SYS_SETRESGID
	sysMount     = unix.SYS_MOUNT
	sysUmount2   = unix.SYS_UMOUNT2
	sysOpenat    = unix.SYS_OPENAT
	sysFchownat  = unix.SYS_FCHOWNAT
	sysUnlinkat  = unix.SYS_UNLINKAT
	sysAccept4   = unix.SYS_ACCEPT4
	sysExecveat  = unix.SYS_EXECVEAT
	sysOpenat2   = unix.SYS_OPENAT2
)

type exitKind uint8

const (
	exitFile exitKind = iota
	exitNet
	exitCred
	exitExec
	exitSend // a UDP datagram to port 53: a DNS query
)

// traced is one syscall the monitor can trace.
type traced struct {
	nr        uint32
	name      string // upstream's name: SYS_<NAME>
	scope     Scope
	exit      exitKind
	operation string
	// kname is the kernel's name where it differs from name: the
	// tracepoint is syscalls/sys_exit_<kname>, the 64-bit entry point
	// __x64_sys_<kname>.
	kname string
	// ia32 are the 32-bit entry points (int 0x80, sysenter) that reach the
	// same operation, registers in the ia32 layout. Syscall tracepoints do
	// not see them; the fexit path attaches them where the kernel has them.
	ia32 []string
	// inner is the kernel function that every entry of the syscall calls
	// with the syscall's arguments: the 64-bit and 32-bit entry points, the
	// 16-bit-id variants, socketcall(2). The fexit path attaches it instead
	// of the entry points: one trampoline for all of them, and no entry
	// point named twice in the kernel's BTF (Debian's 6.1 has the weak
	// stubs of kernel/sys_ni.c beside the network and credential wrappers).
	inner string
}

// kernelName is the syscall's name in the kernel's tracepoints and entry points.
func (t *traced) kernelName() string {
	if t.kname != "" {
		return t.kname
	}
	return t.name
}

// ia32Sys is the plain 32-bit entry point of the syscall named name.
func ia32Sys(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "__ia32_sys_" + n
	}
	return out
}

var tracedSyscalls = []traced{
	{nr: sysExecve, name: "execve", scope: ScopeProcess, exit: exitExec, operation: event.OpProcess, ia32: []string{"__ia32_compat_sys_execve"}},
	{nr: sysExecveat, name: "execveat", scope: ScopeProcess, exit: exitExec, operation: event.OpProcess, ia32: []string{"__ia32_compat_sys_execveat"}},

	{nr: sysOpen, name: "open", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: []string{"__ia32_compat_sys_open"}},
	{nr: sysOpenat, name: "openat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: []string{"__ia32_compat_sys_openat"}},
	{nr: sysOpenat2, name: "openat2", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("openat2")},
	{nr: sysUnlink, name: "unlink", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("unlink")},
	{nr: sysUnlinkat, name: "unlinkat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("unlinkat")},
	{nr: sysRmdir, name: "rmdir", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("rmdir")},
	{nr: sysChown, name: "chown", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("chown", "chown16")},
	{nr: sysFchownat, name: "fchownat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("fchownat")},
	// The namespace operations the fanotify tier cannot refuse: seen here,
	// they are decided by the user-space matcher (agent/match.go). For
	// link and rename the path reported is the existing name; for symlink
	// the new link's.
	{nr: sysTruncate, name: "truncate", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: []string{"__ia32_compat_sys_truncate", "__ia32_sys_ia32_truncate64"}},
	{nr: sysMkdir, name: "mkdir", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("mkdir")},
	{nr: sysMkdirat, name: "mkdirat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("mkdirat")},
	{nr: sysMknod, name: "mknod", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("mknod")},
	{nr: sysMknodat, name: "mknodat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("mknodat")},
	{nr: sysSymlink, name: "symlink", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("symlink")},
	{nr: sysSymlinkat, name: "symlinkat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("symlinkat")},
	{nr: sysLink, name: "link", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("link")},
	{nr: sysLinkat, name: "linkat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("linkat")},
	{nr: sysRename, name: "rename", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("rename")},
	{nr: sysRenameat, name: "renameat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("renameat")},
	{nr: sysRenameat2, name: "renameat2", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("renameat2")},
	{nr: sysChmod, name: "chmod", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("chmod")},
	{nr: sysFchmodat, name: "fchmodat", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("fchmodat")},
	{nr: sysFchmodat2, name: "fchmodat2", scope: ScopeFile, exit: exitFile, operation: event.OpFile, ia32: ia32Sys("fchmodat2")}, // Linux 6.6+

	{nr: sysSocket, name: "socket", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_socket"},
	{nr: sysConnect, name: "connect", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_connect"},
	{nr: sysBind, name: "bind", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_bind"},
	{nr: sysListen, name: "listen", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_listen"},
	{nr: sysAccept, name: "accept", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_accept4"}, // 32-bit: socketcall only
	{nr: sysAccept4, name: "accept4", scope: ScopeNetwork, exit: exitNet, operation: event.OpNetwork, inner: "__sys_accept4"},
	// DNS queries, upstream's kfunc=UDP_SENDMSG logs.
	{nr: sysSendto, name: "sendto", scope: ScopeNetwork, exit: exitSend, operation: event.OpNetwork, inner: "__sys_sendto"},
	{nr: sysSendmsg, name: "sendmsg", scope: ScopeNetwork, exit: exitSend, operation: event.OpNetwork, inner: "__sys_sendmsg"},
	{nr: sysSendmmsg, name: "sendmmsg", scope: ScopeNetwork, exit: exitSend, operation: event.OpNetwork, inner: "__sys_sendmmsg"},

	// Upstream puts these in the capabilities scope. The 32-bit ABI has
	// 16-bit id variants besides the 32-bit ones (the inner functions see
	// them all).
	{nr: sysSetuid, name: "setuid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setuid"},
	{nr: sysSetgid, name: "setgid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setgid"},
	{nr: sysSetreuid, name: "setreuid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setreuid"},
	{nr: sysSetregid, name: "setregid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setregid"},
	{nr: sysSetresuid, name: "setresuid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setresuid"},
	{nr: sysSetresgid, name: "setresgid", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, inner: "__sys_setresgid"},
	{nr: sysPtrace, name: "ptrace", scope: ScopeCapabilities, exit: exitCred, operation: event.OpProcess, ia32: []string{"__ia32_compat_sys_ptrace"}},
	{nr: sysMount, name: "mount", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, ia32: ia32Sys("mount")},
	// umount2 is the kernel's umount; the 32-bit oldumount(path) is umount2
	// with its flags register unset (reported as found).
	{nr: sysUmount2, name: "umount2", kname: "umount", scope: ScopeCapabilities, exit: exitCred, operation: event.OpSyscall, ia32: ia32Sys("umount", "oldumount")},
}

// tracedByNr and syscallNames are indexed by syscall number: every
// record asks for its syscall, and an array index is a fraction of a map
// access (which showed in profiles of the per-event path).
var tracedByNr, syscallNames = func() (byNr []*traced, names []string) {
	top := uint32(0)
	for _, t := range tracedSyscalls {
		top = max(top, t.nr)
	}
	byNr, names = make([]*traced, top+1), make([]string, top+1)
	for i := range tracedSyscalls {
		t := &tracedSyscalls[i]
		byNr[t.nr] = t
		names[t.nr] = "SYS_" + strings.ToUpper(t.name)
	}
	return byNr, names
}()

// tracedOf is the traced syscall numbered nr, or nil.
func tracedOf(nr uint32) *traced {
	if int(nr) < len(tracedByNr) {
		return tracedByNr[nr]
	}
	return nil
}

// SyscallName is upstream's name for an x86-64 syscall number of the traced
// set ("SYS_OPENAT"); others print as "SYS_<nr>".
func SyscallName(nr uint32) string {
	if int(nr) < len(syscallNames) && syscallNames[nr] != "" {
		return syscallNames[nr]
	}
	return "SYS_" + strconv.FormatUint(uint64(nr), 10)
}
