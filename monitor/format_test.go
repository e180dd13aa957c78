package monitor

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenFlags(t *testing.T) {
	tests := []struct {
		flags uint64
		want  string
	}{
		{unix.O_RDONLY, "O_RDONLY"},
		{unix.O_RDONLY | unix.O_CLOEXEC, "O_RDONLY|O_CLOEXEC"},
		{unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, "O_WRONLY|O_CREAT|O_TRUNC"},
		{unix.O_RDWR | unix.O_CREAT | unix.O_CLOEXEC, "O_RDWR|O_CREAT|O_CLOEXEC"},
		{unix.O_WRONLY | unix.O_APPEND | unix.O_SYNC, "O_WRONLY|O_APPEND|O_SYNC"},
		{unix.O_WRONLY | unix.O_DSYNC, "O_WRONLY|O_DSYNC"},
		{unix.O_RDWR | unix.O_TMPFILE, "O_RDWR|O_TMPFILE"},
		{unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NONBLOCK | unix.O_CLOEXEC, "O_RDONLY|O_NONBLOCK|O_DIRECTORY|O_CLOEXEC"},
		{unix.O_PATH | unix.O_NOFOLLOW, "O_RDONLY|O_NOFOLLOW|O_PATH"},
		{0o100000, "O_RDONLY|O_LARGEFILE"},
		{3, "O_ACCMODE"},
		{1 << 30, "O_RDONLY|0x40000000"},
	}
	for _, tt := range tests {
		if got := OpenFlags(tt.flags); got != tt.want {
			t.Errorf("OpenFlags(%#o) = %q, want %q", tt.flags, got, tt.want)
		}
	}
}

func sockaddrIn(port uint16, ip [4]byte) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], port)
	copy(b[4:], ip[:])
	return b
}

func sockaddrIn6(port uint16, ip [16]byte) []byte {
	b := make([]byte, 28)
	binary.LittleEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], port)
	copy(b[8:], ip[:])
	return b
}

func sockaddrUn(path string) []byte {
	b := make([]byte, 2, 110)
	binary.LittleEndian.PutUint16(b, unix.AF_UNIX)
	return append(append(b, path...), 0)
}

func TestSockaddrResource(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"inet", sockaddrIn(53, [4]byte{10, 0, 0, 10}), "sa_family=AF_INET sin_port=53 sin_addr=10.0.0.10"},
		{"inet loopback", sockaddrIn(8080, [4]byte{127, 0, 0, 1}), "sa_family=AF_INET sin_port=8080 sin_addr=127.0.0.1"},
		{"inet6", sockaddrIn6(443, [16]byte{15: 1}), "sa_family=AF_INET6 sin6_port=443 sin6_addr=::1"},
		{"unix", sockaddrUn("/run/x.sock"), "sa_family=AF_UNIX sun_path=/run/x.sock"},
		{"unix abstract", sockaddrUn("\x00hidden"), "sa_family=AF_UNIX sun_path=@hidden"},
		{"netlink", []byte{16, 0, 0, 0}, "sa_family=AF_NETLINK"},
		{"truncated inet", sockaddrIn(53, [4]byte{1, 2, 3, 4})[:6], "sa_family=AF_INET"},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		if got := SockaddrResource(tt.raw); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSocketResource(t *testing.T) {
	tests := []struct {
		domain, typ, proto uint64
		want               string
	}{
		{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_NONBLOCK, unix.IPPROTO_TCP, "domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK protocol=TCP"},
		{unix.AF_INET, unix.SOCK_DGRAM, 0, "domain=AF_INET type=SOCK_DGRAM protocol=HOPOPT"},
		{unix.AF_INET6, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, unix.IPPROTO_UDP, "domain=AF_INET6 type=SOCK_DGRAM|SOCK_CLOEXEC protocol=UDP"},
		{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, "domain=AF_INET type=SOCK_RAW protocol=ICMP"},
		{unix.AF_UNIX, unix.SOCK_SEQPACKET, 0, "domain=AF_UNIX type=SOCK_SEQPACKET protocol=HOPOPT"},
		{99, 9, 200, "domain=99 type=9 protocol=200"},
	}
	for _, tt := range tests {
		if got := SocketResource(tt.domain, tt.typ, tt.proto); got != tt.want {
			t.Errorf("SocketResource(%d, %d, %d) = %q, want %q", tt.domain, tt.typ, tt.proto, got, tt.want)
		}
	}
}

