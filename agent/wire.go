package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/agent/proctable"
	bpflsm "github.com/armorhost/kubearmor/bpf/lsm"
	"github.com/armorhost/kubearmor/bpf/monitor"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/feeder/export"
	"github.com/armorhost/kubearmor/feeder/export/otlp"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"github.com/armorhost/kubearmor/feeder/throttle"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/policystore"
	"github.com/armorhost/kubearmor/runtimes"
)

// This file connects the agent to the concrete parts: which enforcers are
// built in, how the feeder and the monitor are configured, and the status the
// CLI shows.

func init() {
	enforcers["bpf"] = func(cfg *config.Config, life Lifecycle, log *slog.Logger) (Enforcer, error) {
		if err := bpflsm.Supported(); err != nil {
			return nil, err
		}
		return bpflsm.New(bpflsm.Options{PinRoot: life.PinRoot, ObjectVersion: life.ObjectVersion})
	}
}

func throttleConfig(cfg *config.Config) throttle.Config {
	return throttle.Config{Enabled: cfg.AlertThrottling, MaxPerSec: cfg.MaxAlertPerSec, Sec: cfg.ThrottleSec}
}

func (a *Agent) newFeeder(cfg *config.Config) (*feeder.Server, error) {
	addr, _ := cfg.GRPCAddress()   // validated already
	stall, _ := cfg.StallTimeout() // validated already
	var tls *feeder.TLSFiles
	if cfg.TLSEnabled {
		tls = feeder.TLSFilesIn(cfg.TLSCertPath)
	}
	return feeder.New(feeder.Options{
		Cluster:  cfg.Cluster,
		Host:     cfg.Host,
		HostIP:   hostIP(),
		TCP:      addr,
		Socket:   cfg.Socket,
		TLS:      tls,
		Throttle: throttleConfig(cfg),

		TelemetryGroup:         cfg.TelemetryGroup,
		MaxConnections:         cfg.MaxConnections,
		MaxConnectionsPerUser:  cfg.MaxConnectionsPerUser,
		MaxStreamsPerUser:      cfg.MaxStreamsPerUser,
		SubscriberStallTimeout: stall,

		Policies: feeder.PolicyApplierFunc(a.applyHostPolicy),
		Probe:    a,
		Status:   a.statusProto,
		Stages:   a.stages,
		Log:      a.log,
	})
}

// applyHostPolicy carries out a PolicyService request through the store.
func (a *Agent) applyHostPolicy(ev *hostpolicy.Event) (feeder.Status, error) {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return feeder.StatusFailure, errors.New("policies are still loading")
	}
	res, err := store.Apply(ev)
	if errors.Is(err, policystore.ErrRejected) {
		return feeder.StatusInvalid, err
	}
	if err != nil {
		return feeder.StatusFailure, err
	}
	st, _ := feeder.StatusFromName(res.String())
	return st, nil
}

// Policies lists the policies in force (ProbeService).
func (a *Agent) Policies() []*hostpolicy.Policy {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return nil
	}
	return store.Policies()
}

// openMonitor starts the monitor on the visible scopes. With no kernel
// enforcer, the process, file and network rules are matched against
// telemetry (matcher), so those scopes are watched whatever is visible; the
// pipeline still publishes only the visible ones.
func (a *Agent) openMonitor(vis config.Visibility, kernelEnforcer bool) (*monitor.Monitor, *proctable.Table) {
	var scopes monitor.Scope
	for _, s := range []struct {
		on bool
		sc monitor.Scope
	}{{vis.Process, monitor.ScopeProcess}, {vis.File, monitor.ScopeFile}, {vis.Network, monitor.ScopeNetwork}, {vis.Capabilities, monitor.ScopeCapabilities}} {
		if s.on {
			scopes |= s.sc
		}
	}
	watched := scopes
	if !kernelEnforcer {
		watched |= monitor.ScopeProcess | monitor.ScopeFile | monitor.ScopeNetwork
	}
	// Failed setuid/setgid raise DefaultPosture alerts even when the
	// capabilities scope is not visible. The process table follows exec,
	// fork and exit whatever the scopes.
	mon, err := monitor.Open(monitor.Options{Visibility: watched, FailuresOf: monitor.ScopeCapabilities})
	if err != nil {
		a.log.Warn("monitor unavailable: no telemetry, and only kernel enforcer verdicts raise alerts", "err", err)
		procs := proctable.New(proctable.Options{ReadProcOnMiss: true})
		if _, err := procs.SeedFromProc(); err != nil {
			a.log.Warn("process table: cannot read /proc", "err", err)
		}
		return nil, procs
	}
	if missing := mon.Unwatched(); len(missing) > 0 {
		a.log.Info("monitor: syscalls this kernel has no tracepoint for", "syscalls", strings.Join(missing, ","))
	}
	a.log.Info("monitor started", "visibility", scopes.String())
	a.mu.Lock()
	a.mon = mon
	a.mu.Unlock()
	return mon, mon.Table()
}

