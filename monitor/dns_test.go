package monitor

import "testing"

func TestDNSQueryDecode(t *testing.T) {
	in4 := []byte{2, 0, 0, 53, 10, 43, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	in6 := append([]byte{10, 0, 0, 53, 0, 0, 0, 0}, make([]byte, 20)...)
	in6[23] = 1 // ::1
	for _, tt := range []struct {
		name     string
		sa, msg  []byte
		ok       bool
		res, dat string
	}{
		{"A over IPv4", in4, dnsMessage(1, "google.com", 1), true, "sa_family=AF_INET sin_port=53", "kfunc=UDP_SENDMSG,domain=google.com,daddr=10.43.0.10,qtype=A"},
		{"AAAA over IPv6", in6, dnsMessage(1, "a.b.c", 28), true, "sa_family=AF_INET6 sin6_port=53", "kfunc=UDP_SENDMSG,domain=a.b.c,daddr=::1,qtype=AAAA"},
		{"unknown type", in4, dnsMessage(1, "x", 99), true, "sa_family=AF_INET sin_port=53", "kfunc=UDP_SENDMSG,domain=x,daddr=10.43.0.10,qtype=99"},
		{"a response", in4, func() []byte { m := dnsMessage(1, "x", 1); m[2] |= 0x80; return m }(), false, "", ""},
		{"no question", in4, func() []byte { m := dnsMessage(1, "x", 1); m[5] = 0; return m }(), false, "", ""},
		{"short header", in4, []byte{1, 2, 3}, false, "", ""},
		{"cut-off name", in4, dnsMessage(1, "example.com", 1)[:16], false, "", ""},
		{"compression pointer", in4, append(dnsMessage(1, "", 1)[:12], 0xc0, 12, 0, 1, 0, 1), false, "", ""},
		{"no qtype", in4, dnsMessage(1, "x", 1)[:15], false, "", ""},
	} {
		q, ok := dnsQuery(tt.msg)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		if res, dat := dnsEvent(tt.sa, q); res != tt.res || dat != tt.dat {
			t.Errorf("%s: %q %q, want %q %q", tt.name, res, dat, tt.res, tt.dat)
		}
	}
}
