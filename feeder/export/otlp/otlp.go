// Package otlp sends alerts and logs to an OpenTelemetry Collector (or any
// OTLP logs receiver) over gRPC or HTTP/protobuf, with the OpenTelemetry Go
// SDK's OTLP log exporters. It is a feeder.Sink: the feeder calls it from
// its own goroutine, and it never blocks that goroutine; batching, retries
// and the bounded queue are its own, and every record lost is counted in
// its Stage.
//
// The SDK's BatchProcessor is not used: it drops silently (a log line, no
// count per record) and gives up on a batch after its retry budget. Here the
// queue holds what arrives while the collector is down, the batch at its
// head is retried with backoff until the collector takes it, and a full
// queue gives way to alerts: a log is dropped (counted) to make room for an
// alert.
package otlp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// Protocols.
const (
	GRPC         = "grpc"
	HTTPProtobuf = "http/protobuf"
)

// Defaults.
const (
	DefaultBatchSize   = 512
	DefaultQueueLength = 8192
)

// Retry and batching timings. Every failed attempt is retried; the wait
// doubles from minBackoff to maxBackoff, so a collector back after an
// outage gets the queue within maxBackoff.
const (
	minBackoff    = 250 * time.Millisecond
	maxBackoff    = 5 * time.Second
	exportTimeout = 10 * time.Second
	// batchDelay is how long a record waits for a batch to fill.
	batchDelay = 200 * time.Millisecond
	// closeTimeout bounds the last export at shutdown.
	closeTimeout = 5 * time.Second
)

// Options configure an exporter.
type Options struct {
	Endpoint string // HOST:PORT (or a http(s):// URL for http/protobuf)
	Protocol string // GRPC or HTTPProtobuf
	// Insecure sends in plaintext; otherwise TLS, verified with CAFile (or
	// the system's roots when empty), with a client certificate when
	// CertFile and KeyFile are set (mTLS).
	Insecure                  bool
	CAFile, CertFile, KeyFile string
	Headers                   map[string]string // sent with every request (tokens)

	BatchSize   int // records per export (DefaultBatchSize)
	QueueLength int // records waiting (DefaultQueueLength); the batch in flight is extra

	// Resource attributes.
	Version  string // service.version
	HostName string // host.name
	HostID   string // host.id (machine-id)
}

// Exporter sends alerts and logs as OTLP log records.
type Exporter struct {
	opts     Options
	exp      sdklog.Exporter
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	target   string

	mu      sync.Mutex
	alerts  []*sdklog.Record // queued, oldest first (pointers: cheap to move)
	logs    []*sdklog.Record
	head    int           // records in flight (taken from the queue, not yet sent)
	wake    chan struct{} // a record arrived (when the queue was empty, or holds a batch)
	stop    chan struct{} // closed by Close
	closing bool
	done    chan struct{} // closed when run returns

	// accounting (under mu)
	received, sent, dropped uint64
	lastErr                 error
	since                   time.Time
}

// New builds an exporter and starts its sender. It does not connect: a
// collector that is down is retried when records are sent.
func New(o Options) (*Exporter, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.QueueLength <= 0 {
		o.QueueLength = DefaultQueueLength
	}
	exp, target, err := newSDKExporter(o)
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Empty(), resource.NewSchemaless(resourceAttrs(o)...))
	if err != nil {
		return nil, fmt.Errorf("otlp: resource: %w", err)
	}
	e := &Exporter{opts: o, exp: exp, target: target, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	e.provider = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor((*processor)(e)),
		// Every field is kept: the limits apply to attribute counts and
		// lengths, and an event has a fixed, small set.
		sdklog.WithAttributeCountLimit(-1), sdklog.WithAttributeValueLengthLimit(-1),
		// Our keys are unique by construction: the SDK's deduplication
		// (a map per record) was a third of the exporter's CPU.
		sdklog.WithAllowKeyDuplication())
	e.logger = e.provider.Logger("github.com/armorhost/kubearmor", otellog.WithInstrumentationVersion(o.Version))
	go e.run()
	return e, nil
}

