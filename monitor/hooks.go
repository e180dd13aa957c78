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
	// HooksFexit: fexit programs on the traced syscalls' inner functions
	// or entry points, 64-bit and 32-bit; only those syscalls pay.
	HooksFexit Hooks = "fexit (trampolines)"
	// HooksTracepoints: the syscall exit tracepoints. Any of them puts
	// every syscall of every task on the kernel's tracing path, and they
	// do not see 32-bit (int 0x80) syscalls.
	HooksTracepoints Hooks = "syscall tracepoints (every syscall pays)"
	// HooksNone: no syscall is watched (process lifecycle only).
	HooksNone Hooks = "none (process lifecycle only)"
)

// Where a program finds its syscall's arguments, the attach cookie's high
// 32 bits (enum abi in monitor.bpf.c); the low 32 bits are the x86-64
// syscall number.
const (
	abiX64        = 0 // saved user registers, x86-64 layout
	abiIA32       = 1 // saved user registers, 32-bit layout
	abiFunc       = 2 // the arguments of the inner function (traced.inner)
	abiFuncAccept = 3 // as abiFunc; accept or accept4 from the saved registers
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

// Programs by kind (one body each, shared with the tracepoint programs in
// monitor.bpf.c): on the syscall entry points (the saved registers as
// argument), on the inner functions (traced.inner), and the kretprobes
// for an entry point named twice in the kernel's BTF.
var (
	fexitProgs     = map[exitKind]string{exitFile: "fexit_file", exitCred: "fexit_cred", exitExec: "fexit_exec"}
	innerProgs     = map[exitKind]string{exitNet: "fexit_func_net", exitSend: "fexit_func_send", exitCred: "fexit_func_cred"}
	kretprobeProgs = map[exitKind]string{exitFile: "kret_file", exitCred: "kret_cred", exitExec: "kret_exec"}
)

// attachKind is how a target is hooked.
type attachKind uint8

const (
	attachFexit attachKind = iota
	attachFentry
	attachKretprobe
	attachKprobe
)

// fexitTarget is one kernel function a program is attached to.
type fexitTarget struct {
	prog   string
	fn     string
	cookie uint64
	kind   attachKind
}

// fexitTargets lists the functions to attach for the watched scopes: for
// each traced syscall the inner function its every entry calls where it
// has one (traced.inner), else its 64-bit entry point and the 32-bit ones
// the kernel has; and execveat's entry for its stashed arguments. A
// syscall whose 64-bit entry point the kernel lacks is returned in missing
// (as the tracepoint path reports it).
//
// An entry point the kernel's BTF names twice (Debian's 6.1 keeps the weak
// stub of kernel/sys_ni.c beside __x64_sys_execveat and __ia32_sys_chown16)
// cannot be attached by name with cilium/ebpf, which refuses ambiguous
// targets: it gets a kretprobe (and execveat a kprobe), which resolves the
// name by kallsyms, where only the real function is; those are listed in
// probed. An inner function that is missing or ambiguous is an error: the
// caller keeps the tracepoints rather than lose the syscall.
func fexitTargets(kernel *btf.Spec, watched Scope, traceExec bool) (targets []fexitTarget, missing, probed []string, err error) {
	lookup := func(fn string) (found, ambiguous bool) {
		var f *btf.Func
		err := kernel.TypeByName(fn, &f)
		return err == nil, errors.Is(err, btf.ErrMultipleMatches)
	}
	inner := map[string]bool{}
	// entry adds the exit (and for execveat the entry) programs of one
	// entry point.
	entry := func(t *traced, fn string, abi uint64) bool {
		found, ambiguous := lookup(fn)
		cookie := uint64(t.nr) | abi<<32
		switch {
		case found:
			targets = append(targets, fexitTarget{prog: fexitProgs[t.exit], fn: fn, cookie: cookie, kind: attachFexit})
			if t.nr == sysExecveat {
				targets = append(targets, fexitTarget{prog: "fentry_execveat", fn: fn, cookie: cookie, kind: attachFentry})
			}
		case ambiguous:
			probed = append(probed, fn)
			targets = append(targets, fexitTarget{prog: kretprobeProgs[t.exit], fn: fn, cookie: cookie, kind: attachKretprobe})
			if t.nr == sysExecveat {
				targets = append(targets, fexitTarget{prog: "kprobe_execveat", fn: fn, cookie: cookie, kind: attachKprobe})
			}
		}
		return found || ambiguous
	}
	for i := range tracedSyscalls {
		t := &tracedSyscalls[i]
		if t.scope&watched == 0 || t.exit == exitExec && !traceExec {
			continue
		}
		if t.inner != "" {
			if inner[t.inner] {
				continue // accept and accept4 share __sys_accept4
			}
			inner[t.inner] = true
			found, ambiguous := lookup(t.inner)
			if ambiguous {
				return nil, nil, nil, fmt.Errorf("%s is named twice in the kernel's BTF", t.inner)
			}
			if !found {
				return nil, nil, nil, fmt.Errorf("no %s in the kernel's BTF (inlined or renamed)", t.inner)
			}
			abi := uint64(abiFunc)
			if t.inner == "__sys_accept4" {
				abi = abiFuncAccept
			}
			targets = append(targets, fexitTarget{prog: innerProgs[t.exit], fn: t.inner, cookie: uint64(t.nr) | abi<<32, kind: attachFexit})
			continue
		}
		if !entry(t, "__x64_sys_"+t.kernelName(), abiX64) {
			missing = append(missing, t.name)
			continue
		}
		for _, fn := range t.ia32 {
			entry(t, fn, abiIA32)
		}
	}
	return targets, missing, probed, nil
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
	// A kprobe program serves any number of functions; a trampoline
	// program is verified for one.
	probes := map[string]*ebpf.Program{}
	for _, tg := range targets {
		p := probes[tg.prog]
		if p == nil {
			var err error
			if p, err = loadFor(spec, maps, tg); err != nil {
				undo()
				return fmt.Errorf("load %s for %s: %w", tg.prog, tg.fn, err)
			}
			progs = append(progs, p)
			if tg.kind == attachKprobe || tg.kind == attachKretprobe {
				probes[tg.prog] = p
			}
		}
		var l link.Link
		var err error
		switch tg.kind {
		case attachFexit:
			l, err = link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFExit, Cookie: tg.cookie})
		case attachFentry:
			l, err = link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry, Cookie: tg.cookie})
		case attachKretprobe:
			l, err = link.Kretprobe(tg.fn, p, &link.KprobeOptions{Cookie: tg.cookie})
		case attachKprobe:
			l, err = link.Kprobe(tg.fn, p, &link.KprobeOptions{Cookie: tg.cookie})
		}
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

// loadFor loads program tg.prog of spec (for function tg.fn if it is a
// trampoline program), sharing the monitor's maps.
func loadFor(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, tg fexitTarget) (*ebpf.Program, error) {
	ps := spec.Programs[tg.prog]
	if ps == nil {
		return nil, fmt.Errorf("no program %s", tg.prog)
	}
	ps = ps.Copy()
	if tg.kind == attachFexit || tg.kind == attachFentry {
		ps.AttachTo = tg.fn
	}
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
