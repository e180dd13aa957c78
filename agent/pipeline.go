package agent

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/proctable"
	"github.com/armorhost/kubearmor/runtimes"
)

// Publisher is where alerts and logs go (the feeder).
type Publisher interface {
	PublishAlert(*kubearmorpb.Alert)
	PublishLog(*kubearmorpb.Log)
	// LogUnwatched counts a log nobody takes now and reports true, so
	// that the pipeline does not build it; false: call PublishLog.
	LogUnwatched() bool
}

// Containers attributes events to containers. It may wait briefly for a
// container whose start the runtime has not reported yet.
type Containers interface {
	Wait(ctx context.Context, cgroupID uint64, pidNS, mntNS uint32) (runtimes.Container, bool)
}

// Alert and log strings of upstream KubeArmor (reference §2).
const (
	typeMatchedHostPolicy = "MatchedHostPolicy"
	typeMatchedPolicy     = "MatchedPolicy"
	typeHostLog           = "HostLog"
	typeContainerLog      = "ContainerLog"
	policyDefaultPosture  = "DefaultPosture"
	enforcerMonitor       = "eBPF Monitor"
	enforcerBPFLSM        = "BPFLSM"
	enforcerAppArmor      = "AppArmor"
	resultPassed          = "Passed"
)

// pipeline turns events into alerts and logs. Producers hand events to
// enqueue from their own goroutines; one worker does the rest, so a slow
// subscriber or a burst never blocks a kernel reader: a full queue drops the
// event and counts it. The monitor calls handleInline instead: its reader
// already hands records over through a bounded queue of batches, and a
// second hand-off per event cost a thread wake-up per event.
type pipeline struct {
	queue    chan event.Event
	received atomic.Uint64 // events enqueued or handed inline
	dropped  atomic.Uint64
	handled  atomic.Uint64
	procs    *proctable.Table
	out      Publisher
	enforcer string // name of the kernel enforcer, "" when none
	// unrefused are the file operations the enforcer cannot refuse
	// (opensOnly); set before the first policies, they are decided here.
	unrefused []string
	vis       visibility
	match     atomic.Pointer[matcher]
	beat      func()     // watchdog: called after every event and on idle ticks
	ctrs      Containers // nil: every event is a host event
	ctx       context.Context
}

type visibility struct{ process, file, network, capabilities bool }

func (v visibility) shows(op string) bool {
	switch op {
	case event.OpProcess:
		return v.process
	case event.OpFile:
		return v.file
	case event.OpNetwork:
		return v.network
	case event.OpSyscall, event.OpCapabilities:
		return v.capabilities
	}
	return false
}

// queueLen bounds the kernel enforcer's verdicts waiting for the worker.
// The monitor's events do not queue here (handleInline), and the kernel
// rate-limits identical verdicts; the buffer is allocated whole, at ~270
// bytes an event, so it is kept small.
const queueLen = 4096

// newPipeline: ctx bounds the waits for container attribution.
func newPipeline(ctx context.Context, procs *proctable.Table, out Publisher, enforcer string, vis visibility) *pipeline {
	p := &pipeline{queue: make(chan event.Event, queueLen), procs: procs, out: out, enforcer: enforcer, vis: vis,
		beat: func() {}, ctx: ctx}
	p.setRules(&hostpolicy.RuleSet{}, nil)
	return p
}

// setRules swaps in the rules of a new policy snapshot; unenforced are the
// rules the kernel enforcer cannot decide (ID -> why), whose Audit rules
// the monitor's telemetry then decides.
func (p *pipeline) setRules(rs *hostpolicy.RuleSet, unenforced map[uint32]string) {
	p.match.Store(newMatcherFor(rs, p.enforcer != "", unenforced, len(p.unrefused) > 0))
}

// enqueue never blocks.
func (p *pipeline) enqueue(ev event.Event) {
	p.received.Add(1)
	select {
	case p.queue <- ev:
	default:
		p.dropped.Add(1)
	}
}

// run handles queued events until ctx ends.
func (p *pipeline) run(ctx context.Context, idle <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-p.queue:
			p.handleInline(ev)
		case <-idle:
			p.beat()
		}
	}
}

// stage is the pipeline's accounting: events received (queued or inline),
// handled, dropped because the queue was full, and still queued.
func (p *pipeline) stage() event.Stage {
	st := event.Stage{Name: "pipeline", Received: p.received.Load(), Passed: p.handled.Load(),
		Dropped: p.dropped.Load(), Pending: uint64(len(p.queue))}
	if st.Dropped > 0 {
		st.State = "queue was full"
	}
	return st
}

