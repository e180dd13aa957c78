package agent

import (
	"context"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/proctable"
	"golang.org/x/sys/unix"
)

// feedMonitor hands ev to p as the monitor does with Options.Unneeded
// set: the event's Operation, Syscall and Retval to takeUnneeded first,
// and the whole event to handleInline only when it is not taken.
func feedMonitor(p *pipeline, ev event.Event) (taken bool) {
	brief := event.Event{Operation: ev.Operation, Syscall: ev.Syscall, Retval: ev.Retval}
	if p.takeUnneeded(&brief) {
		return true
	}
	p.handleInline(ev)
	return false
}

// The bench's rule kinds: process, file, network and capabilities rules,
// none for syscalls.
const benchKinds = "  process:\n    matchPaths:\n    - path: /usr/local/sbin/bench-deny\n" +
	"  file:\n    matchDirectories:\n    - dir: /var/bench-deny/\n" +
	"  network:\n    matchProtocols:\n    - protocol: raw\n" +
	"  capabilities:\n    matchCapabilities:\n    - capability: sys_module\n"

// subscribe attaches a log sink to srv until the test ends.
func subscribe(t *testing.T, srv *feeder.Server) (*logSink, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sink := &logSink{}
	subscribed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.RunSink(ctx, "test", sink, feeder.SinkOptions{Logs: true, Subscribed: func() { close(subscribed) }})
	}()
	<-subscribed
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return sink, stop
}

