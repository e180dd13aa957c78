// Package otlp sends alerts and logs to an OpenTelemetry Collector (or any
// OTLP logs receiver) over gRPC or HTTP/protobuf, with the OpenTelemetry Go
// SDK's OTLP log exporters. It is a feeder.Sink: the feeder calls it from
// its own goroutine, and it never blocks that goroutine; batching, retries
// and the bounded queue are its own, and every record lost is counted in
// its Stage.
//
// The SDK's Logger and BatchProcessor are not used. The BatchProcessor drops
// silently (a log line, no count per record) and gives up on a batch after
// its retry budget; here the queue holds what arrives while the collector
// is down, each batch in flight is retried with backoff until the collector
// takes it, and a full queue gives way to alerts: a log is dropped
// (counted) to make room for an alert. The Logger copies every attribute
// and the record again on its way to a processor; here records are built
// with the SDK Record's setters, from a template the Logger made once (for
// the resource and scope), and handed in batches to the SDK's OTLP
// exporters, whose transform and transport (gRPC, HTTP) are used as they
// are.
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

	"go.opentelemetry.io/otel/attribute"
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
	opts   Options
	exps   []sdklog.Exporter // one per sender: the SDK's Export must not run concurrently with itself
	target string
	// tmpl is an empty record as the SDK's Logger makes it: resource,
	// instrumentation scope and limits, fields a Record has no setters
	// for. Every event's record starts as a copy of it.
	tmpl    sdklog.Record
	scratch sync.Pool // *attrs, the attribute list being built

	mu      sync.Mutex
	alerts  []*batch // queued, oldest first; the last one may still be filling
	logs    []*batch
	free    []*batch // sent batches, kept to be filled again
	queued  int      // records in alerts and logs
	flight  int      // records taken by senders, not yet settled
	wake    chan struct{}
	stop    chan struct{} // closed by Close
	closing bool
	wg      sync.WaitGroup // the senders

	// accounting (under mu)
	received, sent, dropped uint64
	lastErr                 error
	since                   time.Time
}

// batch is up to BatchSize records of one kind; recs[off:] are queued
// (the records before off were dropped to make room for alerts).
type batch struct {
	recs  []sdklog.Record
	off   int
	first time.Time // when its first record was queued
}

// senders is how many batches are in flight at once: while the collector
// reads one, the next is built and sent.
const senders = 2

// New builds an exporter and starts its senders. It does not connect: a
// collector that is down is retried when records are sent.
func New(o Options) (*Exporter, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.QueueLength <= 0 {
		o.QueueLength = DefaultQueueLength
	}
	e := &Exporter{opts: o, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for range senders {
		exp, target, err := newSDKExporter(o)
		if err != nil {
			for _, x := range e.exps {
				x.Shutdown(context.Background())
			}
			return nil, err
		}
		e.exps, e.target = append(e.exps, exp), target
	}
	var err error
	if e.tmpl, err = template(o); err != nil {
		return nil, err
	}
	e.scratch.New = func() any { return &attrs{kv: make([]attribute.KeyValue, 0, 40)} }
	for _, exp := range e.exps {
		e.wg.Add(1)
		go e.run(exp)
	}
	return e, nil
}

// template is an empty record from the SDK's Logger, for the resource and
// scope it carries. Records are then built with the Record's setters and
// queued here, not emitted through the Logger: its copy of every
// attribute, one AddAttributes call at a time, then the copy the processor
// must keep, were half the exporter's CPU.
func template(o Options) (sdklog.Record, error) {
	res, err := resource.Merge(resource.Empty(), resource.NewSchemaless(resourceAttrs(o)...))
	if err != nil {
		return sdklog.Record{}, fmt.Errorf("otlp: resource: %w", err)
	}
	var c capture
	p := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(&c),
		// Every field is kept: the limits apply to attribute counts and
		// lengths, and an event has a fixed, small set.
		sdklog.WithAttributeCountLimit(-1), sdklog.WithAttributeValueLengthLimit(-1),
		// Our keys are unique by construction: the SDK's deduplication
		// (a map per record) is not needed.
		sdklog.WithAllowKeyDuplication())
	p.Logger(scopeName, otellog.WithInstrumentationVersion(o.Version)).Emit(context.Background(), otellog.Record{})
	if err := p.Shutdown(context.Background()); err != nil {
		return sdklog.Record{}, fmt.Errorf("otlp: logger provider: %w", err)
	}
	if c.rec == nil {
		return sdklog.Record{}, errors.New("otlp: the SDK's logger emitted no record")
	}
	return *c.rec, nil
}

