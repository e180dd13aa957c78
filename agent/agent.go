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
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/policystore"
)

// Agent is one running daemon.
type Agent struct {
	log        *slog.Logger
	configPath string
	configReq  bool
	overrides  *config.Overrides

	mu       sync.Mutex
	cfg      *config.Config
	enforcer Enforcer
	status   Status
	store    *policystore.Store
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
func New(log *slog.Logger, configPath string, configRequired bool, overrides *config.Overrides) *Agent {
	return &Agent{log: log, configPath: configPath, configReq: configRequired, overrides: overrides}
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
	return hostpolicy.Options{Host: cfg.Host, Postures: hostpolicy.Postures{
		File:         cfg.HostDefaultFilePosture,
		Network:      cfg.HostDefaultNetworkPosture,
		Capabilities: cfg.HostDefaultCapabilitiesPosture,
	}}
}

// Run starts every part and blocks until ctx ends or SIGTERM/SIGINT arrives.
func (a *Agent) Run(ctx context.Context) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	a.cfg = cfg
	a.log.Info("starting kubearmor", "config", cfg.Source, "host", cfg.Host, "cluster", cfg.Cluster, "policyDir", cfg.PolicyDir)
	for _, w := range cfg.Warnings {
		a.log.Warn("config", "detail", w)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	// The enforcer is chosen before policies load so the first RuleSet goes
	// straight into the kernel.
	a.enforcer = a.chooseEnforcer(cfg)
	defer a.closeEnforcer()

	store, err := policystore.Open(cfg.PolicyDir, compileOptions(cfg), a.log, a.onPolicies)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.store = store
	a.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := store.Run(ctx); err != nil {
			a.log.Error("policy watcher stopped; policy files are no longer followed live", "err", err)
		}
	}()

	a.log.Info("monitor: not available in this build; no telemetry is collected")
	a.log.Info("feeder: not available in this build; alerts are not streamed")
	a.log.Info("kubearmor ready", "status", a.Status().Line())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping kubearmor")
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				a.reload()
				continue
			}
			a.log.Info("stopping kubearmor", "signal", sig.String())
			return nil
		}
	}
}

// reload re-reads the configuration and the policy directory. A bad config
// file is reported and the running configuration stays.
func (a *Agent) reload() {
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
	}
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
	} else {
		for _, r := range rs.Rules {
			if r.Action != hostpolicy.ActionAudit {
				unenforced[r.ID] = "no kernel enforcer is available on this host"
			}
		}
	}
	bad := 0
	for _, f := range snap.Files {
		if len(f.Errors) > 0 {
			bad++
		}
	}
	a.status.Policies = len(rs.Policies)
	a.status.Rules = len(rs.Rules)
	a.status.Unenforced = unenforced
	a.status.BadFiles = bad
	a.status.Generation = snap.Generation
	a.reportUnenforced(rs, unenforced)
	a.log.Info("policies in force", "change", snap.Change, "generation", snap.Generation, "policies", strings.Join(rs.Policies, ","), "status", a.status.Line())
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
		e, err := open(cfg, a.log)
		if err != nil {
			skipped[name] = err.Error()
			a.log.Info("enforcer not usable", "enforcer", name, "reason", err)
			continue
		}
		a.status.Enforcer = e.Name()
		a.status.EnforcerSkipped = skipped
		a.log.Info("enforcer chosen", "enforcer", e.Name())
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
	return nil
}

func (a *Agent) closeEnforcer() {
	if a.enforcer == nil {
		return
	}
	if err := a.enforcer.Close(); err != nil {
		a.log.Error("enforcer did not detach cleanly", "enforcer", a.enforcer.Name(), "err", err)
		return
	}
	a.log.Info("enforcer detached", "enforcer", a.enforcer.Name())
}

// openEnforcer builds one enforcer, or says why this host cannot run it.
type openEnforcer func(cfg *config.Config, log *slog.Logger) (Enforcer, error)

// enforcers are the enforcers built into this agent, by lsm config name.
var enforcers = map[string]openEnforcer{}
