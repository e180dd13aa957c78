package monitor

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Hooks is how the monitor watches syscalls.
type Hooks string

const (
	// HooksAuto: fexit where the kernel accepts it, else tracepoints (Options only).
	HooksAuto Hooks = ""
	// HooksFexit: fexit programs on the traced syscalls' entry points,
	// 64-bit and 32-bit; only those syscalls pay.
	HooksFexit Hooks = "fexit (trampolines)"
	// HooksTracepoints: the syscall exit tracepoints. Any of them puts
	// every syscall of every task on the kernel's tracing path, and they
	// do not see 32-bit (int 0x80) syscalls.
	HooksTracepoints Hooks = "syscall tracepoints (every syscall pays)"
	// HooksNone: no syscall is watched (process lifecycle only).
	HooksNone Hooks = "none (process lifecycle only)"
)

// Register layouts, the attach cookie's high 32 bits (enum abi in
// monitor.bpf.c); the low 32 bits are the x86-64 syscall number.
const (
	abiX64        = 0
	abiIA32       = 1
	abiSocketcall = 2
)

// tracepointObjects are the programs of the tracepoint path, loaded only
// when it is used.
type tracepointObjects struct {
	SysEnterExecve   *ebpf.Program `ebpf:"sys_enter_execve"`
	SysEnterExecveat *ebpf.Program `ebpf:"sys_enter_execveat"`
	SysExitFile      *ebpf.Program `ebpf:"sys_exit_file"`
	SysExitNet       *ebpf.Program `ebpf:"sys_exit_net"`
	SysExitCred      *ebpf.Program `ebpf:"sys_exit_cred"`
	SysExitExec      *ebpf.Program `ebpf:"sys_exit_exec"`
	SysExitSend      *ebpf.Program `ebpf:"sys_exit_send"`
}

// fexitProgs are the fexit programs by kind (one body each, shared with
// the tracepoint programs in monitor.bpf.c).
var fexitProgs = map[exitKind]string{
	exitFile: "fexit_file", exitNet: "fexit_net", exitCred: "fexit_cred",
	exitExec: "fexit_exec", exitSend: "fexit_send",
}

// fexitTarget is one kernel function an fexit (or fentry) program is
// loaded for.
type fexitTarget struct {
	prog   string
	fn     string
	cookie uint64
	entry  bool // fentry
}

// fexitTargets lists the functions to attach for the watched scopes: for
// each traced syscall its 64-bit entry point and the 32-bit ones the kernel
// has, socketcall for the network scope, and execveat's entry for its
// stashed arguments. A syscall whose 64-bit entry point the kernel lacks is
// returned in missing (as the tracepoint path reports it).
//
// A name the kernel's BTF has twice (the weak stubs of kernel/sys_ni.c
// beside the real wrapper, e.g. __x64_sys_connect on Debian's 6.1 and 6.12)
// cannot be attached by name with cilium/ebpf, which refuses ambiguous
// targets: that is an error, and the caller keeps the tracepoints rather
// than lose the syscall.
func fexitTargets(kernel *btf.Spec, watched Scope, traceExec bool) (targets []fexitTarget, missing []string, err error) {
	var ambiguous []string
	has := func(fn string) bool {
		var f *btf.Func
		err := kernel.TypeByName(fn, &f)
		if errors.Is(err, btf.ErrMultipleMatches) {
			ambiguous = append(ambiguous, fn)
		}
		return err == nil
	}
	for _, t := range tracedSyscalls {
		if t.scope&watched == 0 || t.exit == exitExec && !traceExec {
			continue
		}
		x64 := "__x64_sys_" + t.kernelName()
		if !has(x64) {
			missing = append(missing, t.name)
			continue
		}
		targets = append(targets, fexitTarget{prog: fexitProgs[t.exit], fn: x64, cookie: uint64(t.nr) | abiX64<<32})
		for _, fn := range t.ia32 {
			if has(fn) {
				targets = append(targets, fexitTarget{prog: fexitProgs[t.exit], fn: fn, cookie: uint64(t.nr) | abiIA32<<32})
			}
		}
		if t.nr == sysExecveat {
			targets = append(targets, fexitTarget{prog: "fentry_execveat", fn: x64, cookie: uint64(t.nr) | abiX64<<32, entry: true})
			if fn := t.ia32[0]; has(fn) {
				targets = append(targets, fexitTarget{prog: "fentry_execveat", fn: fn, cookie: uint64(t.nr) | abiIA32<<32, entry: true})
			}
		}
	}
	if watched&ScopeNetwork != 0 && has(socketcallFunc) {
		targets = append(targets, fexitTarget{prog: "fexit_socketcall", fn: socketcallFunc, cookie: abiSocketcall << 32})
	}
	if len(ambiguous) > 0 {
		return nil, nil, fmt.Errorf("%d entry points are ambiguous in the kernel's BTF (%s, ...)", len(ambiguous), ambiguous[0])
	}
	return targets, missing, nil
}

