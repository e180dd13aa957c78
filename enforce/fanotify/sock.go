package fanotify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// EnforcerCgroup is the Enforcer string of verdicts the cgroup socket
// programs made.
const EnforcerCgroup = "CgroupBPF"

// Key kinds, slots and hooks of c/sock.bpf.c, from the constants bpf2go
// generates out of its enums (gen.go).
const (
	kindType  = uint32(sockKeyKindK_TYPE)
	kindProto = uint32(sockKeyKindK_PROTO)
	kindAny   = uint32(sockKeyKindK_ANY)

	slotBlock = sockSlotSLOT_BLOCK
	slotAudit = sockSlotSLOT_AUDIT
	slotAllow = sockSlotSLOT_ALLOW
)

const (
	hookSockCreate = uint32(sockHookH_SOCK_CREATE)
	hookConnect4   = uint32(sockHookH_CONNECT4)
	hookConnect6   = uint32(sockHookH_CONNECT6)
	hookBind4      = uint32(sockHookH_BIND4)
	hookBind6      = uint32(sockHookH_BIND6)
)

// hookSyscalls name the syscall each program runs in: the alert reads as
// the BPF-LSM tier's (Resource "protocol=TCP type=SOCK_STREAM", the
// resource repeated in Data), with the syscall where BPF-LSM names its hook.
var hookSyscalls = map[uint32]string{
	hookSockCreate: "SYS_SOCKET", hookConnect4: "SYS_CONNECT", hookConnect6: "SYS_CONNECT",
	hookBind4: "SYS_BIND", hookBind6: "SYS_BIND",
}

// sockTier is the cgroup socket programs, attached at the cgroup2 root with
// links that are never pinned: they go away with the agent's process.
type sockTier struct {
	objs   sockObjects
	links  []link.Link
	reader *ringbuf.Reader
	gen    uint32
	keys   map[sockNetKey]bool // entries of the active generation
	root   string
}

// netEntries is the network part of a RuleSet as the programs see it.
type netEntries struct {
	rules map[sockNetKey]sockRuleVal
	cfg   sockConfig
}

// netUnenforced says why the cgroup programs cannot enforce r, or "".
func netUnenforced(r *hostpolicy.Rule) string {
	switch {
	case r.Source != "":
		return "fromSource network rules are not enforced by the cgroup socket programs (they cannot see which program runs)"
	case r.TTYOnly:
		return "pts: false network rules are not enforced by the cgroup socket programs"
	case r.Match != hostpolicy.MatchProtocol:
		return fmt.Sprintf("%s network rules are not enforced by the cgroup socket programs", r.Match)
	}
	if !hostpolicy.IsProtocol(strings.ToLower(r.Value)) {
		return fmt.Sprintf("unknown protocol %q", r.Value)
	}
	return ""
}

// translateNet turns the enforceable network rules into map entries (key
// generations are filled in by apply).
func translateNet(rs *hostpolicy.RuleSet, skip func(*hostpolicy.Rule) bool) netEntries {
	n := netEntries{rules: map[sockNetKey]sockRuleVal{}}
	n.cfg.AgentTgid = uint32(os.Getpid())
	if rs == nil {
		return n
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Category != hostpolicy.CategoryNetwork || skip(r) {
			continue
		}
		p := strings.ToLower(r.Value)
		var k sockNetKey
		if t, ok := hostpolicy.SocketTypeNamed(p); ok {
			k.Kind, k.Value = kindType, t.Number
		} else if ip, ok := hostpolicy.IPProtocolNamed(p); ok {
			k.Kind, k.Value = kindProto, ip.Number
		} else {
			k.Kind = kindAny
		}
		slot := slotBlock
		switch r.Action {
		case hostpolicy.ActionAudit:
			slot = slotAudit
		case hostpolicy.ActionAllow:
			slot = slotAllow
			n.cfg.Allowlist = 1
		}
		v := n.rules[k]
		if v.Id[slot] == 0 {
			v.Id[slot] = r.ID
		}
		n.rules[k] = v
		n.cfg.Enabled = 1
	}
	if rs.Posture(hostpolicy.CategoryNetwork) == "block" {
		n.cfg.PostureBlock = 1
	}
	return n
}

// cgroup2Root finds where the cgroup2 hierarchy is mounted: /sys/fs/cgroup
// on pure v2 hosts, /sys/fs/cgroup/unified on hybrid ones.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			found = append(found, unescapeMount(fields[1]))
		}
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, p := range found {
			if p == want {
				return p, nil
			}
		}
	}
	if len(found) > 0 {
		return found[0], nil
	}
	return "", errors.New("no cgroup2 hierarchy is mounted")
}

