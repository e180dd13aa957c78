package peer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/armorhost/kubearmor/feeder/peer/peertest"
)

func TestMain(m *testing.M) {
	switch peertest.Role() {
	case "":
		os.Exit(m.Run())
	case "dial":
		// Connect, say so, and hold the connection until stdin closes.
		c, err := net.Dial(peertest.Arg(0), peertest.Arg(1))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(c.LocalAddr())
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(2)
}

// dialAs connects to addr as uid 65534 (groups: 65534 and 100) from a
// child process and returns the server side of the connection and the
// child's pid.
func dialAs(t *testing.T, ln net.Listener) (net.Conn, int) {
	t.Helper()
	cmd := peertest.Command(t, peertest.Nobody, peertest.Nobody, []uint32{peertest.Nobody, 100}, "dial", ln.Addr().Network(), ln.Addr().String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Logf("child %d connected from %s", cmd.Process.Pid, line[:len(line)-1])
	return c, cmd.Process.Pid
}

// The kernel names the owner of a loopback TCP client: uid 65534 for a
// child running as nobody, uid 0 for this (root) process, over IPv4 and
// IPv6; the pid is found from the socket inode.
func TestTCPOwnerOnLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("no %s here: %v", addr, err)
			}
			defer ln.Close()
			c, pid := dialAs(t, ln)
			id := OfTCP(c.LocalAddr(), c.RemoteAddr())
			if id.Err != nil || id.UID != peertest.Nobody || id.Root() || id.Via != ViaTCP {
				t.Fatalf("identity of nobody's client: %+v", id)
			}
			if got := id.ResolvePID(); got != int32(pid) {
				t.Errorf("pid of the client's socket: %d, want %d", got, pid)
			}
			if !id.InGroup(65534) || id.InGroup(0) {
				t.Errorf("groups from the user database: gid %d groups %v", id.GID, id.Groups)
			}

			// This process, as root.
			rc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			rid := OfTCP(sc.LocalAddr(), sc.RemoteAddr())
			if !rid.Root() || rid.ResolvePID() != int32(os.Getpid()) {
				t.Fatalf("identity of root's client: %+v (pid %d)", rid, os.Getpid())
			}
		})
	}
}

// A connection that has gone, or a tuple that never existed, is not
// identified: the caller must treat it as unprivileged.
func TestTCPOwnerUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bogus := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	id := OfTCP(ln.Addr(), bogus)
	if id.Err == nil || id.Known() || id.Root() {
		t.Fatalf("a socket that does not exist was identified: %+v", id)
	}
	off := OfTCP(ln.Addr(), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5})
	if off.Err == nil || off.Root() || off.Local {
		t.Fatalf("an off-loopback peer was identified: %+v", off)
	}
	if (&Identity{}).Root() {
		t.Fatal("the zero identity counts as root")
	}
}

// SO_PEERCRED and SO_PEERGROUPS name the process at the other end of the
// unix socket with its real groups.
func TestUnixPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	dir, err := os.MkdirTemp("", "peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(path, 0o666)
	c, pid := dialAs(t, ln)
	id := OfUnix(c)
	if id.Err != nil || id.UID != peertest.Nobody || id.GID != peertest.Nobody || id.PID != int32(pid) || id.Via != ViaUnix {
		t.Fatalf("identity: %+v, want uid/gid 65534 pid %d", id, pid)
	}
	if !slices.Contains(id.Groups, 100) || !id.InGroup(100) || id.InGroup(0) {
		t.Errorf("supplementary groups %v, want 100 among them", id.Groups)
	}
	if id.Key() != "uid:65534" {
		t.Errorf("key %q", id.Key())
	}
}

// BenchmarkOfTCP is the cost of identifying one loopback TCP client (one
// sock_diag exact lookup; root needs no group lookup).
func BenchmarkOfTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	for b.Loop() {
		if id := OfTCP(sc.LocalAddr(), sc.RemoteAddr()); id.Err != nil {
			b.Fatal(id.Err)
		}
	}
}

// The kernel here can name socket owners (the TCP tests above rely on it);
// the probe must agree.
func TestProbeTCP(t *testing.T) {
	if err := ProbeTCP(); err != nil {
		t.Fatal(err)
	}
}
