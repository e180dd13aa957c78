package bpflsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

func socket(domain, typ, proto int) error {
	fd, err := syscall.Socket(domain, typ, proto)
	if err == nil {
		syscall.Close(fd)
	}
	return err
}

func TestNetworkProtocols(t *testing.T) {
	e := kernel(t)
	rs := apply(t, e, hostpolicy.Postures{}, policy("net-udp", `
  network:
    matchProtocols:
    - protocol: udp
  action: Block
`))
	id := ruleID(t, rs, "net-udp")
	wantDenied(t, socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0), "udp socket")
	wantDenied(t, socket(syscall.AF_INET6, syscall.SOCK_DGRAM, syscall.IPPROTO_UDP), "udp6 socket")
	wantAllowed(t, socket(syscall.AF_INET, syscall.SOCK_STREAM, 0), "tcp socket")
	wantAllowed(t, socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0), "unix datagram socket")
	ev := wantVerdict(t, id, event.VerdictBlock, event.OpNetwork, "protocol=UDP type=SOCK_DGRAM")
	if ev.Data != "lsm=SOCKET_CREATE protocol=UDP type=SOCK_DGRAM" {
		t.Errorf("Data = %q", ev.Data)
	}
}

// A socket created before the rule is still checked when it connects.
func TestNetworkConnect(t *testing.T) {
	e := kernel(t)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	rs := apply(t, e, hostpolicy.Postures{}, policy("net-tcp", `
  network:
    matchProtocols:
    - protocol: tcp
  action: Block
`))
	err = syscall.Connect(fd, &syscall.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
	wantDenied(t, err, "connect")
	ev := waitEvent(t, "connect", func(ev event.Event) bool {
		return ev.RuleID == ruleID(t, rs, "net-tcp") && strings.HasPrefix(ev.Data, "lsm=SOCKET_CONNECT")
	})
	if ev.Resource != "protocol=TCP type=SOCK_STREAM" || ev.Retval != -13 || ev.Verdict != event.VerdictBlock {
		t.Errorf("event %+v", ev)
	}
}

func TestNetworkFromSource(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	nc := copyBusybox(t, filepath.Join(dir, "busybox-nc"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("net-source", `
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: `+nc+`
  action: Block
`))
	out, err := exec.Command(nc, "nc", "127.0.0.1", "9").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("nc from the source: err=%v out=%q, want Permission denied", err, out)
	}
	wantAllowed(t, socket(syscall.AF_INET, syscall.SOCK_STREAM, 0), "tcp socket of the test binary")
	ev := wantVerdict(t, ruleID(t, rs, "net-source"), event.VerdictBlock, event.OpNetwork, "protocol=TCP type=SOCK_STREAM")
	if ev.Exe != nc {
		t.Errorf("Exe = %q, want %q", ev.Exe, nc)
	}
}

// TestSourceMemoFollowsApply: a task keeps the answer "which source is my
// executable" for the Apply it was found under. One thread of the test
// binary asks under three rule sets in a row, the third in the same
// generation slot as the first with the binary under another source id:
// each answer is the rule set's in force, never the memo of an earlier.
func TestSourceMemoFollowsApply(t *testing.T) {
	e := kernel(t)
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(testDir(t), "not-this-binary")
	runtime.LockOSThread() // one task, one memo
	defer runtime.UnlockOSThread()
	udp := func() error { return socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0) }
	tcp := func() error { return socket(syscall.AF_INET, syscall.SOCK_STREAM, 0) }

	// blockFrom is a Block rule set: one protocol rule per (protocol, source).
	blockFrom := func(name string, rules ...[2]string) {
		var b strings.Builder
		b.WriteString("\n  network:\n    matchProtocols:\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "    - protocol: %s\n      fromSource:\n      - path: %s\n", r[0], r[1])
		}
		b.WriteString("  action: Block\n")
		apply(t, e, hostpolicy.Postures{}, policy(name, b.String()))
	}

	blockFrom("memo-a", [2]string{"udp", self})
	wantDenied(t, udp(), "udp, the binary a source of a udp Block rule")
	wantAllowed(t, tcp(), "tcp, no rule")

	blockFrom("memo-b", [2]string{"udp", other})
	wantAllowed(t, udp(), "udp, the binary no source any more")

	// Back in the first slot: the other program is source 1 (tcp), the
	// binary source 2 (udp). A memo kept from the first Apply (source 1)
	// would deny tcp and allow udp.
	blockFrom("memo-c", [2]string{"tcp", other}, [2]string{"udp", self})
	wantAllowed(t, tcp(), "tcp, another program's rule")
	wantDenied(t, udp(), "udp, the binary a source again")
}

