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
	name      string // tracepoint suffix: sys_enter_<name>
	scope     Scope
	exit      exitKind
	operation string
}

var tracedSyscalls = []traced{
	{sysExecve, "execve", ScopeProcess, exitExec, event.OpProcess},
	{sysExecveat, "execveat", ScopeProcess, exitExec, event.OpProcess},

	{sysOpen, "open", ScopeFile, exitFile, event.OpFile},
	{sysOpenat, "openat", ScopeFile, exitFile, event.OpFile},
	{sysOpenat2, "openat2", ScopeFile, exitFile, event.OpFile},
	{sysUnlink, "unlink", ScopeFile, exitFile, event.OpFile},
	{sysUnlinkat, "unlinkat", ScopeFile, exitFile, event.OpFile},
	{sysRmdir, "rmdir", ScopeFile, exitFile, event.OpFile},
	{sysChown, "chown", ScopeFile, exitFile, event.OpFile},
	{sysFchownat, "fchownat", ScopeFile, exitFile, event.OpFile},
	// The namespace operations the fanotify tier cannot refuse: seen here,
	// they are decided by the user-space matcher (agent/match.go). For
	// link and rename the path reported is the existing name; for symlink
	// the new link's.
	{sysTruncate, "truncate", ScopeFile, exitFile, event.OpFile},
	{sysMkdir, "mkdir", ScopeFile, exitFile, event.OpFile},
	{sysMkdirat, "mkdirat", ScopeFile, exitFile, event.OpFile},
	{sysMknod, "mknod", ScopeFile, exitFile, event.OpFile},
	{sysMknodat, "mknodat", ScopeFile, exitFile, event.OpFile},
	{sysSymlink, "symlink", ScopeFile, exitFile, event.OpFile},
	{sysSymlinkat, "symlinkat", ScopeFile, exitFile, event.OpFile},
	{sysLink, "link", ScopeFile, exitFile, event.OpFile},
	{sysLinkat, "linkat", ScopeFile, exitFile, event.OpFile},
	{sysRename, "rename", ScopeFile, exitFile, event.OpFile},
	{sysRenameat, "renameat", ScopeFile, exitFile, event.OpFile},
	{sysRenameat2, "renameat2", ScopeFile, exitFile, event.OpFile},
	{sysChmod, "chmod", ScopeFile, exitFile, event.OpFile},
	{sysFchmodat, "fchmodat", ScopeFile, exitFile, event.OpFile},
	{sysFchmodat2, "fchmodat2", ScopeFile, exitFile, event.OpFile}, // Linux 6.6+

	{sysSocket, "socket", ScopeNetwork, exitNet, event.OpNetwork},
	{sysConnect, "connect", ScopeNetwork, exitNet, event.OpNetwork},
	{sysBind, "bind", ScopeNetwork, exitNet, event.OpNetwork},
	{sysListen, "listen", ScopeNetwork, exitNet, event.OpNetwork},
	{sysAccept, "accept", ScopeNetwork, exitNet, event.OpNetwork},
	{sysAccept4, "accept4", ScopeNetwork, exitNet, event.OpNetwork},
	// DNS queries, upstream's kfunc=UDP_SENDMSG logs.
	{sysSendto, "sendto", ScopeNetwork, exitSend, event.OpNetwork},
	{sysSendmsg, "sendmsg", ScopeNetwork, exitSend, event.OpNetwork},
	{sysSendmmsg, "sendmmsg", ScopeNetwork, exitSend, event.OpNetwork},

	// Upstream puts these in the capabilities scope.
	{sysSetuid, "setuid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysSetgid, "setgid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysSetreuid, "setreuid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysSetregid, "setregid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysSetresuid, "setresuid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysSetresgid, "setresgid", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysPtrace, "ptrace", ScopeCapabilities, exitCred, event.OpProcess},
	{sysMount, "mount", ScopeCapabilities, exitCred, event.OpSyscall},
	{sysUmount2, "umount2", ScopeCapabilities, exitCred, event.OpSyscall},
}

var tracedByNr = func() map[uint32]*traced {
	m := make(map[uint32]*traced, len(tracedSyscalls))
	for i := range tracedSyscalls {
		m[tracedSyscalls[i].nr] = &tracedSyscalls[i]
	}
	return m
}()

var syscallNames = func() map[uint32]string {
	m := make(map[uint32]string, len(tracedSyscalls))
	for _, t := range tracedSyscalls {
		m[t.nr] = "SYS_" + strings.ToUpper(t.name)
	}
	return m
}()

// SyscallName is upstream's name for an x86-64 syscall number of the traced
// set ("SYS_OPENAT"); others print as "SYS_<nr>".
func SyscallName(nr uint32) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return "SYS_" + strconv.FormatUint(uint64(nr), 10)
}
