package hostpolicy

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The table's numbers are the kernel's.
func TestVocabularyNumbers(t *testing.T) {
	sock := map[string]int{"stream": unix.SOCK_STREAM, "dgram": unix.SOCK_DGRAM, "raw": unix.SOCK_RAW,
		"rdm": unix.SOCK_RDM, "seqpacket": unix.SOCK_SEQPACKET, "dccp": unix.SOCK_DCCP, "packet": unix.SOCK_PACKET}
	if len(sock) != len(SocketTypes) {
		t.Errorf("%d socket types, want %d", len(SocketTypes), len(sock))
	}
	for _, st := range SocketTypes {
		if n, ok := sock[st.Name]; !ok || uint32(n) != st.Number {
			t.Errorf("socket type %s = %d, want %d", st.Name, st.Number, n)
		}
	}
	ip := map[string]int{"icmp": unix.IPPROTO_ICMP, "tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP,
		"icmpv6": unix.IPPROTO_ICMPV6, "sctp": unix.IPPROTO_SCTP}
	for name, n := range ip {
		if p, ok := IPProtocolNamed(name); !ok || p.Number != uint32(n) {
			t.Errorf("protocol %s = %+v, want number %d", name, p, n)
		}
	}
	caps := map[string]int{"chown": unix.CAP_CHOWN, "net_raw": unix.CAP_NET_RAW, "sys_admin": unix.CAP_SYS_ADMIN,
		"mac_admin": unix.CAP_MAC_ADMIN, "bpf": unix.CAP_BPF, "checkpoint_restore": unix.CAP_CHECKPOINT_RESTORE}
	for name, n := range caps {
		if got, ok := CapabilityNumber(name); !ok || got != uint32(n) {
			t.Errorf("capability %s = %d, want %d", name, got, n)
		}
	}
	if len(Capabilities) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capabilities, the kernel headers know %d", len(Capabilities), unix.CAP_LAST_CAP+1)
	}
	if Capabilities[capMacAdmin] != "mac_admin" {
		t.Errorf("capMacAdmin is %s", Capabilities[capMacAdmin])
	}
}

func TestVocabularyText(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{SocketResource(1, 6), "protocol=TCP type=SOCK_STREAM"},
		{SocketResource(3, 58), "protocol=IPv6-ICMP type=SOCK_RAW"},
		{SocketResource(11, 0), "protocol=HOPOPT type=11"},
		{SocketResource(2, 200), "protocol=200 type=SOCK_DGRAM"},
		{CapabilityConst(13), "CAP_NET_RAW"},
		{CapabilityConst(99), "CAP_99"},
		{CanonicalCapability("CAP_NET_RAW"), "net_raw"},
		{ImpliedProtocol("stream") + ImpliedProtocol("dgram") + ImpliedProtocol("raw"), "tcpudp"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	for _, p := range []string{"tcp", "stream", "all", "icmpv6", "packet"} {
		if !IsProtocol(p) {
			t.Errorf("IsProtocol(%q) = false", p)
		}
	}
	for _, p := range []string{"", "igmp", "TCP", "hopopt"} {
		if IsProtocol(p) {
			t.Errorf("IsProtocol(%q) = true", p)
		}
	}
}
