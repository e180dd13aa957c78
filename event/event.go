// Package event defines the one record every kernel-side producer (the system
// monitor and the kernel enforcers) hands to the agent pipeline. Producers
// decode their own ring-buffer layouts into it; the pipeline enriches it
// (process table, container identity) and turns it into an alert or a log.
package event

import (
	"time"

	"golang.org/x/sys/unix"
)

// Verdict is what a kernel enforcer decided, if anything.
type Verdict uint8

const (
	VerdictNone         Verdict = iota // telemetry: no enforcer decided
	VerdictAudit                       // a rule with action Audit matched; allowed
	VerdictBlock                       // a rule with action Block matched; denied
	VerdictPostureAudit                // allow-list miss under audit posture; allowed
	VerdictPostureBlock                // allow-list miss under block posture; denied
)

// Operation values, as they appear in alerts and logs.
const (
	OpProcess      = "Process"
	OpFile         = "File"
	OpNetwork      = "Network"
	OpCapabilities = "Capabilities"
	OpSyscall      = "Syscall"
)

// Event is one thing that happened on the host, as seen by the kernel.
type Event struct {
	Time time.Time

	// Process identity in the initial namespaces, and inside the task's own
	// pid namespace (equal on the host).
	HostPID, HostPPID uint32
	PID, PPID         uint32
	UID               uint32
	Comm              string

	// Container attribution keys; host tasks carry the host's values.
	CgroupID uint64
	PidNS    uint32
	MntNS    uint32

	// What the process is, when the kernel knows it (full exe path, parent's exe).
	Exe       string
	ParentExe string
	TTY       string
	Cwd       string
	Args      []string // exec only: argv[1:]

	Operation string // one of the Op* constants
	Syscall   string // e.g. "SYS_OPENAT"; empty for LSM-hook events
	Resource  string // path, protocol description, capability name, ...
	Data      string // upstream's Data string, e.g. "lsm=SECURITY_BPRM_CHECK" or "syscall=SYS_OPENAT flags=O_RDONLY"
	Retval    int64  // syscall return value or hook verdict (negative errno on failure)

	// The operation as the kernel's record gave it, filled by every decoder
	// next to Resource and Data: consumers (the user-space matcher) decide
	// from these, never by parsing the display strings back. Internal only:
	// none of it crosses the feeder's wire, whose messages are upstream's.
	Path       string // OpFile: the file operated on, whole (the exec's program is Exe)
	File       File   // OpFile: what is done to Path
	Socket     Socket // OpNetwork: the socket, as far as the source tells
	Capability uint32 // OpCapabilities: the CAP_* number (hostpolicy.Capabilities)

	// Set by kernel enforcers: which rule decided (0 for default posture) and how.
	Verdict  Verdict
	RuleID   uint32
	Enforcer string // "BPFLSM", "AppArmor", "eBPF Monitor", ...
	// Suppressed counts identical events the kernel's rate limit dropped
	// since the last one it reported (same rule, process, hook and verdict).
	Suppressed uint32
}

// FileOp is the kind of a file operation.
type FileOp uint8

const (
	FileOpUnknown FileOp = iota // the source does not say: decided as a change
	FileOpen                    // the open(2) family: File.Flags is the access asked for
	FileChange                  // unlink, rename, mkdir, chmod, chown, truncate, ...: changes the file system
)

// File is what a file operation does to its path.
type File struct {
	Op    FileOp
	Flags uint32 // FileOpen: the open(2) flags
	// Dir: the operation names Path as a directory (an open with
	// O_DIRECTORY, mkdir, rmdir, unlinkat with AT_REMOVEDIR), which then
	// matches its own directory rules.
	Dir bool
}

// Write reports whether the operation may change the file or the file
// system, as readOnly rules see it: every change, and an open asking for
// write access (O_WRONLY, O_RDWR, or the access mode 3 that needs both),
// creation or truncation.
func (f File) Write() bool {
	if f.Op != FileOpen {
		return true
	}
	return f.Flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC|unix.O_CREAT) != 0
}

// Socket is a socket as the call that made it (or an enforcer's hook)
// gave it; 0 is "not told" for Family and Type.
type Socket struct {
	Family   uint16 // AF_*
	Type     uint32 // SOCK_*, without SOCK_NONBLOCK and SOCK_CLOEXEC
	Protocol uint32 // IPPROTO_* as asked: 0 is the type's default
}
