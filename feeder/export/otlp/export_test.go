package otlp

// Senders and InFlight let the tests fill every sender before they meet
// the queue's own bound.
const Senders = senders

func InFlight(e *Exporter) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.flight
}
