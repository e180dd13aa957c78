package monitor

import (
	"encoding/binary"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/armorhost/kubearmor/hostpolicy"
	"golang.org/x/sys/unix"
)

// The functions here turn raw syscall arguments into the Resource and Data
// texts of upstream KubeArmor's logs (reference §2.9-2.10). They are pure so
// that the exact strings are pinned by table tests.

type flagName struct {
	bit  uint64
	name string
}

// Open flags in bit order after the access mode. O_SYNC and O_TMPFILE are
// multi-bit; they are printed instead of the single bits they include.
var openFlagNames = []flagName{
	{unix.O_CREAT, "O_CREAT"},
	{unix.O_EXCL, "O_EXCL"},
	{unix.O_NOCTTY, "O_NOCTTY"},
	{unix.O_TRUNC, "O_TRUNC"},
	{unix.O_APPEND, "O_APPEND"},
	{unix.O_NONBLOCK, "O_NONBLOCK"},
	{unix.O_DSYNC, "O_DSYNC"},
	{unix.O_ASYNC, "O_ASYNC"},
	{unix.O_DIRECT, "O_DIRECT"},
	{0o100000, "O_LARGEFILE"}, // x86-64 value; unix.O_LARGEFILE is 0 there
	{unix.O_DIRECTORY, "O_DIRECTORY"},
	{unix.O_NOFOLLOW, "O_NOFOLLOW"},
	{unix.O_NOATIME, "O_NOATIME"},
	{unix.O_CLOEXEC, "O_CLOEXEC"},
	{unix.O_SYNC &^ unix.O_DSYNC, "O_SYNC"},
	{unix.O_PATH, "O_PATH"},
	{unix.O_TMPFILE &^ unix.O_DIRECTORY, "O_TMPFILE"},
}

// OpenFlags formats open(2) flags: "O_RDONLY|O_CLOEXEC", "O_WRONLY|O_CREAT|O_TRUNC".
func OpenFlags(flags uint64) string {
	var buf [64]byte
	return string(appendOpenFlags(buf[:0], flags))
}

// appendOpenFlags appends OpenFlags(flags) to b.
func appendOpenFlags(b []byte, flags uint64) []byte {
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		b = append(b, "O_RDONLY"...)
	case unix.O_WRONLY:
		b = append(b, "O_WRONLY"...)
	case unix.O_RDWR:
		b = append(b, "O_RDWR"...)
	default:
		b = append(b, "O_ACCMODE"...)
	}
	rest := flags &^ unix.O_ACCMODE
	if rest&unix.O_SYNC == unix.O_SYNC {
		rest &^= unix.O_DSYNC // printed as part of O_SYNC
	}
	if rest&unix.O_TMPFILE == unix.O_TMPFILE {
		rest &^= unix.O_DIRECTORY
	}
	for _, f := range openFlagNames {
		if rest&f.bit == f.bit {
			b = append(b, '|')
			b = append(b, f.name...)
			rest &^= f.bit
		}
	}
	if rest != 0 {
		b = strconv.AppendUint(append(b, "|0x"...), rest, 16)
	}
	return b
}

func joinFlags(v uint64, names []flagName, zero string) string {
	if v == 0 {
		return zero
	}
	var parts []string
	for _, f := range names {
		if v&f.bit == f.bit {
			parts = append(parts, f.name)
			v &^= f.bit
		}
	}
	if v != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(v, 16))
	}
	return strings.Join(parts, "|")
}

