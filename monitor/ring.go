package monitor

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
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
// (docs/benchmarks.md). Only wait, used when the buffer has been empty for a
// while, enters the kernel.
type ring struct {
	cons, prod []byte // the consumer page (ours to write) and producer page + data
	data       []byte // the data pages, mapped twice in a row so no record wraps
	mask       uint64

	epfd, wakefd int
	closeOnce    sync.Once
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
	r := &ring{mask: uint64(size - 1), epfd: -1, wakefd: -1}
	var err error
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	r.data = r.prod[page:]
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		r.close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if r.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		r.close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{m.FD(), r.wakefd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			r.close()
			return nil, fmt.Errorf("epoll add: %w", err)
		}
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

// wait blocks until the ring buffer has data or wake is called. The kernel
// reports data on the map's descriptor level-triggered, so data committed
// before the call returns at once.
func (r *ring) wait() error {
	var evs [2]unix.EpollEvent
	for {
		n, err := unix.EpollWait(r.epfd, evs[:], -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == r.wakefd {
				var buf [8]byte
				_, _ = unix.Read(r.wakefd, buf[:])
				return errRingWoken
			}
		}
		if n > 0 {
			return nil
		}
	}
}

// wake ends a wait in progress, or the next one.
func (r *ring) wake() {
	one := [8]byte{1}
	_, _ = unix.Write(r.wakefd, one[:])
}

func (r *ring) close() error {
	var errs []error
	r.closeOnce.Do(func() {
		for _, m := range [][]byte{r.cons, r.prod} {
			if m != nil {
				errs = append(errs, unix.Munmap(m))
			}
		}
		for _, fd := range []int{r.epfd, r.wakefd} {
			if fd >= 0 {
				errs = append(errs, unix.Close(fd))
			}
		}
	})
	return errors.Join(errs...)
}
