// Package monitor is the system monitor: BPF programs on stable tracepoints
// (process exec/fork/exit and the syscalls of upstream KubeArmor's monitor)
// report through one ring buffer; user space decodes each record into an
// event.Event with upstream's Operation, Resource, Data and return value,
// and keeps a process table current so events are attributed to a process.
//
// The ring buffer reader never waits for processing: a bounded queue sits
// between the two, and every record lost in the kernel (ring buffer full)
// or dropped in user space (queue full) is counted (Stats).
package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/kernelfs"
	"github.com/armorhost/kubearmor/proctable"
)

// Options configure Open. Zero values take the defaults.
type Options struct {
	// Visibility are the scopes whose events are reported.
	Visibility Scope
	// FailuresOf are scopes whose failed syscalls are reported even when
	// the scope is not visible (a denied setuid must still raise the
	// DefaultPosture alert). Their programs are attached; successes are
	// dropped in the kernel.
	FailuresOf Scope
	// Table is the process table to keep current. Nil: a new table, seeded
	// from /proc.
	Table *proctable.Table
	// QueueLen bounds the records waiting between the ring buffer reader
	// and the decoder (default 16384; they queue in batches of up to 256).
	QueueLen int
	// RingBufferBytes is the kernel ring buffer's size, a power of two
	// multiple of the page size (default 4 MiB: at ~150 bytes a record,
	// 28,000 records between two 10 ms polls; the mapping shows twice in
	// the agent's RSS because the kernel maps the data pages twice).
	RingBufferBytes int
	// ProcRoot is procfs as the agent sees the host's (default "/proc").
	ProcRoot string
	// PollInterval is the longest a record waits in the ring buffer before
	// the reader looks (default 10ms). While records flow the reader drains
	// the buffer at this interval; the kernel does not wake it per event,
	// which saves an interrupt and a thread hand-off per event. A poll that
	// finds nothing sends the reader to sleep until the next record.
	PollInterval time.Duration
	// Hooks forces how syscalls are watched (HooksFexit or
	// HooksTracepoints); HooksAuto tries fexit and falls back to the
	// tracepoints. A forced path that cannot be used fails Open.
	Hooks Hooks
	// Unneeded, when set, is asked about each syscall record that would
	// become an event, before the event is decoded: ev then holds only its
	// Operation, Syscall and Retval. True means the consumer has no use for
	// the event and has accounted for it as if emit had been called with
	// it; the monitor counts it emitted (Stats.Emitted, and Undecoded) but
	// neither decodes nor attributes it. False: it is decoded and emitted.
	// It is called from Run's goroutine, in ring-buffer order, and must
	// answer from the consumer's state when it is called: a rule added or a
	// subscriber attached before the call must make it false.
	//
	// It is a question per record rather than a table of syscalls the
	// consumer installs because the answer depends on more than the
	// syscall (who watches now, whether the call failed), and because the
	// consumer's counting (a log counted as published to nobody) has to
	// happen in the same step as the answer: a subscriber that attaches
	// between a check and a count would otherwise miss an event it wanted.
	Unneeded func(ev *event.Event) bool
}

// Stats are the monitor's counters since Open.
type Stats struct {
	Received     uint64 // records read from the ring buffer
	Emitted      uint64 // events handed to emit
	Lost         uint64 // records the kernel could not write: ring buffer full
	StashFull    uint64 // syscalls not reported: the in-kernel argument stash was full
	Dropped      uint64 // records dropped in user space: queue full
	DecodeErrors uint64
	// Undecoded are the emitted events Options.Unneeded took without
	// their being decoded (part of Emitted).
	Undecoded uint64
	// Hooks is how syscalls are watched; HooksNote why fexit is not used
	// when the kernel refused it, or which entry points have kretprobes.
	Hooks     Hooks
	HooksNote string
}

// Monitor satisfies agent.Monitor.
type Monitor struct {
	opts      Options
	objs      baseObjects
	progs     []*ebpf.Program // the syscall programs of the path in use
	links     []link.Link
	hooks     Hooks
	hooksNote string
	ring      *ring
	table     *proctable.Table
	dec       decoder
	unwatched []string // tracepoints this kernel lacks

	received, emitted, dropped, decodeErrors, undecoded atomic.Uint64

	closeOnce sync.Once
	running   atomic.Bool
	closing   chan struct{}         // closed by Close: the reader stops
	readDone  chan struct{}         // closed when the reader has stopped touching the ring
	final     atomic.Pointer[Stats] // counters as they were at Close
}