// capture is the processor of template's provider: it keeps the record.
type capture struct{ rec *sdklog.Record }

func (c *capture) OnEmit(_ context.Context, r *sdklog.Record) error {
	rec := r.Clone()
	c.rec = &rec
	return nil
}
func (c *capture) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *capture) Shutdown(context.Context) error                         { return nil }
func (c *capture) ForceFlush(context.Context) error                       { return nil }

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
	b := e.scratch.Get().(*attrs)
	rec := e.tmpl
	alertRecord(&rec, b, a)
	e.scratch.Put(b.reset())
	e.enqueue(&rec, true)
	return nil
}

// WriteLog queues a log; never blocks.
func (e *Exporter) WriteLog(l *kubearmorpb.Log) error {
	b := e.scratch.Get().(*attrs)
	rec := e.tmpl
	logRecord(&rec, b, l)
	e.scratch.Put(b.reset())
	e.enqueue(&rec, false)
	return nil
}

// Flush is a no-op: the senders batch on their own clock (a batch is sent
// when full or batchDelay after its first record).
func (e *Exporter) Flush() error { return nil }

// enqueue copies a record into the queue; a full queue gives way to
// alerts: an incoming log is dropped, an incoming alert replaces the
// oldest queued log, and an alert is dropped only when the queue holds
// alerts alone.
func (e *Exporter) enqueue(r *sdklog.Record, alert bool) {
	e.mu.Lock()
	e.received++
	switch {
	case e.closing:
		e.dropped++
		e.mu.Unlock()
		return
	case e.queued < e.opts.QueueLength:
	case alert && len(e.logs) > 0:
		e.dropOldestLog()
	default:
		e.dropped++
		e.mu.Unlock()
		return
	}
	q := &e.logs
	if alert {
		q = &e.alerts
	}
	var b *batch
	if n := len(*q); n > 0 && len((*q)[n-1].recs) < e.opts.BatchSize {
		b = (*q)[n-1]
	} else {
		b = e.newBatch()
		*q = append(*q, b)
	}
	b.recs = append(b.recs, *r)
	e.queued++
	// A sender waits for a batch to start (to time it) or to fill.
	signal := len(b.recs) == 1 || len(b.recs) == e.opts.BatchSize
	e.mu.Unlock()
	if signal {
		e.signal()
	}
}

func (e *Exporter) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// dropOldestLog drops the oldest queued log, counted (under mu).
func (e *Exporter) dropOldestLog() {
	b := e.logs[0]
	b.recs[b.off] = sdklog.Record{}
	b.off++
	e.queued--
	e.dropped++
	if b.off == len(b.recs) {
		e.logs = e.logs[1:]
		e.release(b)
	}
}

// newBatch takes a batch from the free list or makes one (under mu).
func (e *Exporter) newBatch() *batch {
	if n := len(e.free); n > 0 {
		b := e.free[n-1]
		e.free = e.free[:n-1]
		b.first = time.Now()
		return b
	}
	return &batch{recs: make([]sdklog.Record, 0, e.opts.BatchSize), first: time.Now()}
}

// release empties a batch and keeps a few for reuse (under mu): while
// events flow, a batch is sent for every one started, so a few suffice,
// and an idle exporter does not hold a full queue's worth.
func (e *Exporter) release(b *batch) {
	clear(b.recs)
	b.recs, b.off = b.recs[:0], 0
	if len(e.free) < senders+2 {
		e.free = append(e.free, b)
	}
}

