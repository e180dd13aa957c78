package bpflsm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
)

// Hooks, as enforcer.h numbers them.
const (
	hookBprmCheck     = 1
	hookFileOpen      = 2
	hookFilePerm      = 3
	hookSocketCreate  = 4
	hookSocketConnect = 5
	hookSocketBind    = 6
	hookSocketAccept  = 7
	hookCapable       = 8
	hookTaskFixSetuid = 9
	hookTaskFixSetgid = 10
	hookPathMknod     = 11
	hookPathUnlink    = 12
	hookPathMkdir     = 13
	hookPathRmdir     = 14
	hookPathSymlink   = 15
	hookPathLink      = 16
	hookPathRename    = 17
	hookPathChmod     = 18
	hookPathChown     = 19
	hookPathTruncate  = 20
)

var hookNames = map[uint32]string{
	hookBprmCheck:     "SECURITY_BPRM_CHECK",
	hookFileOpen:      "FILE_OPEN",
	hookFilePerm:      "FILE_PERMISSION",
	hookSocketCreate:  "SOCKET_CREATE",
	hookSocketConnect: "SOCKET_CONNECT",
	hookSocketBind:    "SOCKET_BIND",
	hookSocketAccept:  "SOCKET_ACCEPT",
	hookCapable:       "CAPABLE",
	hookTaskFixSetuid: "TASK_FIX_SETUID",
	hookTaskFixSetgid: "TASK_FIX_SETGID",
	// The namespace operations carry upstream's names (FILE_CHOWN is ours:
	// upstream does not hook chown).
	hookPathMknod:    "FILE_MKNOD",
	hookPathUnlink:   "FILE_UNLINK",
	hookPathMkdir:    "FILE_MKDIR",
	hookPathRmdir:    "FILE_RMDIR",
	hookPathSymlink:  "FILE_SYMLINK",
	hookPathLink:     "FILE_LINK",
	hookPathRename:   "FILE_RENAME",
	hookPathChmod:    "FILE_CHMOD",
	hookPathChown:    "FILE_CHOWN",
	hookPathTruncate: "FILE_TRUNCATE",
}

var (
	sockTypeNames = map[uint16]string{1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
	protoNames    = map[uint16]string{0: "HOPOPT", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP", 255: "RAW"}
	capNames      = func() map[uint32]string {
		m := map[uint32]string{}
		for name, n := range capNumbers {
			m[n] = "CAP_" + strings.ToUpper(name)
		}
		return m
	}()
)

// decode turns one ring-buffer record into an event. Records of an
// unexpected size are dropped (false).
func decode(raw []byte, bootOffset time.Duration) (event.Event, bool) {
	var k enforcerEvent
	if len(raw) < int(unsafe.Sizeof(k)) {
		return event.Event{}, false
	}
	k = *(*enforcerEvent)(unsafe.Pointer(&raw[0]))
	ev := event.Event{
		Time:       time.Unix(0, int64(k.Ts)).Add(bootOffset),
		HostPID:    k.HostPid,
		HostPPID:   k.HostPpid,
		PID:        k.Pid,
		PPID:       k.Ppid,
		UID:        k.Uid,
		Comm:       cString(k.Comm[:]),
		CgroupID:   k.CgroupId,
		PidNS:      k.PidNs,
		MntNS:      k.MntNs,
		Exe:        cString(k.Exe[:]),
		ParentExe:  cString(k.ParentExe[:]),
		TTY:        cString(k.Tty[:]),
		Retval:     int64(k.Retval),
		Verdict:    event.Verdict(k.Verdict),
		RuleID:     k.RuleId,
		Enforcer:   "BPFLSM",
		Suppressed: k.Suppressed,
	}
	lsm := "lsm=" + hookNames[k.Hook]
	switch k.Hook {
	case hookBprmCheck:
		ev.Operation = event.OpProcess
		ev.Resource = cString(k.Resource[:])
		ev.Data = lsm
	case hookFileOpen, hookFilePerm, hookPathMknod, hookPathUnlink, hookPathMkdir, hookPathRmdir,
		hookPathSymlink, hookPathLink, hookPathRename, hookPathChmod, hookPathChown, hookPathTruncate:
		ev.Operation = event.OpFile
		ev.Resource = cString(k.Resource[:])
		ev.Data = lsm
	case hookSocketCreate, hookSocketConnect, hookSocketBind, hookSocketAccept:
		ev.Operation = event.OpNetwork
		ev.Resource = socketResource(k.SockType, k.Protocol)
		ev.Data = lsm + " " + ev.Resource
	case hookCapable:
		ev.Operation = event.OpCapabilities
		ev.Resource = capNames[k.Arg]
		if ev.Resource == "" {
			ev.Resource = fmt.Sprintf("CAP_%d", k.Arg)
		}
		ev.Data = lsm + " " + ev.Resource
	case hookTaskFixSetuid, hookTaskFixSetgid:
		ev.Operation = event.OpSyscall
		ev.Data = fmt.Sprintf("%s userid=%d", lsm, k.Arg)
	default:
		return event.Event{}, false
	}
	return ev, true
}

// socketResource is upstream's BPF-LSM network Resource, e.g.
// "protocol=TCP type=SOCK_STREAM".
func socketResource(typ, proto uint16) string {
	t := sockTypeNames[typ]
	if t == "" {
		t = strconv.Itoa(int(typ))
	}
	p := protoNames[proto]
	if p == "" {
		p = strconv.Itoa(int(proto))
	}
	return "protocol=" + p + " type=" + t
}

func cString(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		out[i] = byte(b[i])
	}
	return string(out)
}

// bootOffset is what to add to a CLOCK_BOOTTIME reading to get wall time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// mapMemory is the memlock the kernel reports in fdinfo for each map, by
// map name. Kernels before 6.6 report an upper bound from max_entries for
// maps that allocate on demand (BPF_F_NO_PREALLOC).
func (e *Enforcer) mapMemory() (map[string]uint64, error) {
	out := map[string]uint64{}
	for name, m := range map[string]interface{ FD() int }{
		"path_rules": e.objs.PathRules, "net_rules": e.objs.NetRules, "sources": e.objs.Sources,
		"patterns": e.objs.Patterns, "configs": e.objs.Configs, "active": e.objs.Active, "rate": e.objs.Rate,
		"counters": e.objs.Counters, "events": e.objs.Events, "exe_cache": e.objs.ExeCache,
		"scratch_area": e.objs.ScratchArea,
	} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
		if err != nil {
			return nil, fmt.Errorf("bpflsm: map memory: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				out[name] = n
			}
		}
	}
	return out, nil
}
