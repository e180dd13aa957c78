package agent

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

func ruleSet(t *testing.T, spec string, postures hostpolicy.Postures) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, hostpolicytest.HostPolicy("p", spec))
}

func TestMatcher(t *testing.T) {
	exec := func(exe string) *event.Event {
		return &event.Event{Operation: event.OpProcess, Syscall: "SYS_EXECVE", Resource: exe}
	}
	open := func(path, flags string) *event.Event {
		return &event.Event{Operation: event.OpFile, Syscall: "SYS_OPENAT", Resource: path, Data: "syscall=SYS_OPENAT fd=-100 flags=" + flags}
	}
	sock := func(res string) *event.Event {
		return &event.Event{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Resource: res}
	}
	setuid := func() *event.Event {
		return &event.Event{Operation: event.OpSyscall, Syscall: "SYS_SETUID", Data: "syscall=SYS_SETUID userid=0"}
	}
	unlink := func(path string) *event.Event {
		return &event.Event{Operation: event.OpSyscall, Syscall: "SYS_UNLINKAT", Resource: path}
	}
	for _, tc := range []struct {
		name           string
		spec           string
		kernel         bool
		ev             *event.Event
		proc, parent   string
		want           string // "" = no alert; else "action policy" or "action DefaultPosture"
		postureBlocked bool
	}{
		{name: "audit exec path", spec: "  action: Audit\n  process:\n    matchPaths:\n    - path: /usr/bin/sleep\n",
			ev: exec("/usr/bin/sleep 1"), proc: "/usr/bin/sleep", want: "Audit p"},
		{name: "audit exec other path", spec: "  action: Audit\n  process:\n    matchPaths:\n    - path: /usr/bin/sleep\n",
			ev: exec("/usr/bin/ls"), proc: "/usr/bin/ls"},
		{name: "kernel decides process audit", kernel: true, spec: "  action: Audit\n  process:\n    matchPaths:\n    - path: /usr/bin/sleep\n",
			ev: exec("/usr/bin/sleep"), proc: "/usr/bin/sleep"},
		{name: "unenforced block is Audit (Block)", spec: "  process:\n    matchPaths:\n    - path: /usr/bin/sleep\n",
			ev: exec("/usr/bin/sleep"), proc: "/usr/bin/sleep", want: "Audit (Block) p"},
		{name: "execname", spec: "  action: Audit\n  process:\n    matchPaths:\n    - execname: sleep\n",
			ev: exec("/bin/sleep"), proc: "/bin/sleep", want: "Audit p"},
		{name: "fromSource parent", spec: "  action: Audit\n  process:\n    matchPaths:\n    - path: /bin/ls\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/bash", want: "Audit p"},
		{name: "fromSource other parent", spec: "  action: Audit\n  process:\n    matchPaths:\n    - path: /bin/ls\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/sh"},
		{name: "dir non-recursive", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n",
			ev: open("/etc/ssh/sshd_config", "O_RDONLY"), proc: "/bin/cat"},
		{name: "dir non-recursive direct", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n",
			ev: open("/etc/hosts", "O_RDONLY"), proc: "/bin/cat", want: "Audit p"},
		{name: "dir recursive", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n",
			ev: open("/etc/ssh/sshd_config", "O_RDONLY"), proc: "/bin/cat", want: "Audit p"},
		{name: "pattern", spec: "  action: Audit\n  file:\n    matchPatterns:\n    - pattern: /tmp/*.key\n",
			ev: open("/tmp/a.key", "O_RDONLY"), proc: "/bin/cat", want: "Audit p"},
		{name: "pattern does not cross slash", spec: "  action: Audit\n  file:\n    matchPatterns:\n    - pattern: /tmp/*.key\n",
			ev: open("/tmp/d/a.key", "O_RDONLY"), proc: "/bin/cat"},
		{name: "readOnly ignores reads", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n",
			ev: open("/etc/hosts", "O_RDONLY"), proc: "/bin/cat"},
		{name: "readOnly catches writes", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n",
			ev: open("/etc/hosts", "O_WRONLY|O_TRUNC"), proc: "/bin/sh", want: "Audit p"},
		{name: "file fromSource is the opener", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: /bin/cat\n",
			ev: open("/etc/hosts", "O_RDONLY"), proc: "/bin/cat", parent: "/bin/bash", want: "Audit p"},
		{name: "network udp", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: udp\n",
			ev: sock("domain=AF_INET type=SOCK_DGRAM protocol=0"), proc: "/bin/nc", want: "Audit p"},
		{name: "network tcp vs udp", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: udp\n",
			ev: sock("domain=AF_INET type=SOCK_STREAM protocol=TCP"), proc: "/bin/nc"},
		{name: "network raw type with a protocol", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: raw\n",
			ev: sock("domain=AF_INET type=SOCK_RAW protocol=ICMP"), proc: "/bin/ping", want: "Audit p"},
		{name: "block on the directory beats audit on the file", spec: "  file:\n    matchPaths:\n    - path: /etc/hosts\n      action: Audit\n    matchDirectories:\n    - dir: /etc/\n      action: Block\n",
			ev: open("/etc/hosts", "O_RDONLY"), proc: "/bin/cat", want: "Audit (Block) p"},
		{name: "terminal condition unmet", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      pts: false\n",
			ev: open("/etc/hosts", "O_RDONLY"), proc: "/bin/cat"},
		{name: "network all", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: all\n",
			ev: sock("domain=AF_INET6 type=SOCK_STREAM protocol=TCP"), proc: "/bin/nc", want: "Audit p"},
		{name: "unix sockets have no protocol", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: all\n",
			ev: sock("domain=AF_UNIX type=SOCK_STREAM protocol=0"), proc: "/bin/nc"},
		{name: "allow-list miss, audit posture", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", want: "Audit DefaultPosture"},
		{name: "allow-list hit", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: exec("/bin/date"), proc: "/bin/date"},
		{name: "allow-list of another source", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/sh"},
		{name: "allow-list of this source", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/bash", want: "Audit DefaultPosture"},
		{name: "allow-list, block posture unenforced", spec: "  action: Allow\n  file:\n    matchPaths:\n    - path: /etc/hosts\n",
			ev: open("/etc/passwd", "O_RDONLY"), proc: "/bin/cat", want: "Audit (Block) DefaultPosture", postureBlocked: true},
		{name: "process allow-list leaves files alone", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: open("/etc/passwd", "O_RDONLY"), proc: "/bin/cat"},
		{name: "syscall rule", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n",
			ev: setuid(), proc: "/usr/bin/sudo", want: "Audit p"},
		{name: "syscall rule with kernel enforcer", kernel: true, spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n",
			ev: setuid(), proc: "/usr/bin/sudo", want: "Audit p"},
		{name: "syscall fromSource dir", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n      fromSource:\n      - dir: /usr/bin/\n",
			ev: setuid(), proc: "/usr/bin/sudo", want: "Audit p"},
		{name: "syscall fromSource dir miss", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n      fromSource:\n      - dir: /usr/bin/\n",
			ev: setuid(), proc: "/usr/sbin/x"},
		{name: "syscall path honoured", spec: "  syscalls:\n    matchPaths:\n    - syscall: [unlinkat]\n      path: /home/\n      recursive: true\n",
			ev: unlink("/tmp/dummy"), proc: "/bin/rm"},
		{name: "syscall path recursive", spec: "  syscalls:\n    matchPaths:\n    - syscall: [unlinkat]\n      path: /home/\n      recursive: true\n",
			ev: unlink("/home/u/f"), proc: "/bin/rm", want: "Audit p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			postures := hostpolicy.Postures{}
			if tc.postureBlocked {
				postures.File = "block"
			}
			m := newMatcher(ruleSet(t, tc.spec, postures), tc.kernel)
			v, ok := m.match(tc.ev, tc.proc, tc.parent)
			got := ""
			if ok {
				name := "DefaultPosture"
				if v.rule != nil {
					name = v.rule.Policy
				}
				got = v.action + " " + name
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSocketOf(t *testing.T) {
	type st struct {
		typ, proto string
		ok         bool
	}
	for res, want := range map[string]st{
		"domain=AF_INET type=SOCK_STREAM protocol=TCP":             {"stream", "tcp", true},
		"domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK protocol=0": {"stream", "tcp", true},
		"domain=AF_INET type=SOCK_DGRAM protocol=UDP":              {"dgram", "udp", true},
		"domain=AF_INET type=SOCK_DGRAM protocol=0":                {"dgram", "udp", true},
		"domain=AF_INET type=SOCK_RAW protocol=ICMP":               {"raw", "icmp", true},
		"domain=AF_INET6 type=SOCK_RAW protocol=ICMPv6":            {"raw", "icmpv6", true},
		"domain=AF_INET6 type=SOCK_RAW protocol=255":               {"raw", "", true},
		"domain=AF_UNIX type=SOCK_DGRAM protocol=0":                {},
		"domain=AF_PACKET type=SOCK_RAW protocol=0":                {},
		"sa_family=AF_INET sin_port=53 sin_addr=1.1.1.1":           {},
	} {
		typ, proto, ok := socketOf(res)
		if got := (st{typ, proto, ok}); got != want {
			t.Errorf("%q: got %+v, want %+v", res, got, want)
		}
	}
}

// TestMatcherUndecided: beside a kernel enforcer, the Audit rules it
// reports it cannot decide are matched on telemetry (through the engine);
// its other rules, and operations that failed, are not.
func TestMatcherUndecided(t *testing.T) {
	rs := ruleSet(t, `  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/bin/curl
      action: Audit
    - protocol: udp
      action: Audit
`, hostpolicy.Postures{})
	var tcp uint32
	for _, r := range rs.Rules {
		if r.Value == "tcp" {
			tcp = r.ID
		}
	}
	m := newMatcherFor(rs, true, map[uint32]string{tcp: "fromSource network rules are not enforced"}, false)
	sock := func(res string, retval int64) *event.Event {
		return &event.Event{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Resource: res, Retval: retval}
	}
	for _, tc := range []struct {
		name  string
		ev    *event.Event
		proc  string
		match bool
	}{
		{"undecided rule, its source", sock("domain=AF_INET type=SOCK_STREAM|SOCK_CLOEXEC protocol=HOPOPT", 3), "/usr/bin/curl", true},
		{"undecided rule, another source", sock("domain=AF_INET type=SOCK_STREAM protocol=TCP", 3), "/usr/bin/wget", false},
		{"undecided rule, the socket failed", sock("domain=AF_INET type=SOCK_STREAM protocol=TCP", -1), "/usr/bin/curl", false},
		{"a rule the kernel decides", sock("domain=AF_INET type=SOCK_DGRAM protocol=UDP", 3), "/usr/bin/curl", false},
	} {
		v, ok := m.match(tc.ev, tc.proc, "")
		if ok != tc.match || ok && (v.rule == nil || v.rule.ID != tcp || v.action != hostpolicy.ActionAudit) {
			t.Errorf("%s: got %+v %v, want match=%v", tc.name, v, ok, tc.match)
		}
	}
}

// TestMatcherFileOps: the file operations other than open are decided as
// writes, on telemetry, wherever the kernel cannot refuse them: with no
// enforcer and beside one that sees only opens (fanotify), Block rules as
// "Audit (Block)" and Audit rules as Audit; beside an enforcer that decides
// them (BPF-LSM, AppArmor), never. A readOnly rule covers them too.
func TestMatcherFileOps(t *testing.T) {
	rs := ruleSet(t, `  file:
    matchPaths:
    - path: /etc/blocked
    - path: /etc/audited
      action: Audit
    - path: /etc/ro
      readOnly: true
    matchDirectories:
    - dir: /srv/d/
      recursive: true
`, hostpolicy.Postures{})
	op := func(sys, path, data string) *event.Event {
		return &event.Event{Operation: event.OpFile, Syscall: sys, Resource: path, Data: "syscall=" + sys + data}
	}
	type tier struct{ kernel, opensOnly bool }
	none, fanotify, bpflsm := tier{}, tier{true, true}, tier{true, false}
	for _, tc := range []struct {
		name string
		tier tier
		ev   *event.Event
		want string
	}{
		{"unlink blocked, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/blocked", " flags="), "Audit (Block) p"},
		{"unlink audited, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/audited", " flags="), "Audit p"},
		{"rename readOnly, fanotify", fanotify, op("SYS_RENAMEAT2", "/etc/ro", " fd=-100"), "Audit (Block) p"},
		{"chmod readOnly, fanotify", fanotify, op("SYS_FCHMODAT", "/etc/ro", " fd=-100 mode=0777"), "Audit (Block) p"},
		{"read readOnly, fanotify: fanotify's", fanotify, op("SYS_OPENAT", "/etc/ro", " fd=-100 flags=O_RDONLY"), ""},
		{"open blocked, fanotify: fanotify's", fanotify, op("SYS_OPENAT", "/etc/blocked", " fd=-100 flags=O_RDONLY"), ""},
		{"rmdir the directory itself, fanotify", fanotify, op("SYS_RMDIR", "/srv/d", ""), "Audit (Block) p"},
		{"mkdir inside, fanotify", fanotify, op("SYS_MKDIRAT", "/srv/d/x/y", " fd=-100 mode=0755"), "Audit (Block) p"},
		{"unlink elsewhere, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/other", " flags="), ""},
		{"unlink failed, fanotify", fanotify, func() *event.Event { e := op("SYS_UNLINKAT", "/etc/blocked", " flags="); e.Retval = -2; return e }(), ""},
		{"truncate blocked, monitor only", none, op("SYS_TRUNCATE", "/etc/blocked", ""), "Audit (Block) p"},
		{"chown audited, monitor only", none, op("SYS_FCHOWNAT", "/etc/audited", " userid=0 group=0 mode=0"), "Audit p"},
		{"unlink blocked, BPF-LSM decides", bpflsm, op("SYS_UNLINKAT", "/etc/blocked", " flags="), ""},
		{"unlink audited, BPF-LSM decides", bpflsm, op("SYS_UNLINKAT", "/etc/audited", " flags="), ""},
	} {
		m := newMatcherFor(rs, tc.tier.kernel, nil, tc.tier.opensOnly)
		v, ok := m.match(tc.ev, "/bin/rm", "/bin/sh")
		got := ""
		if ok && v.rule != nil {
			got = v.action + " " + v.rule.Policy
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