// take removes the batch to send next, alerts first: a full batch, or one
// batchDelay after its first record, or any at shutdown. When none is
// ready it returns how long until one is (0: the queue is empty).
func (e *Exporter) take(now time.Time) (*batch, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var wait time.Duration
	for _, q := range []*[]*batch{&e.alerts, &e.logs} {
		if len(*q) == 0 {
			continue
		}
		b := (*q)[0]
		left := b.first.Add(batchDelay).Sub(now)
		if len(b.recs) < e.opts.BatchSize && left > 0 && !e.closing {
			if wait == 0 || left < wait {
				wait = left
			}
			continue
		}
		*q = (*q)[1:]
		n := len(b.recs) - b.off
		e.queued -= n
		e.flight += n
		return b, 0
	}
	return nil, wait
}

// run is one sender: it sends batches until Close; a failed batch is
// retried with backoff, new records queueing behind it.
func (e *Exporter) run(exp sdklog.Exporter) {
	defer e.wg.Done()
	for {
		// Once closing, Close sends what is left, within closeTimeout.
		select {
		case <-e.stop:
			return
		default:
		}
		b, wait := e.take(time.Now())
		if b != nil {
			// Another batch may be ready for the other sender.
			e.signal()
			e.send(exp, b)
			continue
		}
		var t *time.Timer
		var timer <-chan time.Time // nil, never fires, while the queue is empty
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-e.wake:
		case <-timer:
		case <-e.stop:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// send exports one batch, retrying until it is delivered, refused for good,
// or the exporter closes.
func (e *Exporter) send(exp sdklog.Exporter, b *batch) {
	wait := minBackoff
	recs := b.recs[b.off:]
	n := uint64(len(recs))
	for {
		ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
		err := exp.Export(ctx, recs)
		cancel()
		rejected, partial := partialSuccess(err)
		switch {
		case err == nil || partial:
			e.settle(b, n-rejected, rejected, nil)
			return
		case permanent(err):
			// The collector refused the batch (bad request, auth): retrying
			// the same bytes cannot succeed. Counted as lost.
			e.settle(b, 0, n, err)
			return
		}
		e.failing(err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.stop:
			// Shutting down while the collector fails: the batch is lost.
			t.Stop()
			e.settle(b, 0, n, err)
			return
		}
		wait = min(2*wait, maxBackoff)
	}
}

// settle records the outcome of a batch in flight and frees it; failure
// is nil when the collector took it.
func (e *Exporter) settle(b *batch, sent, lost uint64, failure error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent += sent
	e.dropped += lost
	e.flight -= len(b.recs) - b.off
	e.release(b)
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
		Pending: uint64(e.queued + e.flight)}
	if e.lastErr != nil {
		st.State = "failing: " + e.target + ": " + e.lastErr.Error()
		st.FailingSince = e.since
	}
	return st
}

// Close sends what is queued (for at most closeTimeout, without retries),
// counts the rest as lost, and shuts the SDK exporters down.
func (e *Exporter) Close() error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil
	}
	e.closing = true
	e.mu.Unlock()
	close(e.stop)
	e.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for {
		b, _ := e.take(time.Now())
		if b == nil {
			break
		}
		n := uint64(len(b.recs) - b.off)
		if ctx.Err() != nil {
			e.settle(b, 0, n, ctx.Err())
			continue
		}
		err := e.exps[0].Export(ctx, b.recs[b.off:])
		if rejected, partial := partialSuccess(err); err == nil || partial {
			e.settle(b, n-rejected, rejected, nil)
		} else {
			e.settle(b, 0, n, err)
		}
	}
	var err error
	for _, exp := range e.exps {
		if xerr := exp.Shutdown(ctx); err == nil {
			err = xerr
		}
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
