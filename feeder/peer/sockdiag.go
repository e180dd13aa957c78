package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Owner is what the kernel reports about a TCP socket.
type Owner struct {
	UID   uint32
	Inode uint32
}

// Sizes of the inet_diag structures (linux/inet_diag.h).
const (
	sockIDLen   = 48 // inet_diag_sockid
	reqV2Len    = 8 + sockIDLen
	diagMsgLen  = 4 + sockIDLen + 20
	nlmsgHdrLen = 16
	uidOffset   = 4 + sockIDLen + 12
)

// TCPOwner asks the kernel (NETLINK_SOCK_DIAG, one exact lookup, no dump)
// which uid owns the TCP socket whose local end is src and whose remote end
// is dst. Both must be of the same family; an IPv4 address given as
// IPv4-in-IPv6 is looked up as IPv4 first, then as a mapped IPv6 socket.
func TCPOwner(src, dst netip.AddrPort) (Owner, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return Owner{}, fmt.Errorf("sock_diag: %s and %s are of different families", src, dst)
	}
	if s.Is4() {
		o, err := sockDiag(unix.AF_INET, netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port()))
		if err == nil || !errors.Is(err, unix.ENOENT) {
			return o, err
		}
		// A dual-stack IPv6 client socket talking IPv4.
		return sockDiag(unix.AF_INET6, netip.AddrPortFrom(netip.AddrFrom16(s.As16()), src.Port()), netip.AddrPortFrom(netip.AddrFrom16(d.As16()), dst.Port()))
	}
	return sockDiag(unix.AF_INET6, src, dst)
}

func sockDiag(family uint8, src, dst netip.AddrPort) (Owner, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return Owner{}, fmt.Errorf("sock_diag: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return Owner{}, fmt.Errorf("sock_diag: %w", err)
	}
	const seq = 1
	req := make([]byte, nlmsgHdrLen+reqV2Len)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	r := req[nlmsgHdrLen:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	putAddr(id[4:20], src.Addr())
	putAddr(id[20:36], dst.Addr())
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Owner{}, fmt.Errorf("sock_diag: send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return Owner{}, fmt.Errorf("sock_diag: receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return Owner{}, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return Owner{}, errors.New("sock_diag: short error message")
				}
				if errno := -int32(ne.Uint32(m.Data)); errno != 0 {
					return Owner{}, fmt.Errorf("sock_diag: no TCP socket %s -> %s: %w", src, dst, syscall.Errno(errno))
				}
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.Data) < diagMsgLen {
					return Owner{}, fmt.Errorf("sock_diag: short answer (%d bytes)", len(m.Data))
				}
				return Owner{UID: ne.Uint32(m.Data[uidOffset:]), Inode: ne.Uint32(m.Data[uidOffset+4:])}, nil
			case unix.NLMSG_DONE:
				return Owner{}, fmt.Errorf("sock_diag: no TCP socket %s -> %s: %w", src, dst, unix.ENOENT)
			}
		}
	}
}

func putAddr(dst []byte, a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}

// peerCred reads SO_PEERCRED and SO_PEERGROUPS of a unix socket.
func peerCred(c net.Conn) (*unix.Ucred, []uint32, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil, fmt.Errorf("SO_PEERCRED: %T has no file descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	var cred *unix.Ucred
	var groups []uint32
	var opErr error
	err = raw.Control(func(fd uintptr) {
		cred, opErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if opErr != nil {
			opErr = fmt.Errorf("SO_PEERCRED: %w", opErr)
			return
		}
		groups, opErr = peerGroups(int(fd))
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return nil, nil, err
	}
	return cred, groups, nil
}

// peerGroups reads SO_PEERGROUPS; ERANGE tells the size needed.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for range 3 {
		size := uint32(len(buf) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch e {
		case 0:
			return buf[:size/4], nil
		case unix.ERANGE:
			buf = make([]uint32, size/4+1)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", e)
		}
	}
	return nil, errors.New("SO_PEERGROUPS: the group list keeps growing")
}

// pidOfSocket finds a process holding socket inode ino (0 if none).
func pidOfSocket(ino uint32) int32 {
	want := "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.ParseInt(p.Name(), 10, 32)
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && link == want {
				return int32(pid)
			}
		}
	}
	return 0
}
