// Package agent runs the daemon: it starts the parts in order (config ->
// policies -> enforcer -> monitor -> feeder), carries policy changes to the
// enforcer, reloads on SIGHUP and shuts down cleanly on SIGTERM, leaving the
// host as it found it.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/kernelfs"
	"github.com/armorhost/kubearmor/policystore"
	"github.com/armorhost/kubearmor/systemd/sdnotify"
)

// Agent is one running daemon.
type Agent struct {
	log        *slog.Logger
	configPath string
	configReq  bool
	overrides  *config.Overrides

	version   string
	started   time.Time
	fileLimit atomic.Uint64 // RLIMIT_NOFILE in force (supervise.go)

	mu       sync.Mutex
	cfg      *config.Config
	enforcer Enforcer
	status   Status
	store    *policystore.Store
	pipe     *pipeline
	sinks    []reopener
	mon      Monitor // nil when the monitor could not load

	life       Lifecycle        // what happens to kernel objects at exit (lifecycle.go)
	adoption   string           // the enforcer's Adoption last logged
	containers containerChanges // runtimes -> enforcer (containers.go)
	fleet      *fleet           // etcd policy source and host key (fleet.go); nil when off
}

// Status is what `kubearmor status` and the systemd STATUS= line report.
type Status struct {
	Enforcer        string            // chosen enforcer, "" when monitor only
	EnforcerSkipped map[string]string // enforcer -> why it was not chosen
	Policies        int
	Rules           int
	Unenforced      map[uint32]string // rule ID -> reason
	BadFiles        int               // policy files whose current content is rejected
	Generation      uint64
}

// Line is the one-line summary for the systemd STATUS= field and the log.
func (s Status) Line() string {
	enf := s.Enforcer
	if enf == "" {
		enf = "monitor only"
	}
	line := fmt.Sprintf("enforcer %s; %d policies, %d rules", enf, s.Policies, s.Rules)
	if n := len(s.Unenforced); n > 0 {
		line += fmt.Sprintf(", %d not enforced", n)
	}
	if s.BadFiles > 0 {
		line += fmt.Sprintf("; %d policy files rejected", s.BadFiles)
	}
	return line
}

// New prepares an agent; Run starts it.
func New(log *slog.Logger, version, configPath string, configRequired bool, overrides *config.Overrides) *Agent {
	return &Agent{log: log, version: version, configPath: configPath, configReq: configRequired, overrides: overrides,
		life: DefaultLifecycle()}
}