// baseObjects are the maps and the process lifecycle programs, loaded
// whatever the syscall path.
type baseObjects struct {
	monitorBPFMaps
	SchedExec *ebpf.Program `ebpf:"sched_exec"`
	SchedFork *ebpf.Program `ebpf:"sched_fork"`
	SchedExit *ebpf.Program `ebpf:"sched_exit"`
}

func (o *baseObjects) Close() error {
	return errors.Join(o.monitorBPFMaps.Close(), closeAll(o.SchedExec, o.SchedFork, o.SchedExit))
}

func closeAll(ps ...*ebpf.Program) error {
	var errs []error
	for _, p := range ps {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// Open loads the programs, attaches those of the requested scopes and seeds
// the process table. Nothing is reported until Run.
func Open(opts Options) (*Monitor, error) {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 16384
	}
	if opts.RingBufferBytes <= 0 {
		opts.RingBufferBytes = 4 << 20
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 10 * time.Millisecond
	}
	m := &Monitor{opts: opts, table: opts.Table, closing: make(chan struct{}), readDone: make(chan struct{})}
	if m.table == nil {
		m.table = proctable.New(proctable.Options{ProcRoot: opts.ProcRoot, ReadProcOnMiss: true})
	}

	spec, err := loadMonitorBPF()
	if err != nil {
		return nil, fmt.Errorf("monitor: load BPF spec: %w", err)
	}
	self, err := selfHostPID(opts.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if err := spec.Variables["self_tgid"].Set(self); err != nil {
		return nil, fmt.Errorf("monitor: set self_tgid: %w", err)
	}
	if err := spec.Variables["report_success"].Set(uint32(opts.Visibility)); err != nil {
		return nil, fmt.Errorf("monitor: set report_success: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(uint64(opts.RingBufferBytes / 8)); err != nil {
		return nil, fmt.Errorf("monitor: set wakeup_bytes: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(opts.RingBufferBytes)
	if err := spec.LoadAndAssign(&m.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("monitor: load BPF programs: %+v", ve)
		}
		return nil, fmt.Errorf("monitor: load BPF programs: %w", err)
	}
	m.ring, err = newRing(m.objs.Events)
	if err != nil {
		m.objs.Close()
		return nil, fmt.Errorf("monitor: ring buffer reader: %w", err)
	}

	if err := ensureTracefs(); err != nil {
		m.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	// The table is seeded after attaching, so a process started in between
	// is either seen by its exec record or found in /proc.
	if err := m.attach(spec); err != nil {
		m.Close()
		return nil, err
	}
	if opts.Table == nil {
		if _, err := m.table.SeedFromProc(); err != nil {
			m.Close()
			return nil, fmt.Errorf("monitor: %w", err)
		}
	}
	m.dec = decoder{
		table:      m.table,
		visibility: opts.Visibility,
		clock:      event.NewBootClock(),
		unneeded:   opts.Unneeded,
	}
	return m, nil
}

func (m *Monitor) attach(spec *ebpf.CollectionSpec) error {
	watched := m.opts.Visibility | m.opts.FailuresOf
	m.hooks = HooksNone
	if watched == 0 {
		return nil
	}
	// Process lifecycle feeds the process table whatever the scopes.
	lifecycle := []struct {
		name string
		do   func() (link.Link, error)
	}{
		{"sched_process_exec", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: m.objs.SchedExec})
		}},
		{"sched_process_fork", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: m.objs.SchedFork})
		}},
		{"sched_process_exit", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: m.objs.SchedExit})
		}},
	}
	for _, l := range lifecycle {
		lk, err := l.do()
		if err != nil {
			return fmt.Errorf("monitor: attach %s: %w", l.name, err)
		}
		m.links = append(m.links, lk)
	}

	// Any syscall tracepoint puts every syscall of every task on the
	// kernel's slower tracing path. With process visibility alone,
	// sched_process_exec reports successful execs without that cost; the
	// execve hooks (failed execs, execveat's fd and flags) are added when
	// other syscalls are watched anyway or failures are asked for.
	traceExec := m.opts.FailuresOf&ScopeProcess != 0 ||
		m.opts.Visibility&ScopeProcess != 0 && watched&^ScopeProcess != 0
	if !traceExec && watched&^ScopeProcess == 0 {
		return nil
	}
	if m.opts.Hooks != HooksTracepoints {
		err := m.tryFexit(spec, watched, traceExec)
		if err == nil {
			m.hooks = HooksFexit
			return nil
		}
		if m.opts.Hooks == HooksFexit {
			return fmt.Errorf("monitor: fexit hooks: %w", err)
		}
		m.hooksNote = "fexit refused, syscall tracepoints used instead: " + err.Error()
	}
	m.hooks = HooksTracepoints
	return m.attachTracepoints(spec, watched, traceExec)
}