// handleInline handles ev on the caller's goroutine; handle is safe for
// concurrent use.
func (p *pipeline) handleInline(ev event.Event) {
	p.received.Add(1)
	p.handle(&ev)
	p.handled.Add(1)
	p.beat()
}

// takeUnneeded is the monitor's Options.Unneeded: ev holds only the
// Operation, Syscall and Retval of an event the monitor is about to
// decode. When the event could produce nothing but a log nobody watches
// (no rule could decide it, it is no refused privilege change, and no
// subscriber takes logs of its scope now) it is counted exactly as
// handleInline would count it (received, handled, the log published via
// LogUnwatched) and the monitor skips decoding it; otherwise false.
//
// The rules are read from the matcher now in place, and the log is
// counted in the same LogUnwatched call that says nobody watches, so an
// event after a policy change or a subscriber's attach is decoded. Host
// and container events alike: container events are matched by no host
// rule, and the container is looked up only to fill a log or an alert.
func (p *pipeline) takeUnneeded(ev *event.Event) bool {
	if p.deniedPrivilegeChange(ev) || p.match.Load().concerns(ev.Operation, ev.Syscall) {
		return false
	}
	if p.vis.shows(ev.Operation) && !p.out.LogUnwatched() {
		return false
	}
	p.received.Add(1)
	p.handled.Add(1)
	p.beat()
	return true
}

// handle is the whole per-event path: attribute, decide, publish.
func (p *pipeline) handle(ev *event.Event) {
	var at attribution
	// Matching needs only the program and its parent, and Describe gives
	// ev.Exe and ev.ParentExe as they are when they are set, as the
	// monitor's decoder sets them from the process table (Table.Enrich):
	// the table is then asked again only for an alert or a log, which
	// most events do not make. Otherwise it is asked here, as always.
	proc, parent := ev.Exe, ev.ParentExe
	if ev.Verdict != event.VerdictNone || proc == "" || parent == "" {
		a := at.get(p.procs, ev)
		proc, parent = a.ProcessName, a.ParentProcessName
	}
	var ctr *runtimes.Container
	if p.ctrs != nil {
		if c, ok := p.ctrs.Wait(p.ctx, ev.CgroupID, ev.PidNS, ev.MntNS); ok {
			ctr = &c
		}
	}
	m := p.match.Load()
	alert := func(a *kubearmorpb.Alert) { p.out.PublishAlert(inContainer(a, ctr)) }
	if ev.Verdict != event.VerdictNone {
		alert(p.kernelAlert(ev, at.get(p.procs, ev), m.rs))
		return
	}
	// Host policies describe the host: container events are matched only
	// by the kernel enforcer's per-container rules.
	if ctr == nil {
		if v, ok := m.match(ev, proc, parent); ok {
			alert(p.matchedAlert(ev, at.get(p.procs, ev), v))
		}
		// A syscall rule names the system call whatever telemetry category
		// reports it (unlink is a File event): its alert is a Syscall one,
		// as upstream's audit-all-unlink example shows.
		if r := m.syscallRule(ev, proc); r != nil {
			sc := *ev
			sc.Operation = event.OpSyscall
			alert(p.matchedAlert(&sc, at.get(p.procs, ev), verdict{rule: r, action: hostpolicy.ActionAudit}))
		}
	}
	// A refused privilege change is reported whether or not a syscall rule
	// also audits it: the rule's alert says who asked, this one that the
	// kernel said no.
	if p.deniedPrivilegeChange(ev) {
		alert(p.postureAlert(ev, at.get(p.procs, ev), hostpolicy.ActionBlock, p.privilegeEnforcer()))
	}
	// Most of the time nobody watches logs (no karmor logs, no logPath):
	// a log is then counted as published and not built.
	if p.vis.shows(ev.Operation) && !p.out.LogUnwatched() {
		p.out.PublishLog(logInContainer(p.log(ev, at.get(p.procs, ev)), ctr))
	}
}

// attribution is an event's proctable.Attribution, asked of the table
// once, when first needed.
// (It holds no pointer to the event: escape analysis would send the
// event to the heap with the attribution's strings.)
type attribution struct {
	at   proctable.Attribution
	made bool
}

func (a *attribution) get(procs *proctable.Table, ev *event.Event) *proctable.Attribution {
	if !a.made {
		a.at, a.made = procs.Describe(ev), true
	}
	return &a.at
}

