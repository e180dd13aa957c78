package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// recordedSyscalls are the syscalls of the loops whose events the monitor
// reports (monitor/syscalls.go): openat in the open/close loop; socket,
// connect and accept4 in the connect loop; setuid in the setuid loop (the
// capabilities scope reports every setuid). A successful exec is reported
// from sched_process_exec.
var recordedSyscalls = []string{"openat", "socket", "connect", "accept4", "setuid"}

// attachRecordFloor attaches c/record.bpf.c: fexit programs on the
// syscalls and the BTF tracepoint sched_process_exec when the kernel loads
// and attaches them (BPF trampolines), else the syscall exit tracepoints
// and the classic sched_process_exec; via
// names the set in use. A reader drains the records every 10 ms, as the
// monitor does. detach fails if no record arrived.
func attachRecordFloor() (detach func() error, via string, err error) {
	spec, err := loadRecordBPF()
	if err != nil {
		return nil, "", fmt.Errorf("record floor: %w", err)
	}
	closers, fexitErr := attachRecordFexit(spec)
	via = "fexit"
	if fexitErr != nil {
		via = "tracepoints (fexit: " + fexitErr.Error() + ")"
		if closers, err = attachRecordTracepoints(spec); err != nil {
			return nil, "", fmt.Errorf("record floor: fexit: %v; tracepoints: %w", fexitErr, err)
		}
	}
	records := closers[0].(*ebpf.Map)
	rd, err := ringbuf.NewReader(records)
	if err != nil {
		closeAll(closers)
		return nil, "", fmt.Errorf("record floor reader: %w", err)
	}
	var n uint64 // records drained; the reader goroutine's until done
	var rec ringbuf.Record
	drain := func() {
		rd.SetDeadline(time.Now()) // what is there, then return
		for rd.ReadInto(&rec) == nil {
			n++
		}
	}
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// A sleep between drains, not a blocking wait: a goroutine blocked in
		// epoll_wait holds the P, and Go's sysmon then polls every 20 µs to
		// take it back, which on the loops' vCPU costs more than the records
		// (the monitor's reader avoids it too, monitor/ring.go).
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if rd.AvailableBytes() > 0 {
				drain()
			}
		}
	}()
	return func() error {
		// Links first, so no record is written after the last drain.
		err := closeAll(closers[1:])
		close(stop)
		<-done
		drain()
		err = errors.Join(err, rd.Close())
		err = errors.Join(err, records.Close())
		if err == nil && n == 0 {
			err = errors.New("record floor: the reader drained no record")
		}
		return err
	}, via, nil
}

// attachRecordFexit and attachRecordTracepoints return the ring buffer
// first, then the programs and links to close (links last, closed first).
func attachRecordFexit(spec *ebpf.CollectionSpec) ([]io.Closer, error) {
	var objs struct {
		Records *ebpf.Map     `ebpf:"records"`
		Exec    *ebpf.Program `ebpf:"record_exec"`
		Openat  *ebpf.Program `ebpf:"record_openat"`
		Socket  *ebpf.Program `ebpf:"record_socket"`
		Connect *ebpf.Program `ebpf:"record_connect"`
		Accept4 *ebpf.Program `ebpf:"record_accept4"`
		Setuid  *ebpf.Program `ebpf:"record_setuid"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadErr(err)
	}
	closers := []io.Closer{objs.Records, objs.Exec, objs.Openat, objs.Socket, objs.Connect, objs.Accept4, objs.Setuid}
	for _, p := range []*ebpf.Program{objs.Exec, objs.Openat, objs.Socket, objs.Connect, objs.Accept4, objs.Setuid} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			closeAll(closers)
			return nil, fmt.Errorf("attach %v: %w", p, err)
		}
		closers = append(closers, l)
	}
	return closers, nil
}

func attachRecordTracepoints(spec *ebpf.CollectionSpec) ([]io.Closer, error) {
	var objs struct {
		Records *ebpf.Map     `ebpf:"records"`
		Tp      *ebpf.Program `ebpf:"record_tp"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadErr(err)
	}
	closers := []io.Closer{objs.Records, objs.Tp}
	for _, name := range recordedSyscalls {
		l, err := link.Tracepoint("syscalls", "sys_exit_"+name, objs.Tp, nil)
		if err != nil {
			closeAll(closers)
			return nil, fmt.Errorf("attach sys_exit_%s: %w", name, err)
		}
		closers = append(closers, l)
	}
	l, err := link.Tracepoint("sched", "sched_process_exec", objs.Tp, nil)
	if err != nil {
		closeAll(closers)
		return nil, fmt.Errorf("attach sched_process_exec: %w", err)
	}
	return append(closers, l), nil
}

// closeAll closes in reverse order: links before their programs and maps.
func closeAll(cs []io.Closer) error {
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i].Close())
	}
	return errors.Join(errs...)
}

func loadErr(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("load: %+v", ve)
	}
	return fmt.Errorf("load: %w", err)
}