// attachFexit loads one copy of a program per target (a trampoline program
// is verified for one function) and attaches it with its cookie. On any
// failure everything it attached is undone: the caller falls back to the
// tracepoints for the whole monitor rather than lose some syscalls.
func (m *Monitor) attachFexit(spec *ebpf.CollectionSpec, targets []fexitTarget) error {
	var progs []*ebpf.Program
	var links []link.Link
	undo := func() {
		for _, l := range links {
			l.Close()
		}
		for _, p := range progs {
			p.Close()
		}
	}
	maps := map[string]*ebpf.Map{
		"events": m.objs.Events, "stashes": m.objs.Stashes,
		"scratch": m.objs.Scratch, "counters": m.objs.Counters,
	}
	for _, tg := range targets {
		p, err := loadFor(spec, maps, tg)
		if err != nil {
			undo()
			return fmt.Errorf("load %s for %s: %w", tg.prog, tg.fn, err)
		}
		progs = append(progs, p)
		at := ebpf.AttachTraceFExit
		if tg.entry {
			at = ebpf.AttachTraceFEntry
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: at, Cookie: tg.cookie})
		if err != nil {
			undo()
			return fmt.Errorf("attach %s to %s: %w", tg.prog, tg.fn, err)
		}
		links = append(links, l)
	}
	m.progs = append(m.progs, progs...)
	m.links = append(m.links, links...)
	return nil
}

// loadFor loads program tg.prog of spec for function tg.fn, sharing the
// monitor's maps.
func loadFor(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, tg fexitTarget) (*ebpf.Program, error) {
	ps := spec.Programs[tg.prog]
	if ps == nil {
		return nil, fmt.Errorf("no program %s", tg.prog)
	}
	ps = ps.Copy()
	ps.AttachTo = tg.fn
	cs := &ebpf.CollectionSpec{Maps: spec.Maps, Programs: map[string]*ebpf.ProgramSpec{tg.prog: ps},
		Variables: spec.Variables, Types: spec.Types, ByteOrder: spec.ByteOrder}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: maps})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%+v", ve)
		}
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(tg.prog), nil
}

// attachTracepoints attaches the syscall exit tracepoints of the watched
// scopes (and execve's entry, whose registers a successful exec resets).
func (m *Monitor) attachTracepoints(spec *ebpf.CollectionSpec, watched Scope, traceExec bool) error {
	var tp tracepointObjects
	maps := map[string]*ebpf.Map{
		"events": m.objs.Events, "stashes": m.objs.Stashes,
		"scratch": m.objs.Scratch, "counters": m.objs.Counters,
	}
	if err := spec.LoadAndAssign(&tp, &ebpf.CollectionOptions{MapReplacements: maps}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("monitor: load tracepoint programs: %+v", ve)
		}
		return fmt.Errorf("monitor: load tracepoint programs: %w", err)
	}
	m.progs = append(m.progs, tp.SysEnterExecve, tp.SysEnterExecveat, tp.SysExitFile, tp.SysExitNet,
		tp.SysExitCred, tp.SysExitExec, tp.SysExitSend)
	exit := map[exitKind]*ebpf.Program{
		exitFile: tp.SysExitFile, exitNet: tp.SysExitNet,
		exitCred: tp.SysExitCred, exitExec: tp.SysExitExec, exitSend: tp.SysExitSend,
	}
	for _, t := range tracedSyscalls {
		if t.scope&watched == 0 || t.exit == exitExec && !traceExec {
			continue
		}
		// Exit first: a stashed execve without its exit program would stay.
		lx, err := link.Tracepoint("syscalls", "sys_exit_"+t.kernelName(), exit[t.exit], nil)
		if errors.Is(err, os.ErrNotExist) {
			m.unwatched = append(m.unwatched, t.name)
			continue
		}
		if err != nil {
			return fmt.Errorf("monitor: attach sys_exit_%s: %w", t.kernelName(), err)
		}
		m.links = append(m.links, lx)
		var enter *ebpf.Program
		switch t.nr {
		case sysExecve:
			enter = tp.SysEnterExecve
		case sysExecveat:
			enter = tp.SysEnterExecveat
		default:
			continue // arguments come from the saved registers at exit
		}
		le, err := link.Tracepoint("syscalls", "sys_enter_"+t.kernelName(), enter, nil)
		if err != nil {
			return fmt.Errorf("monitor: attach sys_enter_%s: %w", t.kernelName(), err)
		}
		m.links = append(m.links, le)
	}
	return nil
}