// inContainer fills an alert's container fields (upstream §6.2) and makes it
// a MatchedPolicy alert; host alerts stay MatchedHostPolicy.
func inContainer(a *kubearmorpb.Alert, c *runtimes.Container) *kubearmorpb.Alert {
	if c == nil {
		return a
	}
	a.NamespaceName, a.PodName, a.Labels = event.ValidText(c.NamespaceName), event.ValidText(c.PodName), event.ValidText(c.Labels)
	a.ContainerID, a.ContainerName, a.ContainerImage = event.ValidText(c.ID), event.ValidText(c.Name), event.ValidText(c.Image)
	if a.Type == typeMatchedHostPolicy {
		a.Type = typeMatchedPolicy
	}
	return a
}

func logInContainer(l *kubearmorpb.Log, c *runtimes.Container) *kubearmorpb.Log {
	if c == nil {
		return l
	}
	l.NamespaceName, l.PodName, l.Labels = event.ValidText(c.NamespaceName), event.ValidText(c.PodName), event.ValidText(c.Labels)
	l.ContainerID, l.ContainerName, l.ContainerImage = event.ValidText(c.ID), event.ValidText(c.Name), event.ValidText(c.Image)
	l.Type = typeContainerLog
	return l
}

// privilegeEnforcer is the Enforcer of a refused privilege change: the
// LSM tiers, which can refuse one (task_fix_setuid, capability rules), as
// upstream's alert names its active enforcer; otherwise the monitor that saw
// the refusal. The fanotify tier plays no part in a setuid.
func (p *pipeline) privilegeEnforcer() string {
	switch p.enforcer {
	case enforcerBPFLSM, enforcerAppArmor:
		return p.enforcer
	}
	return enforcerMonitor
}

// deniedPrivilegeChange: a setuid/setgid family call that failed with EPERM
// becomes the seeds' "Blocked SETUID/SETGID" DefaultPosture alert.
func (p *pipeline) deniedPrivilegeChange(ev *event.Event) bool {
	if ev.Operation != event.OpSyscall || ev.Retval != -1 {
		return false
	}
	switch ev.Syscall {
	case "SYS_SETUID", "SYS_SETGID", "SYS_SETREUID", "SYS_SETREGID", "SYS_SETRESUID", "SYS_SETRESGID":
		return true
	}
	return false
}

func result(retval int64) string {
	if retval >= 0 {
		return resultPassed
	}
	return event.ResultText(retval)
}

// header is what every alert and log of an event shares, computed once
// into a value so that a log does not build (and drop) an alert first.
// Paths, arguments and process names are bytes on Linux; event.ValidText
// escapes what is not UTF-8 (\xNN) here, where events become alerts and
// logs, so that gRPC, the JSON file and syslog show the same text and
// protobuf can encode it.
type header struct {
	timestamp                         int64
	updatedTime                       string
	hostPPID, hostPID, ppid, pid, uid int32
	parentProcessName, processName    string
	source, operation                 string
	resource, data, result, cwd, tty  string
	comm                              string
}

func newHeader(ev *event.Event, at *proctable.Attribution) header {
	return header{
		timestamp:         ev.Time.Unix(),
		updatedTime:       updatedTime(ev.Time),
		hostPPID:          int32(at.HostPPID),
		hostPID:           int32(at.HostPID),
		ppid:              int32(at.PPID),
		pid:               int32(at.PID),
		uid:               int32(at.UID),
		parentProcessName: event.ValidText(at.ParentProcessName),
		processName:       event.ValidText(at.ProcessName),
		source:            event.ValidText(at.Source),
		operation:         ev.Operation,
		resource:          event.ValidText(ev.Resource),
		data:              event.ValidText(ev.Data),
		result:            result(ev.Retval),
		cwd:               event.ValidText(at.Cwd),
		tty:               event.ValidText(at.TTY),
		comm:              event.ValidText(ev.Comm),
	}
}

// alertMsg and logMsg hold a message and its ExecEvent in one allocation
// (the message is the first field, so a pointer to it is a pointer to the
// whole); the per-event path allocates once per output.
type alertMsg struct {
	a    kubearmorpb.Alert
	exec kubearmorpb.ExecEvent
}

type logMsg struct {
	l    kubearmorpb.Log
	exec kubearmorpb.ExecEvent
}

// base builds the alert every output starts from.
func (p *pipeline) base(ev *event.Event, at *proctable.Attribution) *kubearmorpb.Alert {
	h := newHeader(ev, at)
	m := &alertMsg{}
	setExecEvent(&m.exec, h.comm)
	m.a = kubearmorpb.Alert{
		Timestamp:         h.timestamp,
		UpdatedTime:       h.updatedTime,
		HostPPID:          h.hostPPID,
		HostPID:           h.hostPID,
		PPID:              h.ppid,
		PID:               h.pid,
		UID:               h.uid,
		ParentProcessName: h.parentProcessName,
		ProcessName:       h.processName,
		Type:              typeMatchedHostPolicy,
		Source:            h.source,
		Operation:         h.operation,
		Resource:          h.resource,
		Data:              h.data,
		Result:            h.result,
		Cwd:               h.cwd,
		TTY:               h.tty,
		ExecEvent:         &m.exec,
	}
	return &m.a
}

