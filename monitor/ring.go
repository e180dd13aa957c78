package monitor

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring consumes a BPF ring buffer through its memory mapping. Draining it
// makes no system call, unlike cilium/ebpf's ringbuf.Reader, which asks
// epoll before every drain. That matters more than it looks: the first
// system call after the Go runtime has gone idle wakes sysmon, which then
// polls every 20 µs for a millisecond or more, and a poll every 10 ms with a
// system call each time kept the agent's threads switching constantly
// (docs/benchmarks.md). Waiting for data goes through the Go runtime's
// network poller (the map's descriptor is pollable), so a waiting reader is
// a parked goroutine, not a thread blocked in epoll_wait that sysmon keeps
// preempting and retaking: an idle agent does not wake at all.
type ring struct {
	cons, prod []byte // the consumer page (ours to write) and producer page + data
	data       []byte // the data pages, mapped twice in a row so no record wraps
	mask       uint64

	file      *os.File        // a non-blocking duplicate of the map's descriptor, in the netpoller
	conn      syscall.RawConn // file's, for wait
	closeOnce sync.Once
}

// Record header bits (include/uapi/linux/bpf.h).
const (
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
	ringHeaderSize = 8
)

var errRingWoken = errors.New("ring buffer wait ended by wake")

func newRing(m *ebpf.Map) (*ring, error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("map %v is not a ring buffer", m)
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	r := &ring{mask: uint64(size - 1)}
	var err error
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	r.data = r.prod[page:]
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("duplicate ring buffer descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		r.close()
		return nil, fmt.Errorf("ring buffer descriptor: %w", err)
	}
	// A non-blocking descriptor joins the netpoller (os.NewFile).
	r.file = os.NewFile(uintptr(fd), "ringbuf")
	if r.conn, err = r.file.SyscallConn(); err != nil {
		r.close()
		return nil, fmt.Errorf("ring buffer descriptor: %w", err)
	}
	return r, nil
}

func (r *ring) consPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.cons[0])) }
func (r *ring) prodPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.prod[0])) }

// available is how many bytes of records wait to be drained.
func (r *ring) available() uint64 {
	return atomic.LoadUint64(r.prodPos()) - atomic.LoadUint64(r.consPos())
}

// drain hands every committed record to f, oldest first, and returns how
// many there were. The slice f gets points into the ring and is valid only
// until f returns. It stops early at a record the kernel has reserved but
// not yet committed: the next drain picks it up.
func (r *ring) drain(f func([]byte)) (int, error) {
	cons := atomic.LoadUint64(r.consPos())
	prod := atomic.LoadUint64(r.prodPos())
	n := 0
	for cons < prod {
		// The atomic load pairs with the kernel's commit (an xchg that
		// clears the busy bit after the data is written).
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusyBit != 0 {
			break
		}
		size := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		next := cons + (ringHeaderSize+size+7)&^7
		if next > prod {
			return n, fmt.Errorf("ring buffer record of %d bytes runs past the producer position", size)
		}
		if hdr&ringDiscardBit == 0 {
			start := (cons + ringHeaderSize) & r.mask
			f(r.data[start : start+size])
			n++
		}
		cons = next
		atomic.StoreUint64(r.consPos(), cons)
	}
	return n, nil
}

// wait parks the goroutine until the ring buffer has data or wake is
// called. Readiness is edge-triggered in the netpoller; the check after
// RawConn.Read has reset it sees data committed before the park, and data
// committed after it signals the edge, so no record is left waiting. The
// kernel signals when a record lands in an empty buffer (monitor.bpf.c):
// wait is for an empty buffer only.
func (r *ring) wait() error {
	err := r.conn.Read(func(uintptr) bool { return r.available() > 0 })
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errRingWoken
	}
	return err
}

// wake ends a wait in progress and every later one: it is for the end.
func (r *ring) wake() {
	_ = r.file.SetReadDeadline(time.Unix(1, 0))
}

func (r *ring) close() error {
	var errs []error
	r.closeOnce.Do(func() {
		for _, m := range [][]byte{r.cons, r.prod} {
			if m != nil {
				errs = append(errs, unix.Munmap(m))
			}
		}
		if r.file != nil {
			errs = append(errs, r.file.Close())
		}
	})
	return errors.Join(errs...)
}
