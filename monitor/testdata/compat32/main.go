// Command compat32 makes the monitor's syscalls through the 32-bit entry
// (Go's linux/386 syscalls are int 0x80; its socket calls go through
// socketcall(2)). Built with GOARCH=386 by TestCompat32.
//
//	compat32 FILE TCP-PORT
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// i386 syscall numbers.
const (
	sysConnect    = 362 // the direct connect, not socketcall
	sysSetuid16   = 23
	sysSetuid32   = 213
	sysSocketcall = 102
	socketAccept  = 5 // socketcall's SYS_ACCEPT: the 32-bit ABI has no accept(2)
)

func main() {
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "compat32:", err)
		os.Exit(1)
	}
}

func run(file, portText string) error {
	port, err := strconv.Atoi(portText)
	if err != nil {
		return err
	}
	fd, err := syscall.Open(file, syscall.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	syscall.Close(fd)

	loop := [4]byte{127, 0, 0, 1}
	// socketcall(SYS_SOCKET), socketcall(SYS_CONNECT)
	s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Connect(s, &syscall.SockaddrInet4{Port: port, Addr: loop}); err != nil {
		return fmt.Errorf("socketcall connect: %w", err)
	}
	syscall.Close(s)
	// connect(2) itself
	s, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: uint16(port>>8 | port<<8&0xff00), Addr: loop}
	if _, _, e := syscall.RawSyscall(sysConnect, uintptr(s), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); e != 0 {
		return fmt.Errorf("connect: %w", e)
	}
	syscall.Close(s)

	// setuid32(0) and the 16-bit setuid(0): as root they succeed.
	syscall.RawSyscall(sysSetuid32, 0, 0, 0)
	syscall.RawSyscall(sysSetuid16, 0, 0, 0)

	// A DNS query by socketcall(SYS_SENDTO). Something listens on port 53
	// or the ICMP error would not matter: the datagram is sent either way.
	u, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	q := []byte{0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range []string{"compat32", "example", "test"} {
		q = append(append(q, byte(len(l))), l...)
	}
	q = append(q, 0, 0, 1, 0, 1) // type A, class IN
	if err := syscall.Sendto(u, q, 0, &syscall.SockaddrInet4{Port: 53, Addr: loop}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	syscall.Close(u)

	if err := acceptSocketcall(); err != nil {
		return err
	}

	// A failed execve.
	if err := syscall.Exec("/nonexistent/compat32-exec", []string{"compat32-exec", "arg1"}, nil); err == nil {
		return fmt.Errorf("exec of a missing file succeeded")
	}
	return nil
}

// acceptSocketcall accepts a connection to itself by socketcall(SYS_ACCEPT).
func acceptSocketcall() error {
	l, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(l)
	if err := syscall.Bind(l, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(l, 1); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(l)
	if err != nil {
		return err
	}
	c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(c)
	if err := syscall.Connect(c, sa); err != nil {
		return fmt.Errorf("connect to self: %w", err)
	}
	var peer [16]byte
	n := uint32(len(peer))
	args := [3]uintptr{uintptr(l), uintptr(unsafe.Pointer(&peer[0])), uintptr(unsafe.Pointer(&n))}
	fd, _, e := syscall.RawSyscall(sysSocketcall, socketAccept, uintptr(unsafe.Pointer(&args[0])), 0)
	if e != 0 {
		return fmt.Errorf("socketcall accept: %w", e)
	}
	syscall.Close(int(fd))
	return nil
}
