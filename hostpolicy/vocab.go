package hostpolicy

import (
	"strconv"
	"strings"
)

// The network and capability vocabulary, said once: the names a policy
// uses, the numbers the kernel uses and the text upstream's alerts and logs
// print. Validation, the decision engine, every enforcer, the monitor and
// the matcher look them up here.

// SocketType is a socket type matchProtocols can name.
type SocketType struct {
	Name   string // the policy's spelling: "stream"
	Number uint32 // SOCK_*
	Const  string // as upstream prints it: "SOCK_STREAM"
}

// SocketTypes are the socket types of linux/net.h a policy can name.
var SocketTypes = []SocketType{
	{"stream", 1, "SOCK_STREAM"},
	{"dgram", 2, "SOCK_DGRAM"},
	{"raw", 3, "SOCK_RAW"},
	{"rdm", 4, "SOCK_RDM"},
	{"seqpacket", 5, "SOCK_SEQPACKET"},
	{"dccp", 6, "SOCK_DCCP"},
	{"packet", 10, "SOCK_PACKET"},
}

// IPProtocol is an IP protocol as the kernel numbers it and upstream prints it.
type IPProtocol struct {
	Name    string // the policy's spelling ("tcp"); "" for one a policy cannot name
	Number  uint32 // IPPROTO_*
	Keyword string // the IANA keyword upstream prints: "TCP", "IPv6-ICMP"
}

// IPProtocols are the protocols events name; those with a Name are the ones
// matchProtocols accepts.
var IPProtocols = []IPProtocol{
	{"", 0, "HOPOPT"},
	{"icmp", 1, "ICMP"},
	{"", 2, "IGMP"},
	{"", 4, "IPv4"},
	{"tcp", 6, "TCP"},
	{"udp", 17, "UDP"},
	{"", 41, "IPv6"},
	{"", 47, "GRE"},
	{"", 50, "ESP"},
	{"", 51, "AH"},
	{"icmpv6", 58, "IPv6-ICMP"},
	{"sctp", 132, "SCTP"},
	{"", 136, "UDPLite"},
	{"", 255, "RAW"},
}

// ProtocolAll is the matchProtocols value that matches every socket.
const ProtocolAll = "all"

// SocketTypeNamed is the socket type a policy calls name ("stream").
func SocketTypeNamed(name string) (SocketType, bool) {
	for _, t := range SocketTypes {
		if t.Name == name {
			return t, true
		}
	}
	return SocketType{}, false
}

// SocketTypeNumbered is the socket type with kernel number n.
func SocketTypeNumbered(n uint32) (SocketType, bool) {
	for _, t := range SocketTypes {
		if t.Number == n {
			return t, true
		}
	}
	return SocketType{}, false
}

// IPProtocolNamed is the IP protocol a policy calls name ("tcp").
func IPProtocolNamed(name string) (IPProtocol, bool) {
	for _, p := range IPProtocols {
		if p.Name != "" && p.Name == name {
			return p, true
		}
	}
	return IPProtocol{}, false
}

// IPProtocolNumbered is the IP protocol with number n.
func IPProtocolNumbered(n uint32) (IPProtocol, bool) {
	for _, p := range IPProtocols {
		if p.Number == n {
			return p, true
		}
	}
	return IPProtocol{}, false
}

// IsProtocol reports whether matchProtocols accepts name: a socket type, a
// named IP protocol or "all".
func IsProtocol(name string) bool {
	_, st := SocketTypeNamed(name)
	_, ip := IPProtocolNamed(name)
	return st || ip || name == ProtocolAll
}

// ImpliedProtocol is the IP protocol the kernel picks for an AF_INET or
// AF_INET6 socket created with protocol 0: TCP for stream sockets, UDP for
// datagram sockets, none ("") otherwise.
func ImpliedProtocol(sockType string) string {
	switch sockType {
	case "stream":
		return "tcp"
	case "dgram":
		return "udp"
	}
	return ""
}

// Capabilities are the capabilities of linux/capability.h, by number
// (CAP_CHOWN is 0), in the policy's spelling.
var Capabilities = [...]string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill",
	"setgid", "setuid", "setpcap", "linux_immutable", "net_bind_service",
	"net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
	"sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
	"sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
	"block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// capMacAdmin is the last capability upstream's CRD accepts (reference §1.4).
const capMacAdmin = 33

// CanonicalCapability is a capability in the policy's spelling: net_raw,
// NET_RAW, cap_net_raw and CAP_NET_RAW are all "net_raw".
func CanonicalCapability(c string) string {
	return strings.TrimPrefix(strings.ToLower(c), "cap_")
}

// CapabilityNumber is the CAP_* number of a capability in any spelling
// CanonicalCapability accepts.
func CapabilityNumber(name string) (uint32, bool) {
	name = CanonicalCapability(name)
	for i, c := range Capabilities {
		if c == name {
			return uint32(i), true
		}
	}
	return 0, false
}

// CapabilityConst is how upstream prints capability n: "CAP_NET_RAW", or
// "CAP_<n>" for a number this table does not know.
func CapabilityConst(n uint32) string {
	if int(n) < len(Capabilities) {
		return "CAP_" + strings.ToUpper(Capabilities[n])
	}
	return "CAP_" + strconv.FormatUint(uint64(n), 10)
}

// SocketTypeConst is how upstream prints socket type n ("SOCK_STREAM"), or
// the number when the table does not know it.
func SocketTypeConst(n uint32) string {
	if t, ok := SocketTypeNumbered(n); ok {
		return t.Const
	}
	return strconv.FormatUint(uint64(n), 10)
}

// IPProtocolKeyword is how upstream prints IP protocol n ("TCP"), or the
// number when the table does not know it.
func IPProtocolKeyword(n uint32) string {
	if p, ok := IPProtocolNumbered(n); ok {
		return p.Keyword
	}
	return strconv.FormatUint(uint64(n), 10)
}

// SocketResource is the Resource of an enforcer's network alert, as
// upstream's BPF-LSM enforcer writes it: "protocol=TCP type=SOCK_STREAM".
func SocketResource(sockType, proto uint32) string {
	return "protocol=" + IPProtocolKeyword(proto) + " type=" + SocketTypeConst(sockType)
}
