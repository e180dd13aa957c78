package bpflsm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// Hooks (enum hook of enforcer.h, generated).
const (
	hookBprmCheck     = uint32(enforcerHookH_BPRM_CHECK)
	hookFileOpen      = uint32(enforcerHookH_FILE_OPEN)
	hookFilePerm      = uint32(enforcerHookH_FILE_PERMISSION)
	hookSocketCreate  = uint32(enforcerHookH_SOCKET_CREATE)
	hookSocketConnect = uint32(enforcerHookH_SOCKET_CONNECT)
	hookSocketBind    = uint32(enforcerHookH_SOCKET_BIND)
	hookSocketAccept  = uint32(enforcerHookH_SOCKET_ACCEPT)
	hookCapable       = uint32(enforcerHookH_CAPABLE)
	hookTaskFixSetuid = uint32(enforcerHookH_TASK_FIX_SETUID)
	hookTaskFixSetgid = uint32(enforcerHookH_TASK_FIX_SETGID)
	hookPathMknod     = uint32(enforcerHookH_PATH_MKNOD)
	hookPathUnlink    = uint32(enforcerHookH_PATH_UNLINK)
	hookPathMkdir     = uint32(enforcerHookH_PATH_MKDIR)
	hookPathRmdir     = uint32(enforcerHookH_PATH_RMDIR)
	hookPathSymlink   = uint32(enforcerHookH_PATH_SYMLINK)
	hookPathLink      = uint32(enforcerHookH_PATH_LINK)
	hookPathRename    = uint32(enforcerHookH_PATH_RENAME)
	hookPathChmod     = uint32(enforcerHookH_PATH_CHMOD)
	hookPathChown     = uint32(enforcerHookH_PATH_CHOWN)
	hookPathTruncate  = uint32(enforcerHookH_PATH_TRUNCATE)
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

// decode turns one ring-buffer record into an event. Records of an
// unexpected size are dropped (false).
func decode(raw []byte, clock event.BootClock) (event.Event, bool) {
	var k enforcerEvent
	if len(raw) < int(unsafe.Sizeof(k)) {
		return event.Event{}, false
	}
	k = *(*enforcerEvent)(unsafe.Pointer(&raw[0]))
	ev := event.Event{
		Time:       clock.Wall(k.Ts),
		HostPID:    k.HostPid,
		HostPPID:   k.HostPpid,
		PID:        k.Pid,
		PPID:       k.Ppid,
		UID:        k.Uid,
		Comm:       event.CString(k.Comm[:]),
		CgroupID:   k.CgroupId,
		PidNS:      k.PidNs,
		MntNS:      k.MntNs,
		Exe:        event.CString(k.Exe[:]),
		ParentExe:  event.CString(k.ParentExe[:]),
		TTY:        event.CString(k.Tty[:]),
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
		ev.Resource = event.CString(k.Resource[:])
		ev.Data = lsm
	case hookFileOpen, hookFilePerm, hookPathMknod, hookPathUnlink, hookPathMkdir, hookPathRmdir,
		hookPathSymlink, hookPathLink, hookPathRename, hookPathChmod, hookPathChown, hookPathTruncate:
		ev.Operation = event.OpFile
		ev.Path = event.CString(k.Resource[:])
		ev.File = fileOf(k.Hook, k.Arg)
		ev.Resource = ev.Path
		ev.Data = lsm
	case hookSocketCreate, hookSocketConnect, hookSocketBind, hookSocketAccept:
		ev.Operation = event.OpNetwork
		ev.Socket = event.Socket{Family: k.Family, Type: uint32(k.SockType), Protocol: uint32(k.Protocol)}
		ev.Resource = hostpolicy.SocketResource(uint32(k.SockType), uint32(k.Protocol))
		ev.Data = lsm + " " + ev.Resource
	case hookCapable:
		ev.Operation = event.OpCapabilities
		ev.Capability = k.Arg
		ev.Resource = hostpolicy.CapabilityConst(k.Arg)
		ev.Data = lsm + " " + ev.Resource
	case hookTaskFixSetuid, hookTaskFixSetgid:
		ev.Operation = event.OpSyscall
		ev.Data = fmt.Sprintf("%s userid=%d", lsm, k.Arg)
	default:
		return event.Event{}, false
	}
	return ev, true
}

// fileOf is what a file hook's operation does. file_open reports the
// opened file's f_mode (FMODE_READ 1, FMODE_WRITE 2), the access asked
// for: it becomes the open's access mode. file_permission says nothing
// more (unknown); the path hooks change the file system.
func fileOf(hook, arg uint32) event.File {
	switch hook {
	case hookFileOpen:
		flags := uint32(unix.O_RDONLY)
		switch arg & 3 {
		case 2:
			flags = unix.O_WRONLY
		case 3:
			flags = unix.O_RDWR
		}
		return event.File{Op: event.FileOpen, Flags: flags}
	case hookFilePerm:
		return event.File{}
	case hookPathMkdir, hookPathRmdir:
		return event.File{Op: event.FileChange, Dir: true}
	}
	return event.File{Op: event.FileChange}
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
		"scratch_area": e.objs.ScratchArea, "name_filters": e.objs.NameFilters,
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
