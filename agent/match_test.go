package agent

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
	"golang.org/x/sys/unix"
)

func ruleSet(t testing.TB, spec string, postures hostpolicy.Postures) *hostpolicy.RuleSet {
	t.Helper()
	return hostpolicytest.Compile(t, hostpolicy.Options{Host: "h", Postures: postures}, hostpolicytest.HostPolicy("p", spec))
}

func TestMatcher(t *testing.T) {
	exec := func(exe string) *event.Event {
		return &event.Event{Operation: event.OpProcess, Syscall: "SYS_EXECVE", Resource: exe}
	}
	// Events carry only their structured fields here: the matcher never
	// reads Resource or Data (TestMatcherReadsFields).
	open := func(path string, flags uint32) *event.Event {
		return &event.Event{Operation: event.OpFile, Syscall: "SYS_OPENAT", Path: path,
			File: event.File{Op: event.FileOpen, Flags: flags, Dir: flags&unix.O_DIRECTORY != 0}}
	}
	sock := func(family uint16, typ, proto uint32) *event.Event {
		return &event.Event{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Socket: event.Socket{Family: family, Type: typ, Protocol: proto}}
	}
	setuid := func() *event.Event {
		return &event.Event{Operation: event.OpSyscall, Syscall: "SYS_SETUID", Data: "syscall=SYS_SETUID userid=0"}
	}
	unlink := func(path string) *event.Event {
		return &event.Event{Operation: event.OpSyscall, Syscall: "SYS_UNLINKAT", Path: path}
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
			ev: open("/etc/ssh/sshd_config", unix.O_RDONLY), proc: "/bin/cat"},
		{name: "dir non-recursive direct", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n",
			ev: open("/etc/hosts", unix.O_RDONLY), proc: "/bin/cat", want: "Audit p"},
		{name: "dir recursive", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n",
			ev: open("/etc/ssh/sshd_config", unix.O_RDONLY), proc: "/bin/cat", want: "Audit p"},
		{name: "pattern", spec: "  action: Audit\n  file:\n    matchPatterns:\n    - pattern: /tmp/*.key\n",
			ev: open("/tmp/a.key", unix.O_RDONLY), proc: "/bin/cat", want: "Audit p"},
		{name: "pattern does not cross slash", spec: "  action: Audit\n  file:\n    matchPatterns:\n    - pattern: /tmp/*.key\n",
			ev: open("/tmp/d/a.key", unix.O_RDONLY), proc: "/bin/cat"},
		{name: "readOnly ignores reads", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n",
			ev: open("/etc/hosts", unix.O_RDONLY), proc: "/bin/cat"},
		{name: "readOnly catches writes", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n",
			ev: open("/etc/hosts", unix.O_WRONLY|unix.O_TRUNC), proc: "/bin/sh", want: "Audit p"},
		{name: "file fromSource is the opener", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: /bin/cat\n",
			ev: open("/etc/hosts", unix.O_RDONLY), proc: "/bin/cat", parent: "/bin/bash", want: "Audit p"},
		{name: "readOnly: access mode 3 asks for read and write", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n",
			ev: open("/etc/hosts", unix.O_ACCMODE), proc: "/bin/sh", want: "Audit p"},
		{name: "a path with a space is one path", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /srv/my file\n",
			ev: open("/srv/my file", unix.O_RDONLY), proc: "/bin/cat", want: "Audit p"},
		{name: "a directory opened as one matches its own rule", spec: "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /srv/d/\n",
			ev: open("/srv/d", unix.O_RDONLY|unix.O_DIRECTORY), proc: "/bin/ls", want: "Audit p"},
		{name: "network udp", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: udp\n",
			ev: sock(unix.AF_INET, unix.SOCK_DGRAM, 0), proc: "/bin/nc", want: "Audit p"},
		{name: "network tcp vs udp", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: udp\n",
			ev: sock(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP), proc: "/bin/nc"},
		{name: "network raw type with a protocol", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: raw\n",
			ev: sock(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP), proc: "/bin/ping", want: "Audit p"},
		{name: "block on the directory beats audit on the file", spec: "  file:\n    matchPaths:\n    - path: /etc/hosts\n      action: Audit\n    matchDirectories:\n    - dir: /etc/\n      action: Block\n",
			ev: open("/etc/hosts", unix.O_RDONLY), proc: "/bin/cat", want: "Audit (Block) p"},
		{name: "terminal condition unmet", spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/hosts\n      pts: false\n",
			ev: open("/etc/hosts", unix.O_RDONLY), proc: "/bin/cat"},
		{name: "network all", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: all\n",
			ev: sock(unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_TCP), proc: "/bin/nc", want: "Audit p"},
		{name: "unix sockets have no protocol", spec: "  action: Audit\n  network:\n    matchProtocols:\n    - protocol: all\n",
			ev: sock(unix.AF_UNIX, unix.SOCK_STREAM, 0), proc: "/bin/nc"},
		{name: "allow-list miss, audit posture", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", want: "Audit DefaultPosture"},
		{name: "allow-list hit", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: exec("/bin/date"), proc: "/bin/date"},
		{name: "allow-list of another source", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/sh"},
		{name: "allow-list of this source", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n      fromSource:\n      - path: /bin/bash\n",
			ev: exec("/bin/ls"), proc: "/bin/ls", parent: "/bin/bash", want: "Audit DefaultPosture"},
		{name: "allow-list, block posture unenforced", spec: "  action: Allow\n  file:\n    matchPaths:\n    - path: /etc/hosts\n",
			ev: open("/etc/passwd", unix.O_RDONLY), proc: "/bin/cat", want: "Audit (Block) DefaultPosture", postureBlocked: true},
		{name: "process allow-list leaves files alone", spec: "  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
			ev: open("/etc/passwd", unix.O_RDONLY), proc: "/bin/cat"},
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
	for _, tc := range []struct {
		s    event.Socket
		want st
	}{
		{event.Socket{Family: unix.AF_INET, Type: unix.SOCK_STREAM, Protocol: unix.IPPROTO_TCP}, st{"stream", "tcp", true}},
		{event.Socket{Family: unix.AF_INET, Type: unix.SOCK_STREAM}, st{"stream", "tcp", true}},
		{event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_UDP}, st{"dgram", "udp", true}},
		{event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM}, st{"dgram", "udp", true}},
		{event.Socket{Family: unix.AF_INET, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP}, st{"raw", "icmp", true}},
		{event.Socket{Family: unix.AF_INET6, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMPV6}, st{"raw", "icmpv6", true}},
		{event.Socket{Family: unix.AF_INET6, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_RAW}, st{"raw", "", true}},
		{event.Socket{Family: unix.AF_INET, Type: 99, Protocol: unix.IPPROTO_TCP}, st{"", "tcp", true}},
		{event.Socket{Family: unix.AF_UNIX, Type: unix.SOCK_DGRAM}, st{}},
		{event.Socket{Family: unix.AF_PACKET, Type: unix.SOCK_RAW}, st{}},
		{event.Socket{}, st{}}, // connect, bind, ...: no socket told
	} {
		typ, proto, ok := socketOf(tc.s)
		if got := (st{typ, proto, ok}); got != tc.want {
			t.Errorf("%+v: got %+v, want %+v", tc.s, got, tc.want)
		}
	}
}