// reopener is an exporter that reopens its file on SIGHUP (logrotate).
type reopener interface{ Reopen() error }

func (a *Agent) reopenSinks() {
	a.mu.Lock()
	sinks := a.sinks
	a.mu.Unlock()
	for _, s := range sinks {
		if err := s.Reopen(); err != nil {
			a.log.Error("reopen log file", "err", err)
		}
	}
}

// statusProto is the agent's part of `kubearmor status`.
func (a *Agent) statusProto() *statuspb.Status {
	// The store publishes snapshots to onPolicies (which takes a.mu) with its
	// own lock held, so take the snapshot before a.mu, never inside it.
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	var snap policystore.Snapshot
	if store != nil {
		snap = store.Snapshot()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := &statuspb.Status{
		Version:     a.version,
		StartedUnix: a.started.Unix(),
		Enforcer:    a.status.Enforcer,
	}
	if a.cfg != nil {
		st.Cluster, st.Host = a.cfg.Cluster, a.cfg.Host
	}
	var skipped []string
	for name, why := range a.status.EnforcerSkipped {
		skipped = append(skipped, name+": "+why)
	}
	// What the enforcer took over from an earlier agent (pinned BPF-LSM
	// state), or that it will not outlive this process.
	if ad, ok := a.enforcer.(adopter); ok && ad.Adoption() != "" {
		skipped = append(skipped, ad.Adoption())
	}
	st.EnforcerReason = strings.Join(skipped, "; ")
	if snap.RuleSet == nil {
		return st
	}
	rules := map[string]int32{}
	actions := map[string]string{}
	for _, r := range append(append([]hostpolicy.Rule(nil), snap.RuleSet.Rules...), snap.RuleSet.ContainerRules...) {
		rules[r.Policy]++
		if !strings.Contains(actions[r.Policy], r.Action) {
			actions[r.Policy] = strings.TrimPrefix(actions[r.Policy]+","+r.Action, ",")
		}
	}
	st.Warnings = append(st.Warnings, snap.Warnings...)      // the policy directory's: missing, writable by others
	st.Warnings = append(st.Warnings, a.fleet.warnings()...) // the etcd source's, while not connected
	st.Etcd = a.fleet.statusProto()
	for _, f := range snap.Files {
		st.Files = append(st.Files, &statuspb.PolicyFile{Name: f.Name, Policies: f.Policies, Errors: f.Errors, Warnings: f.Warnings})
		for _, p := range f.Policies {
			st.Policies = append(st.Policies, &statuspb.LoadedPolicy{Name: p, File: f.Name, Rules: rules[p], Action: actions[p]})
		}
	}
	for id, why := range a.status.Unenforced {
		if r, ok := snap.RuleSet.Rule(id); ok {
			st.Unenforced = append(st.Unenforced, &statuspb.UnenforcedRule{Policy: r.Policy, RuleId: id,
				Rule: fmt.Sprintf("%s %s %s (%s)", r.Action, r.Category, r.Value, r.Origin), Reason: why})
		}
	}
	if a.pipe != nil {
		if n := a.pipe.dropped.Load(); n > 0 {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%d events dropped: the pipeline queue was full", n))
		}
	}
	// An enforcer's own troubles (the fanotify reader's survived errors,
	// kernel denials at the descriptor limit, or its death).
	if w, ok := a.enforcer.(interface{ Warnings() []string }); ok {
		st.Warnings = append(st.Warnings, w.Warnings()...)
	}
	if ops := unrefusedFileOps(a.enforcer); len(ops) > 0 {
		st.Warnings = append(st.Warnings, unrefusedText(a.enforcer.Name(), ops))
	}
	return st
}

func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// mountKernelFilesystems mounts securityfs, the BPF filesystem and tracefs
// where they are missing (minimal hosts, initramfs, containers): the enforcer
// selection reads securityfs and the monitor's tracepoints need tracefs.
func mountKernelFilesystems(log *slog.Logger) error {
	var errs []error
	for _, m := range []struct {
		path, fstype string
		magic        int64
	}{
		{"/sys/kernel/security", "securityfs", unix.SECURITYFS_MAGIC},
		{"/sys/fs/bpf", "bpf", unix.BPF_FS_MAGIC},
		{"/sys/kernel/tracing", "tracefs", unix.TRACEFS_MAGIC},
	} {
		var st unix.Statfs_t
		if err := unix.Statfs(m.path, &st); err == nil && st.Type == m.magic {
			continue
		}
		if err := os.MkdirAll(m.path, 0o700); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.path, err))
			continue
		}
		if err := unix.Mount(m.fstype, m.path, m.fstype, 0, ""); err != nil {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.path, err))
			continue
		}
		log.Info("mounted", "fs", m.fstype, "at", m.path)
	}
	return errors.Join(errs...)
}

