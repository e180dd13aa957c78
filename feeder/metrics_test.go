package feeder

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/armorhost/kubearmor/feeder/throttle"
)

// scrape serves srv's metrics on a loopback port, GETs /metrics once with
// the given Accept header and returns the content type and body.
func scrape(t *testing.T, srv *Server, accept string, extra ...func(*MetricsWriter)) (string, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serveMetrics(ctx, ln, extra...) }()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s:\n%s", resp.Status, body)
	}
	return resp.Header.Get("Content-Type"), body
}

func metricsServer(t *testing.T) *Server {
	t.Helper()
	now := time.Unix(1700000000, 0)
	srv, err := New(Options{Host: "vm1", Now: func() time.Time { return now }, Throttle: throttle.Config{Enabled: true, MaxPerSec: 1, Sec: 30}, QueueDepth: 1})
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := srv.alerts.Subscribe("stalled", 1)
	t.Cleanup(func() { sub.Close() })
	srv.PublishAlert(sampleAlert(`odd "name"`))
	srv.PublishAlert(sampleAlert("p")) // the subscriber's queue is full: dropped
	srv.PublishAlert(sampleAlert("p")) // throttled into the notice, dropped too
	srv.PublishAlert(sampleAlert("p")) // throttled
	srv.PublishLog(sampleLog())
	return srv
}

// agentExtra stands for the agent's own families (agent/metrics.go).
func agentExtra(m *MetricsWriter) {
	m.Family("kubearmor_ringbuf_lost_total", "counter", "Kernel events lost.")
	m.Sample("kubearmor_ringbuf_lost_total", 7)
}

// TestMetrics scrapes the endpoint and parses it with the Prometheus text
// parser: every figure the feeder counts is there, with its value.
func TestMetrics(t *testing.T) {
	srv := metricsServer(t)
	ct, body := scrape(t, srv, "", agentExtra)
	if got := expfmt.ResponseFormat(http.Header{"Content-Type": {ct}}); got.FormatType() != expfmt.TypeTextPlain {
		t.Errorf("content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	value := func(name string, labels ...string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"kubearmor_events_published_total", []string{"stream", "alerts"}, 3},
		{"kubearmor_events_published_total", []string{"stream", "logs"}, 1},
		{"kubearmor_subscriber_drops_total", []string{"stream", "alerts"}, 2},
		{"kubearmor_subscribers", []string{"stream", "alerts"}, 1},
		{"kubearmor_alerts_total", []string{"policy", `odd "name"`}, 1},
		{"kubearmor_alerts_total", []string{"policy", "p"}, 1},
		{"kubearmor_alerts_throttled_total", []string{"policy", "p"}, 2},
		{"kubearmor_exporter_errors_total", nil, 0},
		{"kubearmor_ringbuf_lost_total", nil, 7},
		{"kubearmor_stage_received_total", []string{"stage", "throttle (alerts)"}, 4},
	} {
		got, ok := value(tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	// The runtime and process collectors are registered.
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_open_fds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	checkNaming(t, fams, body)

	if err := srv.ServeMetrics(context.Background(), "0.0.0.0:0"); err == nil {
		t.Error("served metrics off loopback")
	}
}

// TestMetricsOpenMetrics: a scraper that asks for OpenMetrics gets it.
func TestMetricsOpenMetrics(t *testing.T) {
	srv := metricsServer(t)
	ct, body := scrape(t, srv, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("content type %q, want OpenMetrics", ct)
	}
	for _, want := range []string{
		"# TYPE kubearmor_events_published counter\n",
		`kubearmor_events_published_total{stream="alerts"} 3`,
		"# EOF\n",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("OpenMetrics body lacks %q:\n%s", want, body)
		}
	}
}

// TestMetricsBadSample: a sample the library refuses is left out and the
// rest is still served.
func TestMetricsBadSample(t *testing.T) {
	srv := metricsServer(t)
	_, body := scrape(t, srv, "", func(m *MetricsWriter) {
		m.Sample("kubearmor_never_declared_total", 1)
		m.Family("kubearmor_bad_labels", "gauge", "A label name the library refuses.")
		m.Sample("kubearmor_bad_labels", 1, "bad-label", "x")
	})
	if bytes.Contains(body, []byte("kubearmor_never_declared_total")) || bytes.Contains(body, []byte("bad-label")) {
		t.Errorf("refused samples served:\n%s", body)
	}
	if !bytes.Contains(body, []byte("kubearmor_events_published_total")) {
		t.Errorf("the rest is not served:\n%s", body)
	}
}

var metricName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkNaming holds every family to Prometheus' naming conventions: what
// `promtool check metrics` reports (client_golang's promlint: help text,
// counters end in _total, base units, no reserved suffixes, snake_case),
// plus the agent's own rules: lower snake case, the kubearmor_ namespace
// for our figures, _total only on counters, and no abbreviated or non-base
// time, size or ratio units.
func checkNaming(t *testing.T, fams map[string]*dto.MetricFamily, body []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	badUnits := regexp.MustCompile(`_(ms|msec|milliseconds|us|microseconds|ns|nanoseconds|sec|secs|minutes|hours|days|kb|mb|gb|kilobytes|megabytes|percent|pct)(_|$)`)
	for name, f := range fams {
		switch {
		case !metricName.MatchString(name):
			t.Errorf("%s: not lower snake case", name)
		case !strings.HasPrefix(name, "kubearmor_") && !strings.HasPrefix(name, "go_") &&
			!strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_"):
			t.Errorf("%s: outside the kubearmor_ namespace", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		isCounter := f.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %s; _total is for counters and only them", name, f.GetType())
		}
		if strings.HasPrefix(name, "kubearmor_") && badUnits.MatchString(name) {
			t.Errorf("%s: use base units (seconds, bytes, ratios)", name)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !metricName.MatchString(l.GetName()) {
					t.Errorf("%s: label %q not lower snake case", name, l.GetName())
				}
			}
		}
	}
}