func (a *Agent) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath, a.configReq)
	if err != nil {
		return nil, err
	}
	if err := a.overrides.Apply(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func compileOptions(cfg *config.Config) hostpolicy.Options {
	extra, _ := cfg.Labels() // Validate refused bad labels
	return hostpolicy.Options{Host: cfg.Host, Labels: hostpolicy.ReadHostLabels(extra), Postures: hostpolicy.Postures{
		File:         cfg.HostDefaultFilePosture,
		Network:      cfg.HostDefaultNetworkPosture,
		Capabilities: cfg.HostDefaultCapabilitiesPosture,
	}, ContainerPostures: hostpolicy.Postures{
		File:         cfg.DefaultFilePosture,
		Network:      cfg.DefaultNetworkPosture,
		Capabilities: cfg.DefaultCapabilitiesPosture,
	}}
}

// Run starts every part and blocks until ctx ends or SIGTERM/SIGINT arrives,
// and then returns nil. When a part the daemon depends on stops (see
// supervisor), Run detaches everything as on SIGTERM and returns that
// part's failure.
func (a *Agent) Run(ctx context.Context) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	a.cfg = cfg
	a.started = time.Now()
	a.log.Info("starting kubearmor", "version", a.version, "config", cfg.Source, "host", cfg.Host, "cluster", cfg.Cluster, "policyDir", cfg.PolicyDir,
		"labels", hostpolicy.FormatLabels(compileOptions(cfg).Labels))
	// Before anything opens descriptors, the feeder above all.
	n, err := raiseFileLimit()
	a.fileLimit.Store(n)
	if err != nil {
		a.log.Warn("file descriptor limit", "RLIMIT_NOFILE", n, "err", err)
	} else {
		a.log.Info("file descriptor limit", "RLIMIT_NOFILE", n)
	}
	for _, w := range cfg.Warnings {
		a.log.Warn("config", "detail", w)
	}
	mounted, err := kernelfs.Ensure(kernelfs.Securityfs, kernelfs.BPF, kernelfs.Tracefs)
	for _, fs := range mounted {
		a.log.Info("mounted", "fs", fs.Type, "at", fs.Path)
	}
	if err != nil {
		a.log.Warn("kernel filesystems", "err", err)
	}
	// Every decoder maps kernel stamps to wall time through the one
	// BootClock offset; say so when it cannot follow a later step of the
	// wall clock (timestamps would stay on the offset measured now).
	_ = event.NewBootClock()
	if _, err := event.ClockSteps(); err != nil {
		a.log.Warn("timestamps will not follow settings of the wall clock", "err", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	sup := newSupervisor(ctx, func() *slog.Logger { return a.log })
	defer func() {
		cancel()
		sup.wait()
	}()
	goRun := sup.optional

	// Output first: the feeder's listeners must be up before we say ready,
	// and its log handler carries our own log to WatchMessages.
	srv, err := a.newFeeder(cfg)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	a.log = slog.New(srv.LogHandler(a.log.Handler(), slog.LevelInfo))

	// The enforcer is chosen before policies load so the first RuleSet goes
	// straight into the kernel.
	a.enforcer = a.chooseEnforcer(cfg)
	defer a.closeEnforcer()

	vis, _ := cfg.Visibility()
	// Beside BPF-LSM the monitor watches only what is visible; beside a
	// tier that cannot decide every rule (AppArmor, fanotify), it watches
	// process, file and network, so that the Audit rules the tier leaves
	// undecided are matched on its telemetry.
	mon, procs := a.openMonitor(vis, a.enforcer != nil && a.enforcer.Name() == enforcerBPFLSM)
	if mon != nil {
		defer func() {
			if err := mon.Close(); err != nil {
				a.log.Error("monitor did not detach cleanly", "err", err)
			}
		}()
	}
	enfName := ""
	if a.enforcer != nil {
		enfName = a.enforcer.Name()
	}
	a.pipe = newPipeline(ctx, procs, srv, enfName, visibility{vis.Process, vis.File, vis.Network, vis.Capabilities})
	if ops := unrefusedFileOps(a.enforcer); len(ops) > 0 {
		a.pipe.unrefused = ops
		a.log.Warn(unrefusedText(enfName, ops), "operations", strings.Join(ops, ","))
	}
	if ctrs := a.openRuntimes(cfg); ctrs != nil {
		a.pipe.ctrs = ctrs
		defer ctrs.Close()
		goRun("container runtimes", ctrs.Run)
		goRun("container policies", a.followContainers(ctrs))
	}

	store, err := policystore.Open(cfg.PolicyDir, compileOptions(cfg), a.log, a.onPolicies)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.store = store
	a.mu.Unlock()
	closeFleet, err := a.startFleet(cfg, store, goRun)
	if err != nil {
		return err
	}
	defer closeFleet()

	// The watchdog's beat is set before any goroutine can handle an event:
	// the monitor calls it from its own goroutine.
	dog, err := sdnotify.NewWatchdog()
	if err != nil {
		a.log.Warn("systemd watchdog disabled", "err", err)
	}
	idle := make(chan struct{})
	if dog != nil && dog.BeatEvery() > 0 {
		a.pipe.beat = dog.Beat
		goRun("watchdog", func(ctx context.Context) error {
			dog.Run(ctx, func(err error) { a.log.Warn("watchdog ping failed", "err", err) })
			return nil
		})
		goRun("idle beat", func(ctx context.Context) error { return tick(ctx, dog.BeatEvery(), idle) })
	}
	// Runs before the deferred closes above: a reader closed on the way
	// out has not failed.
	defer sup.stop()
	sup.essential("policy watcher", store.Run)
	sup.essential("feeder", srv.Serve)
	// Sinks subscribe before the enforcer reads: a pinned ring buffer
	// holds the verdicts of while no agent ran (enforce/bpflsm/pin.go).
	a.startSinks(ctx, cfg, srv, goRun)
	if a.enforcer != nil {
		sup.essential("enforcer "+a.enforcer.Name(), func(ctx context.Context) error { return a.enforcer.Run(ctx, a.pipe.enqueue) })
	}
	if mon != nil {
		sup.essential("monitor", func(ctx context.Context) error { return mon.Run(ctx, a.pipe.handleInline) })
	}
	if cfg.Metrics != "" {
		goRun("metrics", func(ctx context.Context) error { return srv.ServeMetrics(ctx, cfg.Metrics, a.pipelineMetrics) })
		a.log.Info("serving Prometheus metrics", "address", "http://"+cfg.Metrics+"/metrics")
	}

	sup.essential("pipeline", func(ctx context.Context) error { a.pipe.run(ctx, idle); return nil })

	a.writeProbeData(cfg)
	// Loading the BPF programs parsed the kernel's BTF: tens of MiB that
	// are garbage now, and that the runtime would otherwise keep until the
	// heap grew back to that size.
	debug.FreeOSMemory()
	line := a.Status().Line()
	a.log.Info("kubearmor ready", "status", line)
	notify(a.log, sdnotify.Status(line), sdnotify.Ready())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping kubearmor")
			notify(a.log, sdnotify.Stopping())
			return nil
		case err := <-sup.Failed():
			// Logged as ERROR by the supervisor; the deferred closes
			// detach every kernel program before Run returns.
			notify(a.log, sdnotify.Status("failed: "+err.Error()), sdnotify.Stopping())
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				notify(a.log, sdnotify.Reloading())
				a.reload(srv)
				notify(a.log, sdnotify.Status(a.Status().Line()), sdnotify.Ready())
				continue
			}
			a.log.Info("stopping kubearmor", "signal", sig.String())
			notify(a.log, sdnotify.Stopping())
			return nil
		}
	}
}