// newSDKExporter builds the SDK's OTLP log exporter for the protocol, with
// its own retries off: the exporter retries (and keeps the batch) itself.
func newSDKExporter(o Options) (sdklog.Exporter, string, error) {
	var tlsConf *tls.Config
	if !o.Insecure {
		var err error
		if tlsConf, err = clientTLS(o); err != nil {
			return nil, "", err
		}
	}
	ctx := context.Background()
	switch o.Protocol {
	case GRPC, "":
		if o.Endpoint == "" {
			return nil, "", errors.New("otlp: no endpoint")
		}
		opts := []otlploggrpc.Option{
			otlploggrpc.WithEndpoint(o.Endpoint),
			otlploggrpc.WithTimeout(exportTimeout),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}),
			// gRPC's own reconnect backoff grows to 2 minutes; a collector
			// back after an outage should be found within our maxBackoff.
			otlploggrpc.WithDialOption(grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff}})),
		}
		if o.Insecure {
			opts = append(opts, otlploggrpc.WithInsecure())
		} else {
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tlsConf)))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlploggrpc.WithHeaders(o.Headers))
		}
		exp, err := otlploggrpc.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("otlp: %w", err)
		}
		return exp, "grpc://" + o.Endpoint, nil
	case HTTPProtobuf:
		opts := []otlploghttp.Option{
			otlploghttp.WithTimeout(exportTimeout),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}),
		}
		target := o.Endpoint
		if strings.Contains(o.Endpoint, "://") {
			u, err := url.Parse(o.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, "", fmt.Errorf("otlp: endpoint %q: want HOST:PORT or an http(s):// URL", o.Endpoint)
			}
			if (u.Scheme == "http") != o.Insecure {
				return nil, "", fmt.Errorf("otlp: endpoint %q: an http:// URL goes with insecure, https:// without", o.Endpoint)
			}
			opts = append(opts, otlploghttp.WithEndpointURL(o.Endpoint))
		} else {
			if o.Endpoint == "" {
				return nil, "", errors.New("otlp: no endpoint")
			}
			opts = append(opts, otlploghttp.WithEndpoint(o.Endpoint))
			scheme := "https://"
			if o.Insecure {
				scheme = "http://"
			}
			target = scheme + o.Endpoint + "/v1/logs"
		}
		if o.Insecure {
			opts = append(opts, otlploghttp.WithInsecure())
		} else {
			opts = append(opts, otlploghttp.WithTLSClientConfig(tlsConf))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlploghttp.WithHeaders(o.Headers))
		}
		exp, err := otlploghttp.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("otlp: %w", err)
		}
		return exp, target, nil
	}
	return nil, "", fmt.Errorf("otlp: protocol %q: want %s or %s", o.Protocol, GRPC, HTTPProtobuf)
}

// clientTLS loads the CA to verify the collector with and the client
// certificate for mTLS. Errors name the file.
func clientTLS(o Options) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("otlp: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("otlp: CA file %s: no PEM certificate in it", o.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("otlp: client certificate %s, key %s: %w", o.CertFile, o.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, errors.New("otlp: a client certificate needs both the certificate and the key file")
	}
	return c, nil
}

// Target names where records go, for logs.
func (e *Exporter) Target() string { return e.target }

// WriteAlert queues an alert; never blocks.
func (e *Exporter) WriteAlert(a *kubearmorpb.Alert) error {
	rec, err := alertRecord(a)
	return e.emit(rec, err)
}

// WriteLog queues a log; never blocks.
func (e *Exporter) WriteLog(l *kubearmorpb.Log) error {
	rec, err := logRecord(l)
	return e.emit(rec, err)
}

func (e *Exporter) emit(rec otellog.Record, err error) error {
	if err != nil {
		e.mu.Lock()
		e.received++
		e.dropped++
		e.mu.Unlock()
		return fmt.Errorf("otlp: %w", err)
	}
	// The provider calls processor.OnEmit synchronously, which queues it.
	e.logger.Emit(context.Background(), rec)
	return nil
}

// Flush is a no-op: the sender batches on its own clock (a batch is sent
// when full or batchDelay after its first record).
func (e *Exporter) Flush() error { return nil }

// processor is the exporter as the SDK sees it: every record the logger
// emits is queued.
type processor Exporter

func (p *processor) OnEmit(_ context.Context, r *sdklog.Record) error {
	c := r.Clone()
	(*Exporter)(p).enqueue(&c)
	return nil
}

func (p *processor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (p *processor) Shutdown(context.Context) error                         { return nil }
func (p *processor) ForceFlush(context.Context) error                       { return nil }

// enqueue adds a record; a full queue gives way to alerts: an incoming log
// is dropped, an incoming alert replaces the oldest queued log, and an
// alert is dropped only when the queue holds alerts alone.
func (e *Exporter) enqueue(r *sdklog.Record) {
	alert := r.EventName() == alertEvent
	e.mu.Lock()
	e.received++
	switch {
	case e.closing:
		e.dropped++
	case len(e.alerts)+len(e.logs) < e.opts.QueueLength:
		if alert {
			e.alerts = append(e.alerts, r)
		} else {
			e.logs = append(e.logs, r)
		}
	case alert && len(e.logs) > 0:
		e.logs[0] = nil
		e.logs = e.logs[1:]
		e.dropped++
		e.alerts = append(e.alerts, r)
	default:
		e.dropped++
	}
	n := len(e.alerts) + len(e.logs)
	e.mu.Unlock()
	if n == 1 || n >= e.opts.BatchSize {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// take removes up to BatchSize records, alerts first.
func (e *Exporter) take() []sdklog.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := min(e.opts.BatchSize, len(e.alerts)+len(e.logs))
	if n == 0 {
		return nil
	}
	batch := make([]sdklog.Record, 0, n)
	k := min(n, len(e.alerts))
	for _, r := range e.alerts[:k] {
		batch = append(batch, *r)
	}
	clear(e.alerts[:k])
	e.alerts = e.alerts[k:]
	if k < n {
		for _, r := range e.logs[:n-k] {
			batch = append(batch, *r)
		}
		clear(e.logs[:n-k])
		e.logs = e.logs[n-k:]
	}
	// Let a drained slice start again at its array's beginning.
	if len(e.alerts) == 0 {
		e.alerts = e.alerts[:0:0]
	}
	if len(e.logs) == 0 {
		e.logs = e.logs[:0:0]
	}
	e.head = n
	return batch
}

func (e *Exporter) queued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.alerts) + len(e.logs)
}