var execveatFlagNames = []flagName{
	{unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_NOFOLLOW"},
	{unix.AT_EMPTY_PATH, "AT_EMPTY_PATH"},
}

// ExecveatFlags formats execveat(2) flags: "0", "AT_EMPTY_PATH".
func ExecveatFlags(flags uint64) string { return joinFlags(flags, execveatFlagNames, "0") }

// UnlinkatFlags formats unlinkat(2) flags: "AT_REMOVEDIR" or "".
func UnlinkatFlags(flags uint64) string {
	return joinFlags(flags, []flagName{{unix.AT_REMOVEDIR, "AT_REMOVEDIR"}}, "")
}

var familyNames = map[uint64]string{
	unix.AF_UNSPEC: "AF_UNSPEC", unix.AF_UNIX: "AF_UNIX", unix.AF_INET: "AF_INET",
	unix.AF_AX25: "AF_AX25", unix.AF_IPX: "AF_IPX", unix.AF_APPLETALK: "AF_APPLETALK",
	unix.AF_NETROM: "AF_NETROM", unix.AF_BRIDGE: "AF_BRIDGE", unix.AF_ATMPVC: "AF_ATMPVC",
	unix.AF_X25: "AF_X25", unix.AF_INET6: "AF_INET6", unix.AF_ROSE: "AF_ROSE",
	unix.AF_DECnet: "AF_DECnet", unix.AF_NETBEUI: "AF_NETBEUI", unix.AF_SECURITY: "AF_SECURITY",
	unix.AF_KEY: "AF_KEY", unix.AF_NETLINK: "AF_NETLINK", unix.AF_PACKET: "AF_PACKET",
	unix.AF_ASH: "AF_ASH", unix.AF_ECONET: "AF_ECONET", unix.AF_ATMSVC: "AF_ATMSVC",
	unix.AF_RDS: "AF_RDS", unix.AF_SNA: "AF_SNA", unix.AF_IRDA: "AF_IRDA",
	unix.AF_PPPOX: "AF_PPPOX", unix.AF_WANPIPE: "AF_WANPIPE", unix.AF_LLC: "AF_LLC",
	unix.AF_IB: "AF_IB", unix.AF_MPLS: "AF_MPLS", unix.AF_CAN: "AF_CAN",
	unix.AF_TIPC: "AF_TIPC", unix.AF_BLUETOOTH: "AF_BLUETOOTH", unix.AF_IUCV: "AF_IUCV",
	unix.AF_RXRPC: "AF_RXRPC", unix.AF_ISDN: "AF_ISDN", unix.AF_PHONET: "AF_PHONET",
	unix.AF_IEEE802154: "AF_IEEE802154", unix.AF_CAIF: "AF_CAIF", unix.AF_ALG: "AF_ALG",
	unix.AF_NFC: "AF_NFC", unix.AF_VSOCK: "AF_VSOCK", unix.AF_KCM: "AF_KCM",
	unix.AF_QIPCRTR: "AF_QIPCRTR", unix.AF_SMC: "AF_SMC", unix.AF_XDP: "AF_XDP",
}

// FamilyName is "AF_INET" for 2; unknown families print as their number.
func FamilyName(family uint64) string {
	if n, ok := familyNames[family]; ok {
		return n
	}
	return strconv.FormatUint(family, 10)
}

// sockTypeMask is the kernel's SOCK_TYPE_MASK: the type without the
// SOCK_NONBLOCK and SOCK_CLOEXEC flags socket(2) takes beside it.
const sockTypeMask = 0xf

// SocketType formats socket(2)'s type argument: "SOCK_STREAM|SOCK_NONBLOCK".
func SocketType(t uint64) string {
	base := t & sockTypeMask
	name := hostpolicy.SocketTypeConst(uint32(base))
	if t&unix.SOCK_NONBLOCK != 0 {
		name += "|SOCK_NONBLOCK"
	}
	if t&unix.SOCK_CLOEXEC != 0 {
		name += "|SOCK_CLOEXEC"
	}
	return name
}

// ProtocolName is "TCP" for 6; unknown protocols print as their number.
func ProtocolName(p uint64) string {
	if p > math.MaxUint32 {
		return strconv.FormatUint(p, 10)
	}
	return hostpolicy.IPProtocolKeyword(uint32(p))
}

// SocketResource is the Resource of a socket(2) event:
// "domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK protocol=TCP".
func SocketResource(domain, typ, protocol uint64) string {
	return "domain=" + FamilyName(domain) + " type=" + SocketType(typ) + " protocol=" + ProtocolName(protocol)
}

// SockaddrResource is the Resource of connect/bind/accept events, from the
// raw struct sockaddr bytes: "sa_family=AF_INET sin_port=53 sin_addr=10.0.0.10",
// "sa_family=AF_INET6 sin6_port=443 sin6_addr=::1", "sa_family=AF_UNIX
// sun_path=/run/x.sock" (an abstract socket's leading NUL prints as '@').
func SockaddrResource(raw []byte) string {
	if len(raw) < 2 {
		return ""
	}
	family := uint64(binary.LittleEndian.Uint16(raw))
	s := "sa_family=" + FamilyName(family)
	switch family {
	case unix.AF_INET:
		if len(raw) >= 8 {
			addr := netip.AddrFrom4([4]byte(raw[4:8]))
			s += " sin_port=" + strconv.Itoa(int(binary.BigEndian.Uint16(raw[2:4]))) + " sin_addr=" + addr.String()
		}
	case unix.AF_INET6:
		if len(raw) >= 24 {
			addr := netip.AddrFrom16([16]byte(raw[8:24]))
			s += " sin6_port=" + strconv.Itoa(int(binary.BigEndian.Uint16(raw[2:4]))) + " sin6_addr=" + addr.String()
		}
	case unix.AF_UNIX:
		path := raw[2:]
		if len(path) > 0 && path[0] == 0 {
			s += " sun_path=@" + string(trimNUL(path[1:]))
		} else {
			s += " sun_path=" + string(trimNUL(path))
		}
	}
	return s
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

var ptraceRequestNames = map[uint64]string{
	0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
	4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
	8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
	14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
	18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 24: "PTRACE_SYSCALL",
	0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO",
	0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
	0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
	0x4209: "PTRACE_PEEKSIGINFO",
}

// PtraceRequest is "PTRACE_ATTACH" for 16; unknown requests print as their number.
func PtraceRequest(req uint64) string {
	if n, ok := ptraceRequestNames[req]; ok {
		return n
	}
	return strconv.FormatUint(req, 10)
}

// appendMode appends a file mode argument in octal, as chmod(1) takes
// it: "0755".
func appendMode(b []byte, v uint64) []byte { return strconv.AppendUint(append(b, '0'), v&0o7777, 8) }

// appendI32 appends a syscall argument the kernel declares as int (fd,
// uid_t with -1 meaning "unchanged", ...).
func appendI32(b []byte, v uint64) []byte { return strconv.AppendInt(b, int64(int32(uint32(v))), 10) }

// syscallData builds the Data text for a syscall record from its number,
// raw arguments and the strings the kernel copied (mount's source, target,
// ... in argument order). ptraceTarget is the exe of ptrace's target pid.
func syscallData(nr uint32, args *[6]uint64, strs []string, ptraceTarget string) string {
	var buf [128]byte
	return string(appendSyscallData(buf[:0], nr, args, strs, ptraceTarget))
}

// appendSyscallData appends syscallData's text to b: the text is built in
// one buffer and made a string once, where concatenating its parts made a
// string of each.
func appendSyscallData(b []byte, nr uint32, args *[6]uint64, strs []string, ptraceTarget string) []byte {
	b = append(b, "syscall="...)
	b = append(b, SyscallName(nr)...)
	switch nr {
	case sysOpen:
		b = appendOpenFlags(append(b, " flags="...), args[1])
	case sysOpenat, sysOpenat2:
		// openat2's open_how pointer was replaced by its flags in the kernel.
		b = appendI32(append(b, " fd="...), args[0])
		b = appendOpenFlags(append(b, " flags="...), args[2])
	case sysUnlinkat:
		b = append(append(b, " flags="...), UnlinkatFlags(args[2])...)
	case sysMkdir, sysChmod, sysMknod:
		b = appendMode(append(b, " mode="...), args[1])
	case sysMkdirat, sysFchmodat, sysFchmodat2, sysMknodat:
		b = appendI32(append(b, " fd="...), args[0])
		b = appendMode(append(b, " mode="...), args[2])
	case sysRenameat, sysRenameat2, sysLinkat:
		b = appendI32(append(b, " fd="...), args[0])
	case sysSymlinkat:
		b = appendI32(append(b, " fd="...), args[1])
	case sysChown:
		b = appendI32(append(b, " userid="...), args[1])
		b = appendI32(append(b, " group="...), args[2])
	case sysFchownat:
		b = appendI32(append(b, " userid="...), args[2])
		b = appendI32(append(b, " group="...), args[3])
		b = appendI32(append(b, " mode="...), args[4])
	case sysConnect, sysBind, sysListen, sysAccept, sysAccept4:
		b = appendI32(append(b, " fd="...), args[0])
	case sysExecveat:
		b = appendI32(append(b, " fd="...), args[0])
		b = append(append(b, " flag="...), ExecveatFlags(args[4])...)
	case sysSetuid, sysSetgid:
		b = appendI32(append(b, " userid="...), args[0])
	case sysSetreuid:
		b = appendI32(append(b, " ruid="...), args[0])
		b = appendI32(append(b, " euid="...), args[1])
	case sysSetregid:
		b = appendI32(append(b, " rgid="...), args[0])
		b = appendI32(append(b, " egid="...), args[1])
	case sysSetresuid:
		b = appendI32(append(b, " ruid="...), args[0])
		b = appendI32(append(b, " euid="...), args[1])
		b = appendI32(append(b, " suid="...), args[2])
	case sysSetresgid:
		b = appendI32(append(b, " rgid="...), args[0])
		b = appendI32(append(b, " egid="...), args[1])
		b = appendI32(append(b, " sgid="...), args[2])
	case sysPtrace:
		b = append(append(b, " request="...), PtraceRequest(args[0])...)
		b = appendI32(append(b, " pid="...), args[1])
		b = append(append(b, " process="...), ptraceTarget...)
	case sysMount:
		b = append(append(b, " source="...), at(strs, 0)...)
		b = append(append(b, " target="...), at(strs, 1)...)
		b = append(append(b, " filesystem="...), at(strs, 2)...)
		b = strconv.AppendUint(append(b, " mountflag="...), args[3], 10)
		b = append(append(b, " data="...), at(strs, 3)...)
	case sysUmount2:
		b = append(append(b, " target="...), at(strs, 0)...)
		b = strconv.AppendUint(append(b, " flag="...), args[1]&0xffffffff, 10)
	}
	return b
}

func at(strs []string, i int) string {
	if i < len(strs) {
		return strs[i]
	}
	return ""
}