// startSinks starts the exporters the configuration asks for: JSON lines
// (logPath) and syslog. Each is a feeder subscriber with its own queue.
// It returns once each has subscribed (at most 5 s), so that the verdicts
// a pinned ring buffer kept from while no agent ran reach them too.
func (a *Agent) startSinks(ctx context.Context, cfg *config.Config, srv *feeder.Server, goRun func(string, func(context.Context) error)) {
	var subscribed sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { subscribed.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}()
	run := goRun
	goRun = func(name string, f func(context.Context) error) {
		subscribed.Add(1)
		run(name, f)
	}
	sinkOpts := func(o feeder.SinkOptions) feeder.SinkOptions {
		o.Subscribed = subscribed.Done
		return o
	}
	if cfg.LogPath != "" && cfg.LogPath != "none" {
		var j *export.JSONLines
		if cfg.LogPath == export.Stdout {
			j = export.NewJSONLines(os.Stdout)
		} else if f, err := export.OpenJSONLines(cfg.LogPath); err != nil {
			a.log.Error("logPath: cannot open; alerts are not written there", "path", cfg.LogPath, "err", err)
		} else {
			j = f
			a.mu.Lock()
			a.sinks = append(a.sinks, f)
			a.mu.Unlock()
		}
		if j != nil {
			goRun("logPath exporter", func(ctx context.Context) error {
				defer j.Close()
				return srv.RunSink(ctx, "logPath "+cfg.LogPath, j, sinkOpts(feeder.SinkOptions{Alerts: true, Logs: true}))
			})
			a.log.Info("writing alerts and logs as JSON lines", "logPath", cfg.LogPath)
		}
	}
	if cfg.OTLPEndpoint != "" {
		a.startOTLP(cfg, srv, goRun, sinkOpts)
	}
	if cfg.Syslog != "" {
		s, err := export.NewSyslog(export.SyslogOptions{Address: cfg.Syslog, Format: cfg.SyslogFormat, Version: a.version, Hostname: cfg.Host})
		if err != nil {
			a.log.Error("syslog: cannot connect; alerts are not forwarded", "address", cfg.Syslog, "err", err)
			return
		}
		goRun("syslog exporter", func(ctx context.Context) error {
			defer s.Close()
			return srv.RunSink(ctx, "syslog "+cfg.Syslog, s, sinkOpts(feeder.SinkOptions{Alerts: true}))
		})
	}
}