// tryFexit attaches the fexit path, or nothing.
func (m *Monitor) tryFexit(spec *ebpf.CollectionSpec, watched Scope, traceExec bool) error {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("kernel BTF: %w", err)
	}
	targets, missing, probed, err := fexitTargets(kernel, watched, traceExec)
	if err != nil {
		return err
	}
	if err := m.attachFexit(spec, targets); err != nil {
		return err
	}
	m.unwatched = missing
	if len(probed) > 0 {
		m.hooksNote = "kretprobes on " + strings.Join(probed, ", ") + " (named twice in the kernel's BTF)"
	}
	return nil
}

// Hooks is how the monitor watches syscalls, and a note: why not by fexit
// when the kernel refused it, or which entry points have kretprobes.
func (m *Monitor) Hooks() (Hooks, string) { return m.hooks, m.hooksNote }

// Table is the process table the monitor keeps current; the pipeline uses
// it to attribute events (Describe).
func (m *Monitor) Table() *proctable.Table { return m.table }

// Unwatched lists the traced syscalls this kernel has no tracepoint for.
func (m *Monitor) Unwatched() []string { return m.unwatched }

// Run reads records until ctx ends and hands each decoded event to emit.
// emit is called from one goroutine, in ring-buffer order, and must not
// block for long: while it runs, records queue up and are counted as
// dropped once the queue is full.
func (m *Monitor) Run(ctx context.Context, emit func(event.Event)) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("monitor: Run called twice")
	}
	select {
	case <-m.closing:
		return errors.New("monitor: Run after Close")
	default:
	}
	// Records travel in batches: one channel operation (and at most one
	// goroutine wakeup, which in a VM may cost an interrupt on another CPU)
	// per batch instead of per record.
	queue := make(chan *batch, max(1, m.opts.QueueLen/batchRecords))
	pool := sync.Pool{New: func() any { return newBatch() }}

	readErr := make(chan error, 1)
	go func() {
		defer close(queue)
		readErr <- m.read(ctx, queue, &pool)
	}()

	var ev event.Event
	for b := range queue {
		m.decodeBatch(b, &ev, emit)
		b.reset()
		pool.Put(b)
	}
	return <-readErr
}

// decodeBatch decodes b's records in order, counting them, and hands each
// event to emit; ev is the decoder's scratch event. The process table
// changes of runs of records that emit nothing are made under one hold of
// its lock (decoder.decodeRecord).
func (m *Monitor) decodeBatch(b *batch, ev *event.Event, emit func(event.Event)) {
	defer m.dec.endBatch()
	start := 0
	for _, end := range b.ends {
		out, err := m.dec.decodeRecord(b.buf[start:end], ev)
		start = end
		switch {
		case err != nil:
			m.decodeErrors.Add(1)
		case out == outEvent:
			m.emitted.Add(1)
			emit(*ev)
		case out == outTaken:
			m.emitted.Add(1)
			m.undecoded.Add(1)
		}
	}
}

const (
	batchRecords = 256      // records per batch at most
	batchBytes   = 64 << 10 // and about this many bytes
)

// batch is a run of raw records copied out of the ring buffer.
type batch struct {
	buf  []byte
	ends []int // end offset of each record in buf
}

func newBatch() any {
	return &batch{buf: make([]byte, 0, batchBytes+4096), ends: make([]int, 0, batchRecords)}
}

func (b *batch) reset() { b.buf, b.ends = b.buf[:0], b.ends[:0] }

// add copies rec into b and reports whether b is full.
func (b *batch) add(rec []byte) bool {
	b.buf = append(b.buf, rec...)
	b.ends = append(b.ends, len(b.buf))
	return len(b.ends) >= batchRecords || len(b.buf) >= batchBytes
}