// openSockTier attaches the programs at root, or at the cgroup2 root when
// root is empty.
func openSockTier(root string) (*sockTier, error) {
	if root == "" {
		var err error
		if root, err = cgroup2Root(); err != nil {
			return nil, err
		}
	}
	var err error
	s := &sockTier{root: root, keys: map[sockNetKey]bool{}}
	if err := loadSockObjects(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("load cgroup socket programs: %w", err)
	}
	for _, a := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{s.objs.SockCreate, ebpf.AttachCGroupInetSockCreate},
		{s.objs.Connect4, ebpf.AttachCGroupInet4Connect},
		{s.objs.Connect6, ebpf.AttachCGroupInet6Connect},
		{s.objs.Bind4, ebpf.AttachCGroupInet4Bind},
		{s.objs.Bind6, ebpf.AttachCGroupInet6Bind},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: a.typ, Program: a.prog})
		if err != nil {
			s.close()
			return nil, fmt.Errorf("attach %s at %s: %w", a.prog, root, err)
		}
		s.links = append(s.links, l)
	}
	s.reader, err = ringbuf.NewReader(s.objs.Events)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("cgroup socket events: %w", err)
	}
	return s, nil
}

// apply writes the next generation, makes it active, then deletes the
// previous one. On error the previous generation stays active.
func (s *sockTier) apply(n netEntries) error {
	next := (s.gen + 1) & 1
	written := map[sockNetKey]bool{}
	undo := func() {
		for k := range written {
			_ = s.objs.NetRules.Delete(&k)
		}
	}
	for k, v := range n.rules {
		k.Gen = next
		if err := s.objs.NetRules.Update(&k, &v, ebpf.UpdateAny); err != nil {
			undo()
			return fmt.Errorf("network rules: %w", err)
		}
		written[k] = true
	}
	if err := s.objs.Configs.Update(&next, &n.cfg, ebpf.UpdateAny); err != nil {
		undo()
		return fmt.Errorf("network config: %w", err)
	}
	zero := uint32(0)
	if err := s.objs.Active.Update(&zero, &next, ebpf.UpdateAny); err != nil {
		undo()
		return fmt.Errorf("network generation: %w", err)
	}
	for k := range s.keys {
		_ = s.objs.NetRules.Delete(&k)
	}
	s.gen, s.keys = next, written
	return nil
}

// run reads verdicts until ctx ends or the reader is closed.
func (s *sockTier) run(ctx context.Context, emit func(event.Event)) error {
	clock := event.NewBootClock()
	// Read blocks until the kernel wakes it; the end of ctx flushes it
	// (no deadline polling for it, so an idle agent does not wake).
	stop := context.AfterFunc(ctx, func() { _ = s.reader.Flush() })
	defer stop()
	for {
		rec, err := s.reader.Read()
		if err != nil {
			if errors.Is(err, ringbuf.ErrFlushed) {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("cgroup socket events: %w", err)
		}
		if ev, ok := decodeSock(rec.RawSample, clock); ok {
			emit(ev)
		}
	}
}

func decodeSock(raw []byte, clock event.BootClock) (event.Event, bool) {
	var k sockEvent
	if len(raw) < int(unsafe.Sizeof(k)) {
		return event.Event{}, false
	}
	k = *(*sockEvent)(unsafe.Pointer(&raw[0]))
	res := hostpolicy.SocketResource(k.Type, k.Protocol)
	ev := event.Event{
		Time:      clock.Wall(k.Ts),
		HostPID:   k.Tgid,
		PID:       k.Tgid,
		UID:       k.Uid,
		Comm:      event.CString(k.Comm[:]),
		CgroupID:  k.CgroupId,
		Operation: event.OpNetwork,
		Syscall:   hookSyscalls[k.Hook],
		Resource:  res,
		Data:      "syscall=" + hookSyscalls[k.Hook] + " " + res,
		Socket:    event.Socket{Family: uint16(k.Family), Type: k.Type, Protocol: k.Protocol},
		Verdict:   event.Verdict(k.Verdict),
		RuleID:    k.Rule,
		Enforcer:  EnforcerCgroup,
	}
	if ev.Verdict == event.VerdictBlock || ev.Verdict == event.VerdictPostureBlock {
		ev.Retval = -int64(unix.EPERM)
	}
	fillProc(&ev)
	return ev, true
}

func (s *sockTier) close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