// The pipeline takes an event undecoded exactly when it would make
// nothing of it but a log nobody watches, and counts it as handleInline
// counts the whole event: the same pipeline counters and feeder counts as
// a twin pipeline that is handed every event decoded.
func TestTakeUnneeded(t *testing.T) {
	setuid := event.Event{HostPID: 42, HostPPID: 1, Operation: event.OpSyscall, Syscall: "SYS_SETUID", Data: "syscall=SYS_SETUID userid=0", Comm: "x"}
	denied := setuid
	denied.Retval = -1
	open := event.Event{HostPID: 42, HostPPID: 1, Operation: event.OpFile, Syscall: "SYS_OPENAT", Retval: 3, Path: "/etc/hosts", Resource: "/etc/hosts",
		File: event.File{Op: event.FileOpen, Flags: unix.O_RDONLY}, Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY"}
	unlink := event.Event{HostPID: 42, HostPPID: 1, Operation: event.OpFile, Syscall: "SYS_UNLINKAT", Path: "/var/bench-deny/x", Resource: "/var/bench-deny/x",
		File: event.File{Op: event.FileChange}}
	failedExec := event.Event{HostPID: 42, HostPPID: 1, Operation: event.OpProcess, Syscall: "SYS_EXECVE", Retval: -2, Exe: "/nope", Resource: "/nope"}
	sock := event.Event{HostPID: 42, HostPPID: 1, Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Retval: 3,
		Socket: event.Socket{Family: unix.AF_INET, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP}}
	all := visibility{true, true, true, true}

	for _, tt := range []struct {
		name     string
		spec     string // "": no policy
		enforcer string
		unrefuse bool // the enforcer cannot refuse file operations other than open
		vis      visibility
		watched  bool
		ev       event.Event
		taken    bool
		alerts   uint64
	}{
		{name: "setuid, no rules, nobody watching", vis: all, ev: setuid, taken: true},
		{name: "setuid, the bench's rule kinds", spec: benchKinds, vis: all, ev: setuid, taken: true},
		{name: "setuid, a syscall rule on setgid", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setgid]\n", vis: all, ev: setuid, taken: true},
		{name: "setuid, capabilities invisible", vis: visibility{true, true, true, false}, ev: setuid, taken: true},
		{name: "setuid, a log subscriber", vis: all, watched: true, ev: setuid},
		{name: "setuid, a syscall rule on setuid", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n", vis: all, ev: setuid, alerts: 1},
		{name: "setuid refused: the DefaultPosture alert", vis: all, ev: denied, alerts: 1},
		{name: "setuid refused, capabilities invisible", vis: visibility{}, ev: denied, alerts: 1},
		{name: "open, no rules", vis: all, ev: open, taken: true},
		{name: "open, process and network rules only", spec: "  process:\n    matchPaths:\n    - path: /bin/x\n  network:\n    matchProtocols:\n    - protocol: raw\n",
			vis: all, ev: open, taken: true},
		{name: "open, a file rule", spec: "  file:\n    matchPaths:\n    - path: /srv/other\n", vis: all, ev: open},
		{name: "open, a file rule the kernel decides", spec: "  file:\n    matchPaths:\n    - path: /srv/other\n", enforcer: enforcerBPFLSM,
			vis: all, ev: open, taken: true},
		{name: "unlink, a file rule the enforcer cannot refuse", spec: "  file:\n    matchDirectories:\n    - dir: /var/bench-deny/\n",
			enforcer: "fanotify", unrefuse: true, vis: all, ev: unlink, alerts: 1},
		{name: "open, a syscall rule on openat", spec: "  syscalls:\n    matchSyscalls:\n    - syscall: [openat]\n", vis: all, ev: open, alerts: 1},
		{name: "failed exec, a file rule (execs are decided by file rules first)", spec: "  file:\n    matchPaths:\n    - path: /srv/other\n", vis: all, ev: failedExec},
		{name: "failed exec, network rules only", spec: "  network:\n    matchProtocols:\n    - protocol: raw\n", vis: all, ev: failedExec, taken: true},
		{name: "socket, a network rule", spec: "  network:\n    matchProtocols:\n    - protocol: raw\n", vis: all, ev: sock, alerts: 1},
		{name: "socket, a network allow-list", spec: "  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n", vis: all, ev: sock, alerts: 1},
		{name: "socket, file rules only", spec: "  file:\n    matchPaths:\n    - path: /srv/other\n", vis: all, ev: sock, taken: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// p is fed as the monitor feeds it, twin the whole event.
			newPipe := func() (*pipeline, *feeder.Server) {
				srv, err := feeder.New(feeder.Options{Host: "h"})
				if err != nil {
					t.Fatal(err)
				}
				p := newPipeline(context.Background(), proctable.New(proctable.Options{}), srv, tt.enforcer, tt.vis)
				if tt.unrefuse {
					p.unrefused = []string{"unlink"}
				}
				if tt.spec != "" {
					p.setRules(ruleSet(t, tt.spec, hostpolicy.Postures{}), nil)
				}
				if tt.watched {
					subscribe(t, srv)
				}
				return p, srv
			}
			p, srv := newPipe()
			twin, twinSrv := newPipe()
			for i := range 3 {
				if taken := feedMonitor(p, tt.ev); taken != tt.taken {
					t.Fatalf("event %d: taken %v, want %v", i, taken, tt.taken)
				}
				twin.handleInline(tt.ev)
			}
			got, want := srv.FeederStatus(), twinSrv.FeederStatus()
			if got.LogsPublished != want.LogsPublished || got.AlertsPublished != want.AlertsPublished {
				t.Errorf("logs, alerts published %d, %d; handed every event %d, %d", got.LogsPublished, got.AlertsPublished,
					want.LogsPublished, want.AlertsPublished)
			}
			if got.AlertsPublished != 3*tt.alerts {
				t.Errorf("alerts published %d, want %d", got.AlertsPublished, 3*tt.alerts)
			}
			if gs, ws := p.stage(), twin.stage(); gs != ws {
				t.Errorf("pipeline stage %+v, handed every event %+v", gs, ws)
			}
		})
	}
}

// A subscriber that attaches, or a rule that is added, between two events
// has the second one decoded: delivered to the subscriber, matched by the
// rule. When they go, events are taken again.
func TestUnneededFollowsChanges(t *testing.T) {
	srv, err := feeder.New(feeder.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(context.Background(), proctable.New(proctable.Options{}), srv, "", visibility{true, true, true, true})
	setuid := event.Event{HostPID: 42, Operation: event.OpSyscall, Syscall: "SYS_SETUID", Data: "syscall=SYS_SETUID userid=0", Comm: "x"}
	step := func(what string, wantTaken bool) {
		t.Helper()
		if taken := feedMonitor(p, setuid); taken != wantTaken {
			t.Fatalf("%s: taken %v, want %v", what, taken, wantTaken)
		}
	}
	step("nobody watching", true)

	sink, stop := subscribe(t, srv)
	step("a subscriber attached", false)
	for deadline := time.Now().Add(5 * time.Second); sink.len() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber never received the log")
		}
	}
	stop()
	step("the subscriber gone", true)

	p.setRules(ruleSet(t, "  syscalls:\n    matchSyscalls:\n    - syscall: [setuid]\n", hostpolicy.Postures{}), nil)
	step("a syscall rule on setuid", false)
	if n := srv.FeederStatus().AlertsPublished; n != 1 {
		t.Errorf("alerts published %d, want the rule's 1", n)
	}
	p.setRules(&hostpolicy.RuleSet{}, nil)
	step("the rule removed", true)
	if n := srv.FeederStatus().LogsPublished; n != 5 {
		t.Errorf("logs published %d, want 5", n)
	}
}

