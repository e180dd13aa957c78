package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Paths the loops touch. No generated rule may match them (policies_test.go
// checks), so any denial aborts the run instead of skewing it.
const (
	benchRoot = "/tmp/bench"
	execPath  = benchRoot + "/bin/nop"
	openPath  = benchRoot + "/data/sub/file.txt"
	probePath = benchRoot + "/probe/denied" // blocked by every rule set: the enforcing probe
)

// nopELF is the smallest static x86-64 program that exits 0: one PT_LOAD
// segment holding the headers and `mov eax, 60; xor edi, edi; syscall`.
// A shell or Go binary would spend most of the exec in its own start-up and
// hide the hook's cost; this keeps the measured work close to fork+exec+exit.
func nopELF() []byte {
	const base = 0x400000
	const ehdr, phdr = 64, 56
	code := []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05}
	b := make([]byte, ehdr+phdr+len(code))
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1}) // 64-bit, little endian, version 1
	le.PutUint16(b[16:], 2)                       // ET_EXEC
	le.PutUint16(b[18:], 62)                      // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+ehdr+phdr) // entry
	le.PutUint64(b[32:], ehdr)           // program headers
	le.PutUint16(b[52:], ehdr)
	le.PutUint16(b[54:], phdr)
	le.PutUint16(b[56:], 1)
	p := b[ehdr:]
	le.PutUint32(p[0:], 1)     // PT_LOAD
	le.PutUint32(p[4:], 5)     // R+X
	le.PutUint64(p[16:], base) // vaddr
	le.PutUint64(p[24:], base) // paddr
	le.PutUint64(p[32:], uint64(len(b)))
	le.PutUint64(p[40:], uint64(len(b)))
	le.PutUint64(p[48:], 0x1000)
	copy(b[ehdr+phdr:], code)
	return b
}

// prepareFiles writes the programs and the file the loops use.
func prepareFiles() error {
	elf := nopELF()
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{execPath, elf, 0o755},
		{probePath, elf, 0o755},
		{openPath, []byte("benchmark\n"), 0o644},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("prepare %s: %w", f.path, err)
		}
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("prepare %s: %w", f.path, err)
		}
	}
	return nil
}

// loop is one measured operation, repeated; batch operations run between
// two looks at the clock.
type loop struct {
	name  string
	batch int
	run   func(n int) error
}

// chunk runs l in batches for at least dur and returns the time per op.
// Bounding chunks by time, not count, bounds the whole run on a host whose
// speed varies several-fold with other people's load.
func chunk(l loop, dur time.Duration) (time.Duration, error) {
	start := time.Now()
	ops := 0
	for {
		if err := l.run(l.batch); err != nil {
			return 0, fmt.Errorf("%s: %w", l.name, err)
		}
		ops += l.batch
		if took := time.Since(start); took >= dur {
			return took / time.Duration(ops), nil
		}
	}
}

// sink keeps the reference loop's result alive.
var sink uint64

// referenceLoop is pure user-space work that no LSM hook sees, as a loop of
// its own. Timed next to each chunk, it tells how fast the emulated CPU ran
// at that moment, so that a chunk can be expressed in reference units.
var referenceLoop = loop{name: "reference", batch: 1, run: func(n int) error {
	x := sink | 1
	for i := 0; i < n*4096; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	sink = x
	return nil
}}

// execOnce forks and execs path and waits for it; the status must be 0.
func execOnce(path string) error {
	pid, err := syscall.ForkExec(path, []string{filepath.Base(path)}, &syscall.ProcAttr{})
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return fmt.Errorf("wait %s: %w", path, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("%s ended with status %v", path, ws)
	}
	return nil
}

func execLoop(n int) error {
	for i := 0; i < n; i++ {
		if err := execOnce(execPath); err != nil {
			return err
		}
	}
	return nil
}

func openLoop(n int) error {
	for i := 0; i < n; i++ {
		fd, err := syscall.Open(openPath, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", openPath, err)
		}
		if err := syscall.Close(fd); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	return nil
}

// connectLoop returns a loop that connects to a loopback listener, accepts
// on the same thread, and closes both ends. The client closes with an RST
// (SO_LINGER 0) so that no TIME_WAIT entry eats ephemeral ports across
// thousands of iterations.
func connectLoop() (loop, func(), error) {
	ln, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return loop{}, nil, fmt.Errorf("listener socket: %w", err)
	}
	closeLn := func() { _ = syscall.Close(ln) }
	addr := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(ln, addr); err != nil {
		closeLn()
		return loop{}, nil, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(ln, 128); err != nil {
		closeLn()
		return loop{}, nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := syscall.Getsockname(ln)
	if err != nil {
		closeLn()
		return loop{}, nil, fmt.Errorf("getsockname: %w", err)
	}
	addr.Port = sa.(*syscall.SockaddrInet4).Port
	linger := &syscall.Linger{Onoff: 1, Linger: 0}
	run := func(n int) error {
		for i := 0; i < n; i++ {
			c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket: %w", err)
			}
			if err := syscall.Connect(c, addr); err != nil {
				_ = syscall.Close(c)
				return fmt.Errorf("connect 127.0.0.1:%d: %w", addr.Port, err)
			}
			s, _, err := syscall.Accept4(ln, syscall.SOCK_CLOEXEC)
			if err != nil {
				_ = syscall.Close(c)
				return fmt.Errorf("accept: %w", err)
			}
			if err := syscall.SetsockoptLinger(c, syscall.SOL_SOCKET, syscall.SO_LINGER, linger); err != nil {
				return fmt.Errorf("SO_LINGER: %w", err)
			}
			_ = syscall.Close(c)
			_ = syscall.Close(s)
		}
		return nil
	}
	return loop{name: "connect", batch: 4, run: run}, closeLn, nil
}

// setuidLoop calls setuid(0) as root: a call that succeeds and changes
// nothing. It is the raw system call on this thread only; Go's
// syscall.Setuid would signal every thread of the process to do the same.
func setuidLoop(n int) error {
	for i := 0; i < n; i++ {
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0); e != 0 {
			return fmt.Errorf("setuid(0): %w", e)
		}
	}
	return nil
}

// getpidLoop is the cheapest system call, made each time (the raw call,
// nothing cached in user space): what every syscall pays for hooks on all
// syscalls.
func getpidLoop(n int) error {
	for i := 0; i < n; i++ {
		syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	}
	return nil
}
