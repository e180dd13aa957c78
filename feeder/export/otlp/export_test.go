package otlp

import (
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// Senders and InFlight let the tests fill every sender before they meet
// the queue's own bound.
const Senders = senders

func InFlight(e *Exporter) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.flight
}

// Record builds the record the exporter would queue for an alert or a log.
func Record(e *Exporter, v any) sdklog.Record {
	b := e.scratch.Get().(*attrs)
	defer e.scratch.Put(b.reset())
	rec := e.tmpl
	switch v := v.(type) {
	case *kubearmorpb.Alert:
		alertRecord(&rec, b, v)
	case *kubearmorpb.Log:
		logRecord(&rec, b, v)
	}
	return rec
}