func notify(log *slog.Logger, errs ...error) {
	for _, err := range errs {
		if err != nil {
			log.Warn("systemd notification failed", "err", err)
		}
	}
}

// tick sends on c every d until ctx ends, dropping ticks nobody takes.
func tick(ctx context.Context, d time.Duration, c chan<- struct{}) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// reload re-reads the configuration and the policy directory. A bad config
// file is reported and the running configuration stays.
func (a *Agent) reload(srv *feeder.Server) {
	a.log.Info("reloading (SIGHUP)")
	cfg, err := a.loadConfig()
	if err != nil {
		a.log.Error("reload: configuration rejected; the running configuration stays", "err", err)
	} else {
		for _, w := range cfg.Warnings {
			a.log.Warn("config", "detail", w)
		}
		a.mu.Lock()
		old := a.cfg
		a.cfg = cfg
		a.mu.Unlock()
		if cfg.PolicyDir != old.PolicyDir || cfg.GRPC != old.GRPC || cfg.Socket != old.Socket || cfg.LSM != old.LSM {
			a.log.Warn("reload: policyDir, gRPC, socket and lsm take effect only after a restart")
		}
		a.store.SetOptions(compileOptions(cfg))
		srv.SetThrottle(throttleConfig(cfg))
	}
	a.reopenSinks()
	if err := a.store.Rescan(); err != nil {
		a.log.Error("reload: policy rescan failed", "err", err)
	}
	a.log.Info("reloaded", "status", a.Status().Line())
}

// onPolicies receives every new snapshot from the store and hands it to the enforcer.
func (a *Agent) onPolicies(snap policystore.Snapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := snap.RuleSet
	unenforced := map[uint32]string{}
	if a.enforcer != nil {
		got, err := a.enforcer.Apply(rs)
		if err != nil {
			a.log.Error("enforcer rejected the new rules; the previous rules stay in force", "enforcer", a.enforcer.Name(), "err", err)
			return
		}
		unenforced = got
		// The first Apply is when a new object version takes over from
		// the one an earlier agent left pinned (enforce/bpflsm/pin.go).
		if ad, ok := a.enforcer.(adopter); ok && ad.Adoption() != a.adoption {
			a.adoption = ad.Adoption()
			a.log.Info("enforcer kernel state", "enforcer", a.enforcer.Name(), "detail", a.adoption)
		}
	} else {
		for _, r := range rs.Rules {
			if r.Action != hostpolicy.ActionAudit {
				unenforced[r.ID] = "no kernel enforcer is available on this host"
			}
		}
	}
	a.unscopedContainerRules(rs, unenforced)
	bad := 0
	for _, f := range snap.Files {
		if len(f.Errors) > 0 {
			bad++
		}
	}
	if a.pipe != nil {
		a.pipe.setRules(rs, unenforced)
	}
	a.status.Policies = len(rs.Policies)
	a.status.Rules = len(rs.Rules) + len(rs.ContainerRules)
	a.status.Unenforced = unenforced
	a.status.BadFiles = bad
	a.status.Generation = snap.Generation
	a.reportUnenforced(rs, unenforced)
	a.fleet.changed()
	a.log.Info("policies in force", "change", snap.Change, "generation", snap.Generation, "policies", strings.Join(rs.Policies, ","), "status", a.status.Line())
	if snap.Generation > 1 {
		notify(a.log, sdnotify.Status(a.status.Line()))
	}
}