// TestMatcherReadsFields: the matcher decides from an event's structured
// fields; its display strings (Resource, Data) say nothing to it, even
// when they contradict the fields.
func TestMatcherReadsFields(t *testing.T) {
	rs := ruleSet(t, `  action: Audit
  file:
    matchPaths:
    - path: /etc/ro
      readOnly: true
    matchDirectories:
    - dir: /srv/d/
  network:
    matchProtocols:
    - protocol: udp
`, hostpolicy.Postures{})
	m := newMatcher(rs, false)
	for _, tc := range []struct {
		name string
		ev   event.Event
		want bool
	}{
		{"write in the fields, no Data", event.Event{Operation: event.OpFile, Path: "/etc/ro",
			File: event.File{Op: event.FileOpen, Flags: unix.O_WRONLY}}, true},
		{"read in the fields, Data says write", event.Event{Operation: event.OpFile, Path: "/etc/ro", Resource: "/etc/ro",
			Data: "syscall=SYS_OPENAT fd=-100 flags=O_WRONLY|O_CREAT|O_TRUNC", File: event.File{Op: event.FileOpen}}, false},
		{"a change in the fields, no Data", event.Event{Operation: event.OpFile, Path: "/etc/ro",
			File: event.File{Op: event.FileChange}}, true},
		{"path in the fields, Resource elsewhere", event.Event{Operation: event.OpFile, Path: "/etc/ro", Resource: "/tmp/x",
			File: event.File{Op: event.FileChange}}, true},
		{"Resource names the file, no Path", event.Event{Operation: event.OpFile, Resource: "/etc/ro",
			Data: "syscall=SYS_UNLINKAT flags=", File: event.File{Op: event.FileChange}}, false},
		{"directory in the fields, no Data", event.Event{Operation: event.OpFile, Path: "/srv/d",
			File: event.File{Op: event.FileChange, Dir: true}}, true},
		{"Data says AT_REMOVEDIR, fields say a file", event.Event{Operation: event.OpFile, Path: "/srv/d",
			Data: "syscall=SYS_UNLINKAT flags=AT_REMOVEDIR", File: event.File{Op: event.FileChange}}, false},
		{"udp socket in the fields, no Resource", event.Event{Operation: event.OpNetwork,
			Socket: event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM}}, true},
		{"Resource says udp, fields say nothing", event.Event{Operation: event.OpNetwork,
			Resource: "domain=AF_INET type=SOCK_DGRAM protocol=UDP"}, false},
	} {
		_, ok := m.match(&tc.ev, "/bin/sh", "")
		if ok != tc.want {
			t.Errorf("%s: alert %v, want %v", tc.name, ok, tc.want)
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
	tcp := hostpolicytest.RuleID(t, rs, "tcp")
	m := newMatcherFor(rs, true, map[uint32]string{tcp: "fromSource network rules are not enforced"}, false)
	sock := func(proto uint32, retval int64) *event.Event {
		typ := uint32(unix.SOCK_STREAM)
		if proto == unix.IPPROTO_UDP {
			typ = unix.SOCK_DGRAM
		}
		return &event.Event{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Retval: retval,
			Socket: event.Socket{Family: unix.AF_INET, Type: typ, Protocol: proto}}
	}
	for _, tc := range []struct {
		name  string
		ev    *event.Event
		proc  string
		match bool
	}{
		{"undecided rule, its source", sock(0, 3), "/usr/bin/curl", true},
		{"undecided rule, another source", sock(unix.IPPROTO_TCP, 3), "/usr/bin/wget", false},
		{"undecided rule, the socket failed", sock(unix.IPPROTO_TCP, -1), "/usr/bin/curl", false},
		{"a rule the kernel decides", sock(unix.IPPROTO_UDP, 3), "/usr/bin/curl", false},
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
	op := func(sys, path string, f event.File) *event.Event {
		return &event.Event{Operation: event.OpFile, Syscall: sys, Path: path, File: f}
	}
	change, dirChange := event.File{Op: event.FileChange}, event.File{Op: event.FileChange, Dir: true}
	read := event.File{Op: event.FileOpen, Flags: unix.O_RDONLY}
	type tier struct{ kernel, opensOnly bool }
	none, fanotify, bpflsm := tier{}, tier{true, true}, tier{true, false}
	for _, tc := range []struct {
		name string
		tier tier
		ev   *event.Event
		want string
	}{
		{"unlink blocked, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/blocked", change), "Audit (Block) p"},
		{"unlink audited, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/audited", change), "Audit p"},
		{"rename readOnly, fanotify", fanotify, op("SYS_RENAMEAT2", "/etc/ro", change), "Audit (Block) p"},
		{"chmod readOnly, fanotify", fanotify, op("SYS_FCHMODAT", "/etc/ro", change), "Audit (Block) p"},
		{"read readOnly, fanotify: fanotify's", fanotify, op("SYS_OPENAT", "/etc/ro", read), ""},
		{"open blocked, fanotify: fanotify's", fanotify, op("SYS_OPENAT", "/etc/blocked", read), ""},
		{"rmdir the directory itself, fanotify", fanotify, op("SYS_RMDIR", "/srv/d", dirChange), "Audit (Block) p"},
		{"mkdir inside, fanotify", fanotify, op("SYS_MKDIRAT", "/srv/d/x/y", dirChange), "Audit (Block) p"},
		{"unlink elsewhere, fanotify", fanotify, op("SYS_UNLINKAT", "/etc/other", change), ""},
		{"unlink failed, fanotify", fanotify, func() *event.Event { e := op("SYS_UNLINKAT", "/etc/blocked", change); e.Retval = -2; return e }(), ""},
		{"truncate blocked, monitor only", none, op("SYS_TRUNCATE", "/etc/blocked", change), "Audit (Block) p"},
		{"chown audited, monitor only", none, op("SYS_FCHOWNAT", "/etc/audited", change), "Audit p"},
		{"unlink blocked, BPF-LSM decides", bpflsm, op("SYS_UNLINKAT", "/etc/blocked", change), ""},
		{"unlink audited, BPF-LSM decides", bpflsm, op("SYS_UNLINKAT", "/etc/audited", change), ""},
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
