package agent

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/feeder/export"
	"github.com/armorhost/kubearmor/feeder/export/otlp"
)

// Exporters: feeder subscribers that write alerts and logs to files, syslog
// and OTLP.

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