// reportUnenforced says, loudly and per rule, what cannot be enforced.
func (a *Agent) reportUnenforced(rs *hostpolicy.RuleSet, unenforced map[uint32]string) {
	ids := make([]uint32, 0, len(unenforced))
	for id := range unenforced {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		r, ok := rs.Rule(id)
		if !ok {
			continue
		}
		a.log.Warn("rule not enforced", "policy", r.Policy, "rule", fmt.Sprintf("%s %s %s", r.Action, r.Category, r.Value), "at", r.Origin, "reason", unenforced[id])
	}
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// chooseEnforcer walks the lsm preference list and takes the first enforcer
// that is both built in and usable on this kernel.
func (a *Agent) chooseEnforcer(cfg *config.Config) Enforcer {
	names, _ := cfg.Enforcers() // validated already
	skipped := map[string]string{}
	for _, name := range names {
		open, ok := enforcers[name]
		if !ok {
			skipped[name] = "not built into this agent"
			continue
		}
		life := a.life
		life.AgentVersion = a.version
		e, err := open(cfg, life, a.log)
		if err != nil {
			skipped[name] = boundedReason(err.Error())
			a.log.Info("enforcer not usable", "enforcer", name, "reason", err)
			continue
		}
		a.status.Enforcer = e.Name()
		a.status.EnforcerSkipped = skipped
		a.log.Info("enforcer chosen", "enforcer", e.Name())
		if ad, ok := e.(adopter); ok && ad.Adoption() != "" {
			a.adoption = ad.Adoption()
			a.log.Info("enforcer kernel state", "enforcer", e.Name(), "detail", a.adoption)
		}
		releaseOthers(e.Name(), a.life, a.log)
		return e
	}
	a.status.EnforcerSkipped = skipped
	var why []string
	for _, n := range names {
		why = append(why, n+": "+skipped[n])
	}
	if len(names) == 0 {
		why = append(why, "lsm is none")
	}
	a.log.Warn("no enforcer: running as a monitor only; Block and Allow rules are reported, not enforced", "why", strings.Join(why, "; "))
	releaseOthers("", a.life, a.log)
	return nil
}

func (a *Agent) closeEnforcer() {
	if a.enforcer == nil {
		return
	}
	u, pinned := a.enforcer.(unpinner)
	if pinned && a.life.DetachOnExit {
		if err := u.Unpin(); err != nil {
			a.log.Error("enforcer: cannot remove its pins", "enforcer", a.enforcer.Name(), "err", err)
		}
	}
	if err := a.enforcer.Close(); err != nil {
		a.log.Error("enforcer did not detach cleanly", "enforcer", a.enforcer.Name(), "err", err)
		return
	}
	if pinned && !a.life.DetachOnExit {
		if a.enforcer.Name() == enforcerBPFLSM {
			a.log.Info("enforcer left pinned in the kernel: it enforces the last rule set until the next agent adopts it (kubearmor detach removes it)",
				"enforcer", a.enforcer.Name(), "dir", a.life.PinRoot)
		} else {
			a.log.Info("enforcer left loaded in the kernel: it enforces the last rule set until the next agent adopts it (kubearmor detach removes it)",
				"enforcer", a.enforcer.Name())
		}
		return
	}
	a.log.Info("enforcer detached", "enforcer", a.enforcer.Name())
}

// maxReasonBytes bounds why a tier was skipped: the reason goes into every
// status reply, the systemd STATUS= line and the log, and a verifier's
// refusal can be megabytes long.
const maxReasonBytes = 2048

func boundedReason(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	// A cut may split a character: status strings must stay valid UTF-8.
	return event.ValidText(s[:maxReasonBytes/2] + fmt.Sprintf(" [... %d bytes left out ...] ", len(s)-maxReasonBytes) + s[len(s)-maxReasonBytes/2:])
}