// concerns errs only towards true: when it says no rule concerns an
// event, match and syscallRule find nothing for it, for every tier of
// matcher, rule kind, posture, program and event the monitor makes.
func TestConcernsCoversMatch(t *testing.T) {
	specs := []string{
		"",
		benchKinds,
		"  action: Audit\n  process:\n    matchPaths:\n    - path: /bin/ls\n",
		"  action: Allow\n  process:\n    matchPaths:\n    - path: /bin/date\n",
		"  file:\n    matchPaths:\n    - path: /bin/ls\n",
		"  action: Audit\n  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n",
		"  action: Allow\n  file:\n    matchDirectories:\n    - dir: /tmp/\n",
		"  action: Audit\n  network:\n    matchProtocols:\n    - protocol: icmp\n",
		"  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n",
		"  capabilities:\n    matchCapabilities:\n    - capability: setuid\n",
		"  syscalls:\n    matchSyscalls:\n    - syscall: [setuid, openat, execve, socket, unlinkat, ptrace]\n",
	}
	evs := []event.Event{
		{Operation: event.OpProcess, Syscall: "SYS_EXECVE", Exe: "/bin/ls"},
		{Operation: event.OpProcess, Syscall: "SYS_EXECVE", Retval: -2, Exe: "/bin/ls"},
		{Operation: event.OpProcess, Syscall: "SYS_PTRACE", Resource: "/bin/ls"},
		{Operation: event.OpFile, Syscall: "SYS_OPENAT", Path: "/etc/passwd", File: event.File{Op: event.FileOpen}},
		{Operation: event.OpFile, Syscall: "SYS_OPENAT", Path: "/bin/ls", File: event.File{Op: event.FileOpen, Flags: unix.O_WRONLY}},
		{Operation: event.OpFile, Syscall: "SYS_UNLINKAT", Path: "/etc/x", File: event.File{Op: event.FileChange}},
		{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Socket: event.Socket{Family: unix.AF_INET, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP}},
		{Operation: event.OpNetwork, Syscall: "SYS_SOCKET", Socket: event.Socket{Family: unix.AF_INET, Type: unix.SOCK_DGRAM}},
		{Operation: event.OpSyscall, Syscall: "SYS_SETUID"},
		{Operation: event.OpSyscall, Syscall: "SYS_SETUID", Retval: -1},
	}
	for _, spec := range specs {
		for _, posture := range []string{"audit", "block"} {
			rs := ruleSet(t, spec, hostpolicy.Postures{File: posture, Network: posture, Capabilities: posture})
			for _, tier := range []struct{ kernel, opensOnly bool }{{false, false}, {true, false}, {true, true}} {
				m := newMatcherFor(rs, tier.kernel, nil, tier.opensOnly)
				for i := range evs {
					ev := &evs[i]
					if m.concerns(ev.Operation, ev.Syscall) {
						continue
					}
					for _, proc := range []string{"/bin/ls", "/bin/date", "/usr/bin/other"} {
						if v, ok := m.match(ev, proc, "/bin/sh"); ok {
							t.Errorf("%q %s, kernel %v opensOnly %v: %s %s by %s not concerned, but matched %+v", spec, posture,
								tier.kernel, tier.opensOnly, ev.Operation, ev.Syscall, proc, v)
						}
						if r := m.syscallRule(ev, proc); r != nil {
							t.Errorf("%q: %s %s not concerned, but syscall rule %d", spec, ev.Operation, ev.Syscall, r.ID)
						}
					}
				}
			}
		}
	}
}
