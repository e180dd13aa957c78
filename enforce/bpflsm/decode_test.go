package bpflsm

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
)

// TestDecodeFields: decode fills the structured fields from the kernel's
// record beside upstream's display strings. A host test: records are
// built here as the C writes them (the VM tests decode real ones).
func TestDecodeFields(t *testing.T) {
	record := func(hook, arg uint32, family, typ, proto uint16, res string) []byte {
		k := enforcerEvent{Hook: hook, Arg: arg, Family: family, SockType: typ, Protocol: proto, Verdict: uint32(enforcerVerdictV_BLOCK)}
		for i := 0; i < len(res) && i < len(k.Resource)-1; i++ {
			k.Resource[i] = int8(res[i])
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k))
	}
	for _, tc := range []struct {
		name     string
		raw      []byte
		op, res  string
		data     string
		path     string
		file     event.File
		socket   event.Socket
		capNum   uint32
		notEvent bool
	}{
		{name: "open for write", raw: record(hookFileOpen, 2, 0, 0, 0, "/etc/my hosts"), op: event.OpFile, res: "/etc/my hosts",
			data: "lsm=FILE_OPEN", path: "/etc/my hosts", file: event.File{Op: event.FileOpen, Flags: unix.O_WRONLY}},
		{name: "open for read", raw: record(hookFileOpen, 1, 0, 0, 0, "/etc/hosts"), op: event.OpFile, res: "/etc/hosts",
			data: "lsm=FILE_OPEN", path: "/etc/hosts", file: event.File{Op: event.FileOpen, Flags: unix.O_RDONLY}},
		{name: "open read-write", raw: record(hookFileOpen, 3, 0, 0, 0, "/etc/hosts"), op: event.OpFile, res: "/etc/hosts",
			data: "lsm=FILE_OPEN", path: "/etc/hosts", file: event.File{Op: event.FileOpen, Flags: unix.O_RDWR}},
		{name: "rmdir", raw: record(hookPathRmdir, 0, 0, 0, 0, "/srv/d"), op: event.OpFile, res: "/srv/d",
			data: "lsm=FILE_RMDIR", path: "/srv/d", file: event.File{Op: event.FileChange, Dir: true}},
		{name: "unlink", raw: record(hookPathUnlink, 0, 0, 0, 0, "/srv/f"), op: event.OpFile, res: "/srv/f",
			data: "lsm=FILE_UNLINK", path: "/srv/f", file: event.File{Op: event.FileChange}},
		{name: "socket", raw: record(hookSocketCreate, 0, unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_UDP, ""), op: event.OpNetwork,
			res: "protocol=UDP type=SOCK_DGRAM", data: "lsm=SOCKET_CREATE protocol=UDP type=SOCK_DGRAM",
			socket: event.Socket{Family: unix.AF_INET6, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_UDP}},
		{name: "capability", raw: record(hookCapable, unix.CAP_NET_RAW, 0, 0, 0, ""), op: event.OpCapabilities,
			res: "CAP_NET_RAW", data: "lsm=CAPABLE CAP_NET_RAW", capNum: unix.CAP_NET_RAW},
		{name: "short record", raw: record(hookFileOpen, 0, 0, 0, 0, "/x")[:8], notEvent: true},
		{name: "unknown hook", raw: record(999, 0, 0, 0, 0, ""), notEvent: true},
	} {
		ev, ok := decode(tc.raw, event.BootClock{})
		if ok == tc.notEvent {
			t.Errorf("%s: event %v", tc.name, ok)
			continue
		}
		if !ok {
			continue
		}
		if ev.Operation != tc.op || ev.Resource != tc.res || ev.Data != tc.data || ev.Path != tc.path ||
			ev.File != tc.file || ev.Socket != tc.socket || ev.Capability != tc.capNum || ev.Verdict != event.VerdictBlock {
			t.Errorf("%s: got %s %q %q path %q %+v %+v cap %d", tc.name, ev.Operation, ev.Resource, ev.Data, ev.Path, ev.File, ev.Socket, ev.Capability)
		}
	}
}