func TestNetworkAllowList(t *testing.T) {
	e := kernel(t)
	apply(t, e, hostpolicy.Postures{Network: "block"}, policy("net-allow", `
  network:
    matchProtocols:
    - protocol: tcp
  action: Allow
`))
	wantAllowed(t, socket(syscall.AF_INET, syscall.SOCK_STREAM, 0), "allowed tcp")
	wantDenied(t, socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0), "udp under block posture")
	wantVerdict(t, 0, event.VerdictPostureBlock, event.OpNetwork, "protocol=UDP type=SOCK_DGRAM")
}

func TestCapabilityNetRaw(t *testing.T) {
	e := kernel(t)
	rs := apply(t, e, hostpolicy.Postures{}, policy("cap-raw", `
  capabilities:
    matchCapabilities:
    - capability: net_raw
  action: Block
`))
	// capable() failing makes the kernel answer EPERM, not EACCES.
	err := socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("raw socket: got %v, want operation not permitted", err)
	}
	ev := wantVerdict(t, ruleID(t, rs, "cap-raw"), event.VerdictBlock, event.OpCapabilities, "CAP_NET_RAW")
	if ev.Data != "lsm=CAPABLE CAP_NET_RAW" {
		t.Errorf("Data = %q", ev.Data)
	}
	wantAllowed(t, socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0), "udp socket needs no capability")
}

func TestCapabilityFromSource(t *testing.T) {
	e := kernel(t)
	dir := testDir(t)
	ping := copyBusybox(t, filepath.Join(dir, "busybox-ping"))
	rs := apply(t, e, hostpolicy.Postures{}, policy("cap-source", `
  capabilities:
    matchCapabilities:
    - capability: net_raw
      fromSource:
      - path: `+ping+`
  action: Block
`))
	out, err := exec.Command(ping, "ping", "-c", "1", "-W", "1", "127.0.0.1").CombinedOutput()
	if err == nil {
		t.Fatalf("ping from the source worked: %q", out)
	}
	err = socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
	wantAllowed(t, err, "raw socket of the test binary")
	ev := wantVerdict(t, ruleID(t, rs, "cap-source"), event.VerdictBlock, event.OpCapabilities, "CAP_NET_RAW")
	if ev.Exe != ping {
		t.Errorf("Exe = %q, want %q", ev.Exe, ping)
	}
}

// TestCapsSummaryFollowsApply: the capability hooks return at once for a
// capability caps_any does not hold, so an Apply that adds a capability
// rule must put it there before the rule is in force, and one that drops
// it takes it out.
func TestCapsSummaryFollowsApply(t *testing.T) {
	e := kernel(t)
	summary := func() uint64 {
		t.Helper()
		var v uint64
		if err := e.objs.CapsAny.Lookup(uint32(0), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	raw := func() error { return socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP) }
	const netRaw, sysModule = 13, 16
	apply(t, e, hostpolicy.Postures{}, policy("caps-module", `
  capabilities:
    matchCapabilities:
    - capability: sys_module
  action: Block
`))
	if got := summary(); got != 1<<sysModule {
		t.Errorf("caps_any = %#x after a sys_module rule, want %#x", got, uint64(1<<sysModule))
	}
	wantAllowed(t, raw(), "raw socket, no net_raw rule")
	apply(t, e, hostpolicy.Postures{}, policy("caps-raw", `
  capabilities:
    matchCapabilities:
    - capability: net_raw
  action: Block
`))
	if got := summary(); got != 1<<netRaw {
		t.Errorf("caps_any = %#x after a net_raw rule, want %#x", got, uint64(1<<netRaw))
	}
	if err := raw(); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("raw socket under a net_raw Block rule: got %v, want operation not permitted", err)
	}
	// An allow-list decides every capability of its source (a host-wide
	// one would refuse this test its next Apply).
	ping := copyBusybox(t, filepath.Join(testDir(t), "busybox-ping"))
	apply(t, e, hostpolicy.Postures{Capabilities: "block"}, policy("caps-allow", `
  capabilities:
    matchCapabilities:
    - capability: sys_module
      fromSource:
      - path: `+ping+`
  action: Allow
`))
	if got := summary(); got != ^uint64(0) {
		t.Errorf("caps_any = %#x under an allow-list, want every bit", got)
	}
	if out, err := exec.Command(ping, "ping", "-c", "1", "-W", "1", "127.0.0.1").CombinedOutput(); err == nil {
		t.Fatalf("ping from a source allowed only sys_module worked: %q", out)
	}
	wantAllowed(t, raw(), "raw socket of the test binary, not the allow-list's source")
	apply(t, e, hostpolicy.Postures{}, policy("caps-none", `
  process:
    matchPaths:
    - path: /bin/caps-none-nothing
  action: Block
`))
	if got := summary(); got != 0 {
		t.Errorf("caps_any = %#x with no capability rule, want 0", got)
	}
	wantAllowed(t, raw(), "raw socket, no capability rule")
}