// startOTLP starts the OTLP exporter: a feeder subscriber like the others,
// sending to an OpenTelemetry Collector. A collector that is down is not an
// error here: the exporter queues and retries (status shows it failing).
func (a *Agent) startOTLP(cfg *config.Config, srv *feeder.Server, goRun func(string, func(context.Context) error), sinkOpts func(feeder.SinkOptions) feeder.SinkOptions) {
	alerts, logs, _ := cfg.OTLPEventKinds() // validated already
	headers, _ := cfg.OTLPHeaderMap()       // validated already
	o, err := otlp.New(otlp.Options{
		Endpoint: cfg.OTLPEndpoint, Protocol: cfg.OTLPProtocol, Insecure: cfg.OTLPInsecure,
		CAFile: cfg.OTLPCACert, CertFile: cfg.OTLPClientCert, KeyFile: cfg.OTLPClientKey, Headers: headers,
		BatchSize: cfg.OTLPBatchSize, QueueLength: cfg.OTLPQueueLength,
		Version: a.version, HostName: cfg.Host, HostID: machineID(),
	})
	if err != nil {
		a.log.Error("otlpEndpoint: cannot set up the OTLP exporter; events are not sent there", "endpoint", cfg.OTLPEndpoint, "err", err)
		return
	}
	goRun("OTLP exporter", func(ctx context.Context) error {
		defer o.Close()
		return srv.RunSink(ctx, "otlp "+o.Target(), o, sinkOpts(feeder.SinkOptions{Alerts: alerts, Logs: logs}))
	})
	a.log.Info("sending events over OTLP", "target", o.Target(), "events", cfg.OTLPEvents)
}

// machineID is /etc/machine-id (host.id of OTLP records), or "".
func machineID() string {
	data, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// pipelineMetrics adds the agent's own counters to the feeder's metrics.
func (a *Agent) pipelineMetrics(m *feeder.MetricsWriter) {
	if a.pipe == nil {
		return
	}
	m.Family("kubearmor_pipeline_events_total", "counter", "Kernel events the pipeline handled.")
	m.Sample("kubearmor_pipeline_events_total", float64(a.pipe.handled.Load()))
	m.Family("kubearmor_pipeline_dropped_total", "counter", "Kernel events dropped because the pipeline queue was full.")
	m.Sample("kubearmor_pipeline_dropped_total", float64(a.pipe.dropped.Load()))
	st := a.Status()
	m.Family("kubearmor_rules", "gauge", "Rules compiled from the policies in force.")
	m.Sample("kubearmor_rules", float64(st.Rules))
	m.Family("kubearmor_rules_unenforced", "gauge", "Rules the active enforcer cannot enforce.")
	m.Sample("kubearmor_rules_unenforced", float64(len(st.Unenforced)))
	m.Family("kubearmor_policy_files_rejected", "gauge", "Policy files whose current content is rejected.")
	m.Sample("kubearmor_policy_files_rejected", float64(st.BadFiles))
}

// writeProbeData writes the host description `karmor probe` reads.
func (a *Agent) writeProbeData(cfg *config.Config) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	lsm := "none"
	if a.enforcer != nil {
		lsm = a.enforcer.Name()
	}
	err := feeder.WriteKarmorProbeData(feeder.KarmorProbeDataPath, feeder.KarmorProbeData{
		OSImage:       osImage(),
		KernelVersion: unix.ByteSliceToString(uts.Release[:]),
		ActiveLSM:     lsm,
		HostSecurity:  true,
		HostDefaultPosture: feeder.Posture{File: cfg.HostDefaultFilePosture, Network: cfg.HostDefaultNetworkPosture,
			Capabilities: cfg.HostDefaultCapabilitiesPosture},
		HostVisibility: cfg.HostVisibility,
	})
	if err != nil {
		a.log.Warn("cannot write karmor probe data", "path", feeder.KarmorProbeDataPath, "err", err)
	}
}

// osImage is PRETTY_NAME of /etc/os-release.
func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// openRuntimes follows Docker and containerd so events from containers carry
// their identity. Absent runtimes are retried in the background.
func (a *Agent) openRuntimes(cfg *config.Config) *runtimes.Resolver {
	if cfg.DockerSocket == "none" && cfg.ContainerdSocket == "none" {
		return nil
	}
	r, err := runtimes.New(runtimes.Options{DockerSocket: cfg.DockerSocket, ContainerdSocket: cfg.ContainerdSocket, Logger: a.log,
		OnChange: a.containers.notify})
	if err != nil {
		a.log.Warn("container runtimes: not followed; container events are reported as host events", "err", err)
		return nil
	}
	return r
}
