package peer

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
)

// ProbeTCP checks that the kernel can name the owner of a loopback TCP
// client, by asking about a connection of our own on a throw-away listener.
// On Debian kernels the inet_diag backend for TCP (tcp_diag) is a module
// that the kernel loads on the first request; where it is not loaded and
// cannot be (a minimal image, modules disabled), every TCP peer would be
// unidentified, root included. One explicit modprobe is tried before giving
// up. The error says what follows from it.
func ProbeTCP() error {
	err := probeTCP()
	if err == nil {
		return nil
	}
	if p, lerr := exec.LookPath("modprobe"); lerr == nil {
		if out, merr := exec.Command(p, "-q", "tcp_diag").CombinedOutput(); merr == nil {
			if err = probeTCP(); err == nil {
				return nil
			}
		} else if len(out) > 0 {
			err = fmt.Errorf("%w (modprobe tcp_diag: %s)", err, out)
		}
	}
	return err
}

func probeTCP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sock_diag probe: %w", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("sock_diag probe: %w", err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.TCPAddr).AddrPort()
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	o, err := TCPOwner(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	if err != nil {
		return err
	}
	if want := uint32(os.Geteuid()); o.UID != want {
		return fmt.Errorf("sock_diag probe: the kernel names uid %d as the owner of our own socket, not %d", o.UID, want)
	}
	return nil
}