// setExecEvent fills upstream's ExecEvent, which it sets on every alert and log:
// ExecID is the id upstream gives a process that entered a container by
// setns (kubectl exec), 0 for every other process and always 0 here (no
// such tracking); ExecutableName is the task's comm, when known. OID
// (upstream's stdout-only inode owner) and Owner (the pod's owner) are not
// in upstream's host events' protos or are Kubernetes-only, so they stay
// empty.
func setExecEvent(e *kubearmorpb.ExecEvent, comm string) {
	e.ExecID, e.ExecutableName = "0", comm
}

// setRule copies a rule's metadata. Policies are validated UTF-8 YAML, but
// the escape costs nothing on valid text and keeps every string of an
// alert encodable.
func setRule(a *kubearmorpb.Alert, r *hostpolicy.Rule) {
	a.PolicyName = event.ValidText(r.Policy)
	if r.Severity > 0 {
		a.Severity = strconv.Itoa(r.Severity)
	}
	a.Tags = event.ValidText(strings.Join(r.Tags, ","))
	a.ATags = r.Tags
	for i, t := range r.Tags {
		if v := event.ValidText(t); v != t {
			a.ATags = append([]string(nil), a.ATags...)
			a.ATags[i] = v
		}
	}
	a.Message = event.ValidText(r.Message)
}

// kernelAlert: the kernel decided; the rule ID says which rule.
func (p *pipeline) kernelAlert(ev *event.Event, at *proctable.Attribution, rs *hostpolicy.RuleSet) *kubearmorpb.Alert {
	a := p.base(ev, at)
	a.Enforcer = ev.Enforcer
	if ev.Suppressed > 0 {
		// The kernel's rate limit dropped identical alerts before this one.
		a.EventData = map[string]string{"Suppressed": strconv.FormatUint(uint64(ev.Suppressed), 10)}
	}
	switch ev.Verdict {
	case event.VerdictPostureAudit, event.VerdictPostureBlock:
		a.PolicyName = policyDefaultPosture
		a.Action = hostpolicy.ActionAudit
		if ev.Verdict == event.VerdictPostureBlock {
			a.Action = hostpolicy.ActionBlock
		}
	default:
		a.Action = hostpolicy.ActionAudit
		if ev.Verdict == event.VerdictBlock {
			a.Action = hostpolicy.ActionBlock
		}
		if r, ok := rs.Rule(ev.RuleID); ok {
			setRule(a, r)
		} else {
			// The rule changed between the verdict and now: say so rather than guess.
			a.PolicyName = "unknown (rule " + strconv.FormatUint(uint64(ev.RuleID), 10) + " was replaced)"
		}
	}
	return a
}

func (p *pipeline) matchedAlert(ev *event.Event, at *proctable.Attribution, v verdict) *kubearmorpb.Alert {
	if v.posture {
		return p.postureAlert(ev, at, v.action, enforcerMonitor)
	}
	a := p.base(ev, at)
	setRule(a, v.rule)
	a.Action = v.action
	if v.rule.Category != hostpolicy.CategorySyscall {
		a.Enforcer = enforcerMonitor // upstream leaves syscall verdicts without an Enforcer
	}
	return a
}

func (p *pipeline) postureAlert(ev *event.Event, at *proctable.Attribution, action, enforcer string) *kubearmorpb.Alert {
	a := p.base(ev, at)
	a.PolicyName = policyDefaultPosture
	a.Action = action
	a.Enforcer = enforcer
	return a
}

func (p *pipeline) log(ev *event.Event, at *proctable.Attribution) *kubearmorpb.Log {
	h := newHeader(ev, at)
	m := &logMsg{}
	setExecEvent(&m.exec, h.comm)
	m.l = kubearmorpb.Log{
		Timestamp:         h.timestamp,
		UpdatedTime:       h.updatedTime,
		HostPPID:          h.hostPPID,
		HostPID:           h.hostPID,
		PPID:              h.ppid,
		PID:               h.pid,
		UID:               h.uid,
		ParentProcessName: h.parentProcessName,
		ProcessName:       h.processName,
		Type:              typeHostLog,
		Source:            h.source,
		Operation:         h.operation,
		Resource:          h.resource,
		Data:              h.data,
		Result:            h.result,
		Cwd:               h.cwd,
		TTY:               h.tty,
		ExecEvent:         &m.exec,
	}
	return &m.l
}
