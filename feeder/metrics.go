package feeder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// MetricsWriter writes the Prometheus text exposition format (version
// 0.0.4): one HELP and TYPE line per family, then its samples.
type MetricsWriter struct {
	w *bufio.Writer
}

// Family starts a metric family; kind is "counter" or "gauge".
func (m *MetricsWriter) Family(name, kind, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, strings.ReplaceAll(help, "\n", " "), name, kind)
}

// Sample writes one sample; labels are name, value pairs.
func (m *MetricsWriter) Sample(name string, value float64, labels ...string) {
	m.w.WriteString(name)
	if len(labels) >= 2 {
		m.w.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.w.WriteByte(',')
			}
			fmt.Fprintf(m.w, "%s=\"%s\"", labels[i], labelEscaper.Replace(labels[i+1]))
		}
		m.w.WriteByte('}')
	}
	fmt.Fprintf(m.w, " %v\n", value)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// MetricsHandler serves the feeder's metrics, followed by whatever extra
// writes (the agent's own counters: events read, ring-buffer losses, ...).
func (s *Server) MetricsHandler(extra ...func(*MetricsWriter)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m := &MetricsWriter{w: bufio.NewWriter(w)}
		s.writeMetrics(m)
		for _, f := range extra {
			f(m)
		}
		m.w.Flush()
	})
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