// run sends batches until Close: a batch is sent once full, or batchDelay
// after the queue stopped being empty; a failed batch is retried with
// backoff, new records queueing behind it.
func (e *Exporter) run() {
	defer close(e.done)
	for {
		if e.queued() == 0 {
			select {
			case <-e.wake:
			case <-e.stop:
				return
			}
			continue
		}
		if e.queued() < e.opts.BatchSize {
			t := time.NewTimer(batchDelay)
		fill:
			for e.queued() < e.opts.BatchSize {
				select {
				case <-t.C:
					break fill
				case <-e.wake:
				case <-e.stop:
					t.Stop()
					return
				}
			}
			t.Stop()
		}
		if batch := e.take(); len(batch) > 0 {
			e.send(batch)
		}
	}
}

// send exports one batch, retrying until it is delivered, refused for good,
// or the exporter closes.
func (e *Exporter) send(batch []sdklog.Record) {
	wait := minBackoff
	for {
		ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
		err := e.exp.Export(ctx, batch)
		cancel()
		rejected, partial := partialSuccess(err)
		switch {
		case err == nil || partial:
			e.settle(uint64(len(batch))-rejected, rejected, nil)
			return
		case permanent(err):
			// The collector refused the batch (bad request, auth): retrying
			// the same bytes cannot succeed. Counted as lost.
			e.settle(0, uint64(len(batch)), err)
			return
		}
		e.failing(err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.stop:
			// Shutting down while the collector fails: the batch is lost.
			t.Stop()
			e.settle(0, uint64(len(batch)), err)
			return
		}
		wait = min(2*wait, maxBackoff)
	}
}

// settle records the outcome of the batch in flight; failure is nil when
// the collector took it.
func (e *Exporter) settle(sent, lost uint64, failure error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent += sent
	e.dropped += lost
	e.head = 0
	if failure == nil {
		e.lastErr, e.since = nil, time.Time{}
		return
	}
	if e.lastErr == nil {
		e.since = time.Now()
	}
	e.lastErr = failure
}

func (e *Exporter) failing(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastErr == nil {
		e.since = time.Now()
	}
	e.lastErr = err
}

// Stage is the exporter's accounting: records received, delivered, lost
// (full queue, refused by the collector, left at shutdown), waiting, and
// whether it is failing.
func (e *Exporter) Stage() event.Stage {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := event.Stage{Received: e.received, Passed: e.sent, Dropped: e.dropped,
		Pending: uint64(len(e.alerts) + len(e.logs) + e.head)}
	if e.lastErr != nil {
		st.State = "failing: " + e.target + ": " + e.lastErr.Error()
		st.FailingSince = e.since
	}
	return st
}

// Close sends what is queued (for at most closeTimeout, without retries),
// counts the rest as lost, and shuts the SDK exporter down.
func (e *Exporter) Close() error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil
	}
	e.closing = true
	e.mu.Unlock()
	close(e.stop)
	<-e.done
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for {
		batch := e.take()
		if len(batch) == 0 {
			break
		}
		if ctx.Err() != nil {
			e.settle(0, uint64(len(batch)), ctx.Err())
			continue
		}
		err := e.exp.Export(ctx, batch)
		if rejected, partial := partialSuccess(err); err == nil || partial {
			e.settle(uint64(len(batch))-rejected, rejected, nil)
		} else {
			e.settle(0, uint64(len(batch)), err)
		}
	}
	err := e.provider.Shutdown(ctx)
	if xerr := e.exp.Shutdown(ctx); err == nil {
		err = xerr
	}
	return err
}

// permanent says whether a failed export must not be retried, by the OTLP
// specification: a gRPC status other than the retryable ones, or an HTTP
// status other than 429, 502, 503 and 504 (otlploghttp returns those as
// "failed to send logs to URL: STATUS"). Connection errors and timeouts
// are retried.
func permanent(err error) bool {
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Canceled, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
			codes.OutOfRange, codes.Unavailable, codes.DataLoss:
			return false
		}
		return true
	}
	return strings.Contains(err.Error(), "failed to send logs to ")
}

// partialRE matches the SDK's partial-success error (its type is
// internal): the collector took the batch but rejected some records.
var partialRE = regexp.MustCompile(`^OTLP partial success: .* \((\d+) logs rejected\)$`)

func partialSuccess(err error) (rejected uint64, ok bool) {
	if err == nil {
		return 0, false
	}
	m := partialRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.ParseUint(m[1], 10, 64)
	if perr != nil {
		return 0, false
	}
	return n, true
}
