package feeder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsWriter is how the feeder and the agent hand their figures to the
// Prometheus client library at each scrape: Family names a metric family,
// Sample adds one sample to it. The figures live in the parts that count
// them (atomic counters, stage lists), so they are read when scraped rather
// than mirrored into client_golang's own counters.
type MetricsWriter struct {
	ch       chan<- prometheus.Metric
	families map[string]metricFamily
}

type metricFamily struct {
	help  string
	kind  prometheus.ValueType
	descs map[string]*prometheus.Desc // by label names, joined
}

// Family starts a metric family; kind is "counter" or "gauge" (anything
// else is untyped).
func (m *MetricsWriter) Family(name, kind, help string) {
	vt := prometheus.UntypedValue
	switch kind {
	case "counter":
		vt = prometheus.CounterValue
	case "gauge":
		vt = prometheus.GaugeValue
	}
	m.families[name] = metricFamily{help: strings.ReplaceAll(help, "\n", " "), kind: vt, descs: map[string]*prometheus.Desc{}}
}

// Sample adds one sample; labels are name, value pairs. A sample the
// library refuses (a family never started, a bad label) is reported as an
// invalid metric: the scrape goes on and the error reaches the handler's log.
func (m *MetricsWriter) Sample(name string, value float64, labels ...string) {
	names := make([]string, 0, len(labels)/2)
	values := make([]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	f, ok := m.families[name]
	if !ok {
		desc := prometheus.NewDesc(name, "undeclared", nil, nil)
		m.ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("metric %s: sample before its Family", name))
		return
	}
	key := strings.Join(names, ",")
	desc := f.descs[key]
	if desc == nil {
		desc = prometheus.NewDesc(name, f.help, names, nil)
		f.descs[key] = desc
	}
	metric, err := prometheus.NewConstMetric(desc, f.kind, value, values...)
	if err != nil {
		metric = prometheus.NewInvalidMetric(desc, fmt.Errorf("metric %s: %w", name, err))
	}
	m.ch <- metric
}

// scrapeCollector reads the feeder's figures, and the extra writers', at
// each scrape. It is an unchecked collector (Describe sends nothing): the
// label values (policies, stages) come and go.
type scrapeCollector struct {
	s     *Server
	extra []func(*MetricsWriter)
}

func (c scrapeCollector) Describe(chan<- *prometheus.Desc) {}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	m := &MetricsWriter{ch: ch, families: map[string]metricFamily{}}
	c.s.writeMetrics(m)
	for _, f := range c.extra {
		f(m)
	}
}

// MetricsRegistry is the registry the metrics endpoint serves: the Go
// runtime's and the process's collectors, then the feeder's metrics,
// followed by whatever extra writes (the agent's own counters).
func (s *Server) MetricsRegistry(extra ...func(*MetricsWriter)) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		scrapeCollector{s: s, extra: extra},
	)
	return reg
}

// MetricsHandler serves the registry of MetricsRegistry, in the Prometheus
// text format or, when the scraper asks for it, OpenMetrics. A metric that
// fails is logged and left out; the rest is served.
func (s *Server) MetricsHandler(extra ...func(*MetricsWriter)) http.Handler {
	reg := s.MetricsRegistry(extra...)
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          metricsErrorLog{s.opts.Log},
		Timeout:           10 * time.Second,
	}))
}

// metricsErrorLog hands promhttp's errors to the agent's log.
type metricsErrorLog struct{ log *slog.Logger }

func (l metricsErrorLog) Println(v ...any) {
	if l.log != nil {
		l.log.Warn("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
	}
}

func (s *Server) writeMetrics(m *MetricsWriter) {
	a, l, msg := s.alerts.Stats(), s.logs.Stats(), s.messages.Stats()
	th := s.throttle.Stats()

	m.Family("kubearmor_events_published_total", "counter", "Alerts, logs and messages handed to subscribers (after throttling).")
	m.Sample("kubearmor_events_published_total", float64(a.Published), "stream", "alerts")
	m.Sample("kubearmor_events_published_total", float64(l.Published), "stream", "logs")
	m.Sample("kubearmor_events_published_total", float64(msg.Published), "stream", "messages")

	m.Family("kubearmor_subscriber_drops_total", "counter", "Deliveries lost because a subscriber's queue was full, summed over subscribers.")
	m.Sample("kubearmor_subscriber_drops_total", float64(a.Dropped), "stream", "alerts")
	m.Sample("kubearmor_subscriber_drops_total", float64(l.Dropped), "stream", "logs")
	m.Sample("kubearmor_subscriber_drops_total", float64(msg.Dropped), "stream", "messages")

	m.Family("kubearmor_subscribers", "gauge", "Current subscribers (gRPC streams and exporters).")
	m.Sample("kubearmor_subscribers", float64(len(a.Subscribers)), "stream", "alerts")
	m.Sample("kubearmor_subscribers", float64(len(l.Subscribers)), "stream", "logs")
	m.Sample("kubearmor_subscribers", float64(len(msg.Subscribers)), "stream", "messages")

	m.Family("kubearmor_alerts_total", "counter", "Alerts published, by policy.")
	byPolicy := s.AlertsByPolicy()
	for _, name := range sortedKeys(byPolicy) {
		m.Sample("kubearmor_alerts_total", float64(byPolicy[name]), "policy", name)
	}

	m.Family("kubearmor_alerts_throttled_total", "counter", "Alerts not delivered because their policy exceeded maxAlertPerSec, by policy.")
	for _, name := range sortedKeys(th.ByPolicy) {
		m.Sample("kubearmor_alerts_throttled_total", float64(th.ByPolicy[name]), "policy", name)
	}

	m.Family("kubearmor_exporter_errors_total", "counter", "Failed writes of exporters (logPath, syslog).")
	m.Sample("kubearmor_exporter_errors_total", float64(s.SinkErrors()))

	writeStageMetrics(m, s.Stages())
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ServeMetrics serves /metrics on a loopback address until ctx ends.
func (s *Server) ServeMetrics(ctx context.Context, addr string, extra ...func(*MetricsWriter)) error {
	if !IsLoopback(addr) {
		return fmt.Errorf("feeder: metrics address %s is not loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("feeder: metrics: %w", err)
	}
	return s.serveMetrics(ctx, ln, extra...)
}

func (s *Server) serveMetrics(ctx context.Context, ln net.Listener, extra ...func(*MetricsWriter)) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.MetricsHandler(extra...))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	defer stop()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("feeder: metrics: %w", err)
	}
	return nil
}
