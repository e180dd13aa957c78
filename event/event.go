// Package event defines the one record every kernel-side producer (the system
// monitor and the kernel enforcers) hands to the agent pipeline. Producers
// decode their own ring-buffer layouts into it; the pipeline enriches it
// (process table, container identity) and turns it into an alert or a log.
package event

import "time"

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

	// Set by kernel enforcers: which rule decided (0 for default posture) and how.
	Verdict  Verdict
	RuleID   uint32
	Enforcer string // "BPFLSM", "AppArmor", "eBPF Monitor", ...
	// Suppressed counts identical events the kernel's rate limit dropped
	// since the last one it reported (same rule, process, hook and verdict).
	Suppressed uint32
}