func TestSyscallData(t *testing.T) {
	neg := func(v int32) uint64 { return uint64(uint32(v)) }
	tests := []struct {
		name   string
		nr     uint32
		args   [6]uint64
		strs   []string
		target string
		want   string
	}{
		{"open", sysOpen, [6]uint64{0, unix.O_RDONLY | unix.O_CLOEXEC}, nil, "", "syscall=SYS_OPEN flags=O_RDONLY|O_CLOEXEC"},
		{"openat", sysOpenat, [6]uint64{neg(-100), 0, unix.O_RDONLY | unix.O_CLOEXEC}, nil, "", "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY|O_CLOEXEC"},
		{"openat dirfd", sysOpenat, [6]uint64{5, 0, unix.O_WRONLY}, nil, "", "syscall=SYS_OPENAT fd=5 flags=O_WRONLY"},
		{"openat2", sysOpenat2, [6]uint64{neg(-100), 0, unix.O_RDWR}, nil, "", "syscall=SYS_OPENAT2 fd=-100 flags=O_RDWR"},
		{"unlink", sysUnlink, [6]uint64{}, nil, "", "syscall=SYS_UNLINK"},
		{"unlinkat", sysUnlinkat, [6]uint64{neg(-100), 0, 0}, nil, "", "syscall=SYS_UNLINKAT flags="},
		{"unlinkat dir", sysUnlinkat, [6]uint64{neg(-100), 0, unix.AT_REMOVEDIR}, nil, "", "syscall=SYS_UNLINKAT flags=AT_REMOVEDIR"},
		{"rmdir", sysRmdir, [6]uint64{}, nil, "", "syscall=SYS_RMDIR"},
		{"chown", sysChown, [6]uint64{0, 1000, neg(-1)}, nil, "", "syscall=SYS_CHOWN userid=1000 group=-1"},
		{"fchownat", sysFchownat, [6]uint64{neg(-100), 0, 0, 0, unix.AT_SYMLINK_NOFOLLOW}, nil, "", "syscall=SYS_FCHOWNAT userid=0 group=0 mode=256"},
		{"socket", sysSocket, [6]uint64{2, 1, 6}, nil, "", "syscall=SYS_SOCKET"},
		{"connect", sysConnect, [6]uint64{3}, nil, "", "syscall=SYS_CONNECT fd=3"},
		{"bind", sysBind, [6]uint64{7}, nil, "", "syscall=SYS_BIND fd=7"},
		{"listen", sysListen, [6]uint64{3, 128}, nil, "", "syscall=SYS_LISTEN fd=3"},
		{"accept4", sysAccept4, [6]uint64{4}, nil, "", "syscall=SYS_ACCEPT4 fd=4"},
		{"execve", sysExecve, [6]uint64{}, nil, "", "syscall=SYS_EXECVE"},
		{"execveat", sysExecveat, [6]uint64{3, 0, 0, 0, unix.AT_EMPTY_PATH}, nil, "", "syscall=SYS_EXECVEAT fd=3 flag=AT_EMPTY_PATH"},
		{"execveat no flag", sysExecveat, [6]uint64{neg(-100)}, nil, "", "syscall=SYS_EXECVEAT fd=-100 flag=0"},
		{"setuid", sysSetuid, [6]uint64{0}, nil, "", "syscall=SYS_SETUID userid=0"},
		{"setuid nobody", sysSetuid, [6]uint64{65534}, nil, "", "syscall=SYS_SETUID userid=65534"},
		{"setgid", sysSetgid, [6]uint64{65534}, nil, "", "syscall=SYS_SETGID userid=65534"},
		{"setreuid", sysSetreuid, [6]uint64{neg(-1), 1000}, nil, "", "syscall=SYS_SETREUID ruid=-1 euid=1000"},
		{"setregid", sysSetregid, [6]uint64{5, 6}, nil, "", "syscall=SYS_SETREGID rgid=5 egid=6"},
		{"setresuid", sysSetresuid, [6]uint64{1, 2, 3}, nil, "", "syscall=SYS_SETRESUID ruid=1 euid=2 suid=3"},
		{"setresgid", sysSetresgid, [6]uint64{1, 2, neg(-1)}, nil, "", "syscall=SYS_SETRESGID rgid=1 egid=2 sgid=-1"},
		{"ptrace", sysPtrace, [6]uint64{16, 1234}, nil, "/usr/bin/sleep", "syscall=SYS_PTRACE request=PTRACE_ATTACH pid=1234 process=/usr/bin/sleep"},
		{"mount", sysMount, [6]uint64{0, 0, 0, unix.MS_RDONLY | unix.MS_BIND}, []string{"/src", "/mnt", "none", ""}, "", "syscall=SYS_MOUNT source=/src target=/mnt filesystem=none mountflag=4097 data="},
		{"umount2", sysUmount2, [6]uint64{0, unix.MNT_DETACH}, []string{"/mnt"}, "", "syscall=SYS_UMOUNT2 target=/mnt flag=2"},
		{"mkdir", sysMkdir, [6]uint64{0, 0o40755}, nil, "", "syscall=SYS_MKDIR mode=0755"},
		{"fchmodat", sysFchmodat, [6]uint64{neg(-100), 0, 0o4711}, nil, "", "syscall=SYS_FCHMODAT fd=-100 mode=04711"},
		{"renameat2", sysRenameat2, [6]uint64{9}, nil, "", "syscall=SYS_RENAMEAT2 fd=9"},
		{"symlinkat", sysSymlinkat, [6]uint64{0, neg(-100)}, nil, "", "syscall=SYS_SYMLINKAT fd=-100"},
		{"open, every flag and more", sysOpen, [6]uint64{0, 3 | unix.O_SYNC | unix.O_TMPFILE | 1<<40}, nil, "",
			"syscall=SYS_OPEN flags=O_ACCMODE|O_SYNC|O_TMPFILE|0x10000000000"},
		{"untraced", 1, [6]uint64{}, nil, "", "syscall=SYS_1"},
		{"past the table", 100000, [6]uint64{}, nil, "", "syscall=SYS_100000"},
	}
	for _, tt := range tests {
		if got := syscallData(tt.nr, &tt.args, tt.strs, tt.target); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseVisibility(t *testing.T) {
	tests := []struct {
		in      string
		want    Scope
		wantErr bool
	}{
		{"default", ScopeAll, false},
		{"none", 0, false},
		{"", 0, false},
		{"process,file", ScopeProcess | ScopeFile, false},
		{"process, network ,capabilities", ScopeProcess | ScopeNetwork | ScopeCapabilities, false},
		{"file,dns,ima", ScopeFile, false},
		{"process,files", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseVisibility(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVisibility(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if s := (ScopeProcess | ScopeCapabilities).String(); s != "process,capabilities" {
		t.Errorf("String() = %q", s)
	}
}

func TestJoinComponents(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"ls\x00bin\x00usr\x00", "/usr/bin/ls"},
		{"etc\x00", "/etc"},
		{"", ""},
		{"a b\x00dir with space\x00", "/dir with space/a b"},
		{"ls\x00bin\x00usr", "/usr/bin/ls"},                       // no NUL at the end
		{"ls\x00bin\x00\x00\x00", "/bin/ls"},                      // NULs after the last
		{"a\x00\x00b\x00", "/b//a"},                               // an empty component
		{"\x00", ""},                                              // NULs alone
		{strings.Repeat("c\x00", 300), strings.Repeat("/c", 300)}, // past joinComponents' buffer
	}
	for _, tt := range tests {
		if got := joinComponents([]byte(tt.in)); got != tt.want {
			t.Errorf("joinComponents(%q) = %q, want %q", tt.in, got, tt.want)
		}
		// Appended after other text, into spare room or not.
		for _, dst := range [][]byte{[]byte("x "), make([]byte, 2, 1024)} {
			copy(dst, "x ")
			if got := string(appendComponents(dst, []byte(tt.in))); got != "x "+tt.want {
				t.Errorf("appendComponents(%q, %q) = %q", dst, tt.in, got)
			}
		}
	}
}