// read copies records from the ring buffer into batches until Close or
// the end of ctx. A batch is handed over when full or when the ring buffer
// has nothing more to give; if the queue is full it is dropped and its
// records counted.
func (m *Monitor) read(ctx context.Context, queue chan<- *batch, pool *sync.Pool) error {
	defer close(m.readDone)
	b := pool.Get().(*batch)
	flush := func() {
		if len(b.ends) == 0 {
			return
		}
		select {
		case queue <- b:
			b = pool.Get().(*batch)
		default:
			m.dropped.Add(uint64(len(b.ends)))
			b.reset()
		}
	}
	add := func(rec []byte) {
		m.received.Add(1)
		if b.add(rec) {
			flush()
		}
	}
	// While events flow, poll on a Go timer: the kernel does not wake the
	// reader per record (monitor.bpf.c), which saves an interrupt and a
	// thread hand-off per event. A poll that finds nothing parks the
	// reader until the kernel wakes it, which it does for the first record
	// into the empty buffer (and when the buffer fills past 1/8): a trickle
	// of events costs a wakeup and one empty poll each, an idle agent
	// nothing, and no record waits more than one PollInterval once the
	// reader is awake.
	stop := context.AfterFunc(ctx, m.ring.wake)
	defer stop()
	tick := time.NewTicker(m.opts.PollInterval)
	defer tick.Stop()
	for {
		n, err := m.ring.drain(add)
		flush()
		if err != nil {
			return fmt.Errorf("monitor: read ring buffer: %w", err)
		}
		if n == 0 {
			if err := m.ring.wait(); err != nil && !errors.Is(err, errRingWoken) {
				return fmt.Errorf("monitor: wait for ring buffer: %w", err)
			}
		}
		// The ticker is off the runtime's timer heap while the reader is
		// parked in wait: it costs nothing then.
		select {
		case <-ctx.Done():
			return nil
		case <-m.closing:
			// Close has detached the programs: what they wrote still counts.
			_, err := m.ring.drain(add)
			flush()
			if err != nil {
				return fmt.Errorf("monitor: read ring buffer: %w", err)
			}
			return nil
		case <-tick.C:
		}
	}
}

// Stats returns the counters; Lost and StashFull are summed over CPUs.
func (m *Monitor) Stats() Stats {
	s := Stats{
		Hooks:        m.hooks,
		HooksNote:    m.hooksNote,
		Received:     m.received.Load(),
		Emitted:      m.emitted.Load(),
		Dropped:      m.dropped.Load(),
		DecodeErrors: m.decodeErrors.Load(),
		Undecoded:    m.undecoded.Load(),
	}
	if f := m.final.Load(); f != nil {
		s.Lost, s.StashFull = f.Lost, f.StashFull
	} else if m.objs.Counters != nil {
		s.Lost = m.counter(0)
		s.StashFull = m.counter(1)
	}
	return s
}

func (m *Monitor) counter(idx uint32) uint64 {
	var perCPU []uint64
	if err := m.objs.Counters.Lookup(idx, &perCPU); err != nil {
		return 0
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

// Close detaches every program and frees the kernel objects. Run returns
// once the records already read are processed.
func (m *Monitor) Close() error {
	var errs []error
	m.closeOnce.Do(func() {
		final := m.Stats()
		m.final.Store(&final)
		for _, l := range m.links {
			if err := l.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		m.links = nil
		if err := closeAll(m.progs...); err != nil {
			errs = append(errs, err)
		}
		m.progs = nil
		if m.ring != nil {
			// The reader must be off the mapping before it goes away.
			close(m.closing)
			m.ring.wake()
			if m.running.Load() {
				<-m.readDone
			}
			if err := m.ring.close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := m.objs.Close(); err != nil {
			errs = append(errs, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("monitor: close: %w", err)
	}
	return nil
}

// selfHostPID is the agent's pid in the outermost pid namespace procfs
// shows (the host's when procfs is the host's), which is what the kernel
// compares against.
func selfHostPID(procRoot string) (uint32, error) {
	b, err := os.ReadFile(procRoot + "/self/status")
	if err != nil {
		return 0, fmt.Errorf("read own status: %w", err)
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("NStgid:")); ok {
			f := bytes.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseUint(string(f[0]), 10, 32)
				if err == nil {
					return uint32(n), nil
				}
			}
		}
	}
	return uint32(os.Getpid()), nil
}

// ensureTracefs mounts tracefs when neither it nor debugfs is: attaching to
// a tracepoint needs its id from tracefs, and nothing guarantees the mount
// on a host whose init is not systemd.
func ensureTracefs() error {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
	}
	_, err := kernelfs.Ensure(kernelfs.Tracefs)
	return err
}
