package monitor

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dnsQuestion is the first question of a DNS query.
type dnsQuestion struct {
	name  string // "example.com", no trailing dot
	qtype uint16
}

// dnsQuery reads the first question of a DNS query message (RFC 1035 §4.1).
// ok is false for anything else sent to port 53: a response, a message
// without a question, a compressed or cut-off name.
func dnsQuery(msg []byte) (q dnsQuestion, ok bool) {
	const header = 12
	if len(msg) < header || msg[2]&0x80 != 0 || binary.BigEndian.Uint16(msg[4:6]) == 0 {
		return q, false // short, a response (QR set), or no question
	}
	var labels []string
	i := header
	for {
		if i >= len(msg) {
			return q, false
		}
		n := int(msg[i])
		i++
		if n == 0 {
			break
		}
		// A query's first name has nothing before it to point to: a
		// pointer (or the reserved 0x40/0x80 label types) is not a query.
		if n > 63 || i+n > len(msg) {
			return q, false
		}
		labels = append(labels, string(msg[i:i+n]))
		i += n
	}
	if i+2 > len(msg) {
		return q, false
	}
	q.name = strings.Join(labels, ".")
	q.qtype = binary.BigEndian.Uint16(msg[i:])
	return q, true
}

var qtypeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
	33: "SRV", 35: "NAPTR", 43: "DS", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 255: "ANY",
}

// QtypeName is "A" for 1; unknown types print as their number.
func QtypeName(t uint16) string {
	if n, ok := qtypeNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// dnsEvent is upstream's DNS visibility log (KubeArmor's
// getting-started/dns_visibility.md): Resource "sa_family=AF_INET
// sin_port=53" (the server's address is in Data) and Data
// "kfunc=UDP_SENDMSG,domain=example.com,daddr=10.43.0.10,qtype=A", from the
// raw destination sockaddr and the query.
func dnsEvent(sa []byte, q dnsQuestion) (resource, data string) {
	var daddr string
	if len(sa) >= 2 {
		family := uint64(binary.LittleEndian.Uint16(sa))
		port := 0
		if len(sa) >= 4 {
			port = int(binary.BigEndian.Uint16(sa[2:4]))
		}
		resource = "sa_family=" + FamilyName(family)
		switch {
		case family == unix.AF_INET && len(sa) >= 8:
			resource += " sin_port=" + strconv.Itoa(port)
			daddr = netip.AddrFrom4([4]byte(sa[4:8])).String()
		case family == unix.AF_INET6 && len(sa) >= 24:
			resource += " sin6_port=" + strconv.Itoa(port)
			daddr = netip.AddrFrom16([16]byte(sa[8:24])).Unmap().String()
		}
	}
	return resource, "kfunc=UDP_SENDMSG,domain=" + q.name + ",daddr=" + daddr + ",qtype=" + QtypeName(q.qtype)
}
