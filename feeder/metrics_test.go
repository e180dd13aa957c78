package feeder

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/throttle"
)

func TestMetrics(t *testing.T) {
	now := time.Unix(1700000000, 0)
	srv, _ := New(Options{Host: "vm1", Now: func() time.Time { return now }, Throttle: throttle.Config{Enabled: true, MaxPerSec: 1, Sec: 30}, QueueDepth: 1})
	sub, _ := srv.alerts.Subscribe("stalled", 1)
	defer sub.Close()
	srv.PublishAlert(sampleAlert(`odd "name"`))
	srv.PublishAlert(sampleAlert("p")) // the subscriber's queue is full: dropped
	srv.PublishAlert(sampleAlert("p")) // throttled into the notice, dropped too
	srv.PublishAlert(sampleAlert("p")) // throttled
	srv.PublishLog(sampleLog())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.serveMetrics(ctx, ln, func(m *MetricsWriter) {
			m.Family("kubearmor_ringbuf_lost_total", "counter", "Kernel events lost.")
			m.Sample("kubearmor_ringbuf_lost_total", 7)
		})
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	for _, want := range []string{
		"# TYPE kubearmor_events_published_total counter\n",
		`kubearmor_events_published_total{stream="alerts"} 3` + "\n",
		`kubearmor_events_published_total{stream="logs"} 1` + "\n",
		`kubearmor_subscriber_drops_total{stream="alerts"} 2` + "\n",
		`kubearmor_subscribers{stream="alerts"} 1` + "\n",
		`kubearmor_alerts_total{policy="odd \"name\""} 1` + "\n",
		`kubearmor_alerts_total{policy="p"} 1` + "\n",
		`kubearmor_alerts_throttled_total{policy="p"} 2` + "\n",
		"kubearmor_exporter_errors_total 0\n",
		"kubearmor_ringbuf_lost_total 7\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if err := srv.ServeMetrics(context.Background(), "0.0.0.0:0"); err == nil {
		t.Error("served metrics off loopback")
	}
}
