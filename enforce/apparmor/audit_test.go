package apparmor

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

func TestVerdictFromAuditRecord(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{}, testPolicies...)
	_, sources := render(rs)
	e := &Enforcer{}
	e.state.Store(&state{rs: rs, table: decide.New(rs, func(r *hostpolicy.Rule) bool { return Unenforced(r) != "" }), sources: sources})
	id := func(value string) uint32 { return hostpolicytest.RuleID(t, rs, value) }
	const pre = `audit: type=1400 audit(1700000000.123:45): `
	for _, c := range []struct {
		line     string
		ok       bool
		op       string
		resource string
		verdict  event.Verdict
		rule     uint32
	}{
		{pre + `apparmor="DENIED" operation="exec" profile="kubearmor-host" name="/usr/bin/wget" pid=1 comm="sh" requested_mask="x" denied_mask="x" fsuid=0 ouid=0`,
			true, event.OpProcess, "/usr/bin/wget", event.VerdictBlock, id("/usr/bin/wget")},
		{pre + `apparmor="DENIED" operation="open" profile="kubearmor-host" name="/etc/shadow" pid=1 comm="tee" requested_mask="wc" denied_mask="wc" fsuid=0 ouid=0`,
			true, event.OpFile, "/etc/shadow", event.VerdictBlock, id("/etc/shadow")},
		// hex-encoded name (it has a space)
		{pre + `apparmor="DENIED" operation="exec" profile="kubearmor-host" name=2F6F70742F6F6464206E616D652F5B785D2A pid=1 comm="sh" requested_mask="x" denied_mask="x"`,
			true, event.OpProcess, "/opt/odd name/[x]*", event.VerdictBlock, id("/opt/odd name/[x]*")},
		{pre + `apparmor="DENIED" operation="create" profile="kubearmor-host" pid=1 comm="nc" family="inet" sock_type="dgram" protocol=17 requested_mask="create" denied_mask="create"`,
			true, event.OpNetwork, "protocol=UDP type=SOCK_DGRAM", event.VerdictBlock, id("udp")},
		{pre + `apparmor="DENIED" operation="capable" profile="kubearmor-host" pid=1 comm="ping" capability=13  capname="net_raw"`,
			true, event.OpCapabilities, "CAP_NET_RAW", event.VerdictBlock, id("net_raw")},
		{pre + `apparmor="AUDIT" operation="open" profile="kubearmor-host" name="/etc/passwd" pid=1 comm="cat" requested_mask="r" fsuid=0 ouid=0`,
			true, event.OpFile, "/etc/passwd", event.VerdictAudit, id("/etc/passwd")},
		// a directory opened by itself: AppArmor names it with a trailing "/"
		{pre + `apparmor="DENIED" operation="open" profile="kubearmor-host" name="/root/.ssh/" pid=1 comm="ls" requested_mask="r" denied_mask="r" fsuid=0 ouid=0`,
			true, event.OpFile, "/root/.ssh/", event.VerdictBlock, id("/root/.ssh/")},
		// a fromSource profile: the rule for that program
		{pre + `apparmor="DENIED" operation="exec" profile="kubearmor-src-usr-bin-bash" name="/srv/bin/x" pid=1 comm="bash" requested_mask="x" denied_mask="x"`,
			true, event.OpProcess, "/srv/bin/x", event.VerdictBlock, id("/srv/bin/")},
		// allow-list miss in appd's profile
		{pre + `apparmor="DENIED" operation="open" profile="kubearmor-src-usr-sbin-appd" name="/etc/passwd2" pid=1 comm="appd" requested_mask="r" denied_mask="r"`,
			true, event.OpFile, "/etc/passwd2", event.VerdictPostureBlock, 0},
		// not ours
		{pre + `apparmor="DENIED" operation="open" profile="/usr/sbin/cupsd" name="/etc/shadow" pid=1 comm="cupsd" requested_mask="r"`, false, "", "", 0, 0},
		{pre + `apparmor="STATUS" operation="profile_replace" profile="unconfined" name="kubearmor-host" pid=1 comm="apparmor_parser"`, false, "", "", 0, 0},
	} {
		ev, ok := e.verdict(c.line)
		if ok != c.ok {
			t.Errorf("%s: ok=%v", c.line, ok)
			continue
		}
		if !ok {
			continue
		}
		if ev.Operation != c.op || ev.Resource != c.resource || ev.Verdict != c.verdict || ev.RuleID != c.rule ||
			ev.Enforcer != Name || (c.verdict != event.VerdictAudit) != (ev.Retval < 0) {
			t.Errorf("%s:\n got %+v\nwant op=%s resource=%s verdict=%d rule=%d", c.line, ev, c.op, c.resource, c.verdict, c.rule)
		}
	}
}

// TestAuditRecordFields: the event's structured fields come from the
// record beside its display strings.
func TestAuditRecordFields(t *testing.T) {
	rs := compile(t, hostpolicy.Postures{}, testPolicies...)
	_, sources := render(rs)
	e := &Enforcer{}
	e.state.Store(&state{rs: rs, table: decide.New(rs, func(r *hostpolicy.Rule) bool { return Unenforced(r) != "" }), sources: sources})
	const pre = `audit: type=1400 audit(1700000000.123:45): apparmor="DENIED" profile="kubearmor-host" pid=1 `
	for _, c := range []struct {
		line string
		want event.Event
	}{
		{pre + `operation="create" comm="nc" family="inet" sock_type="dgram" protocol=17 requested_mask="create" denied_mask="create"`,
			event.Event{Socket: event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_UDP}}},
		{pre + `operation="capable" comm="ping" capability=13  capname="net_raw"`, event.Event{Capability: unix.CAP_NET_RAW}},
		{pre + `operation="open" name="/root/.ssh/" comm="ls" requested_mask="r" denied_mask="r" fsuid=0 ouid=0`,
			event.Event{Path: "/root/.ssh", File: event.File{Dir: true}}},
		{pre + `operation="open" name="/etc/shadow" comm="tee" requested_mask="wc" denied_mask="wc" fsuid=0 ouid=0`,
			event.Event{Path: "/etc/shadow"}},
	} {
		ev, ok := e.verdict(c.line)
		if !ok || ev.Path != c.want.Path || ev.File != c.want.File || ev.Socket != c.want.Socket || ev.Capability != c.want.Capability {
			t.Errorf("%s: ok=%v path %q %+v %+v cap %d", c.line, ok, ev.Path, ev.File, ev.Socket, ev.Capability)
		}
	}
}

// The kernel sends audit records without padding them to the netlink
// alignment; every record must still come out, whatever its length.
func TestAVCRecordsUnpadded(t *testing.T) {
	msg := func(typ uint16, text string, pad bool) []byte {
		b := make([]byte, 16, 16+len(text)+4)
		binary.NativeEndian.PutUint32(b[0:], uint32(16+len(text)))
		binary.NativeEndian.PutUint16(b[4:], typ)
		b = append(b, text...)
		for pad && len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var dgram []byte
	dgram = append(dgram, msg(auditAVC, `apparmor="DENIED" a`, true)...)
	dgram = append(dgram, msg(1300, `syscall`, true)...)
	dgram = append(dgram, msg(auditAVC, `apparmor="DENIED" b1`, false)...)
	got := avcRecords(dgram)
	if len(got) != 2 || got[0] != `apparmor="DENIED" a` || got[1] != `apparmor="DENIED" b1` {
		t.Errorf("records: %q", got)
	}
	if got := avcRecords(msg(auditAVC, `apparmor="DENIED" odd`, false)); len(got) != 1 {
		t.Errorf("one unpadded record: %q", got)
	}
}
