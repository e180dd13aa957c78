// Package otlptest runs a real OpenTelemetry Collector for tests: the
// collector in test/otelcol (the OTLP receiver and the file exporter, built
// from the collector's own modules in a module of its own) is built once per
// source version into a cache directory, started with a config the test
// chooses, and what it received is read back from its file exporter's OTLP
// JSON.
package otlptest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// srcDir is test/otelcol in this repository.
func srcDir(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("otlptest: cannot locate the source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "test", "otelcol")
}

// Binary builds the collector (once per content of test/otelcol and Go
// version, shared by every test process under a lock) and returns its
// path. It skips the test only when the module proxy cannot be reached to
// download the collector's modules.
func Binary(t testing.TB) string {
	t.Helper()
	src := srcDir(t)
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("otlptest: %v", err)
		}
		h.Write(data)
	}
	h.Write([]byte(runtime.Version()))
	cache := filepath.Join(os.TempDir(), "kubearmor-otelcol")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cache, "otelcol-"+hex.EncodeToString(h.Sum(nil))[:16])
	lock, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
		return cmd.CombinedOutput()
	}
	if out, err := run("mod", "download"); err != nil {
		if unreachable(out) {
			t.Skipf("otlptest: the Go module proxy is unreachable, so the OpenTelemetry Collector cannot be built:\n%s", out)
		}
		t.Fatalf("otlptest: go mod download in %s: %v\n%s", src, err, out)
	}
	start := time.Now()
	if out, err := run("build", "-o", bin+".tmp", "."); err != nil {
		t.Fatalf("otlptest: building the collector in %s: %v\n%s", src, err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("otlptest: built the collector in %s", time.Since(start).Round(time.Second))
	return bin
}

func unreachable(out []byte) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable", "TLS handshake timeout"} {
		if bytes.Contains(out, []byte(s)) {
			return true
		}
	}
	return false
}

// TLS is the receiver's TLS: its certificate and key, and ClientCA to
// require client certificates (mTLS).
type TLS struct{ CertFile, KeyFile, ClientCA string }

// Collector is a running collector.
type Collector struct {
	t          testing.TB
	bin, dir   string
	config     string
	GRPC, HTTP string // 127.0.0.1:PORT of the two receivers
	Out        string // the file exporter's output
	cmd        *exec.Cmd
	exited     chan struct{} // closed when cmd has exited
	stderr     *syncBuffer
}

// syncBuffer is the collector's output, written by exec's copier and read
// by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs a collector with the OTLP receiver on gRPC and HTTP (with tls
// when not nil) and the file exporter.
func Start(t testing.TB, tls *TLS) *Collector {
	t.Helper()
	return start(t, tls, false)
}

// StartCounting runs a collector with the OTLP receiver (plaintext) and the
// debug exporter at basic verbosity, which logs only how many records each
// request carried: the cheapest real pipeline, for benchmarks, where the
// file exporter's JSON encoding would be the collector's bottleneck.
// Counted reads the count; Records stays empty.
func StartCounting(t testing.TB) *Collector {
	t.Helper()
	return start(t, nil, true)
}

func start(t testing.TB, tls *TLS, counting bool) *Collector {
	t.Helper()
	c := &Collector{t: t, bin: Binary(t), dir: t.TempDir(), GRPC: FreePort(t), HTTP: FreePort(t)}
	c.Out = filepath.Join(c.dir, "logs.jsonl")
	tlsConf := ""
	if tls != nil {
		tlsConf = "\n        tls:\n          cert_file: " + tls.CertFile + "\n          key_file: " + tls.KeyFile
		if tls.ClientCA != "" {
			tlsConf += "\n          client_ca_file: " + tls.ClientCA
		}
	}
	exporter, logLevel := "file", "warn"
	if counting {
		// The debug exporter's counts are logged at info.
		exporter, logLevel = "debug", "info"
	}
	cfg := `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ` + c.GRPC + tlsConf + `
      http:
        endpoint: ` + c.HTTP + tlsConf + `
exporters:
  file:
    path: ` + c.Out + `
    append: true
    flush_interval: 100ms
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: ` + logLevel + `
      # every count line, not a sample of them
      sampling:
        enabled: false
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [` + exporter + `]
`
	c.config = filepath.Join(c.dir, "config.yaml")
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart()
	t.Cleanup(c.Stop)
	return c
}

// Restart starts the collector (again) and waits until both receivers
// accept connections.
func (c *Collector) Restart() {
	c.t.Helper()
	c.stderr = &syncBuffer{}
	c.cmd = exec.Command(c.bin, "--config", c.config)
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("otlptest: start the collector: %v", err)
	}
	exited := make(chan struct{})
	c.exited = exited
	cmd := c.cmd
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{c.GRPC, c.HTTP} {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				c.t.Fatalf("otlptest: the collector exited: %s", c.stderr)
			default:
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("otlptest: the collector does not listen on %s after 30s: %s", addr, c.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Stop stops the collector (SIGTERM: it flushes its file), if running.
func (c *Collector) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

// countRE matches the debug exporter's line for one request.
var countRE = regexp.MustCompile(`"log records": (\d+)`)

// Counted is how many records a StartCounting collector has received.
func (c *Collector) Counted() int {
	n := 0
	for _, m := range countRE.FindAllStringSubmatch(c.Stderr(), -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// CPU is the CPU time (user and system) the running collector has used.
func (c *Collector) CPU() time.Duration {
	c.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		c.t.Fatal(err)
	}
	// utime and stime are fields 14 and 15, counted after the
	// parenthesized command name (which may hold spaces).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// Stderr is what the collector printed.
func (c *Collector) Stderr() string { return c.stderr.String() }

// FreePort returns a free 127.0.0.1:PORT.
func FreePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Record is one log record as the collector wrote it, with its resource.
type Record struct {
	Resource       map[string]any
	Scope          string
	Time           time.Time
	SeverityNumber int
	SeverityText   string
	EventName      string
	Body           string
	Attributes     map[string]any
}

// Records reads every record the collector has written so far.
func (c *Collector) Records() []Record {
	c.t.Helper()
	f, err := os.Open(c.Out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var req otlpJSON
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			continue // a line being written
		}
		for _, rl := range req.ResourceLogs {
			res := kvs(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					ns, _ := strconv.ParseInt(lr.TimeUnixNano, 10, 64)
					out = append(out, Record{Resource: res, Scope: sl.Scope.Name, Time: time.Unix(0, ns), SeverityNumber: lr.SeverityNumber,
						SeverityText: lr.SeverityText, EventName: lr.EventName, Body: fmt.Sprint(value(lr.Body)), Attributes: kvs(lr.Attributes)})
				}
			}
		}
	}
	return out
}

// Wait waits until done(records) or the timeout.
func (c *Collector) Wait(timeout time.Duration, done func([]Record) bool) []Record {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := c.Records()
		if done(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("otlptest: after %s the collector holds %d records, not what the test waits for; collector: %s", timeout, len(recs), c.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type otlpJSON struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []kv `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			Scope struct {
				Name string `json:"name"`
			} `json:"scope"`
			LogRecords []struct {
				TimeUnixNano   string   `json:"timeUnixNano"`
				SeverityNumber int      `json:"severityNumber"`
				SeverityText   string   `json:"severityText"`
				EventName      string   `json:"eventName"`
				Body           anyValue `json:"body"`
				Attributes     []kv     `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type kv struct {
	Key   string   `json:"key"`
	Value anyValue `json:"value"`
}

type anyValue struct {
	StringValue *string  `json:"stringValue"`
	IntValue    *string  `json:"intValue"` // OTLP JSON encodes int64 as a string
	BoolValue   *bool    `json:"boolValue"`
	DoubleValue *float64 `json:"doubleValue"`
	ArrayValue  *struct {
		Values []anyValue `json:"values"`
	} `json:"arrayValue"`
}

// value is a string, an int64, a bool, a float64 or a []any.
func value(v anyValue) any {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		n, _ := strconv.ParseInt(*v.IntValue, 10, 64)
		return n
	case v.BoolValue != nil:
		return *v.BoolValue
	case v.DoubleValue != nil:
		return *v.DoubleValue
	case v.ArrayValue != nil:
		var out []any
		for _, e := range v.ArrayValue.Values {
			out = append(out, value(e))
		}
		return out
	}
	return nil
}

func kvs(list []kv) map[string]any {
	m := make(map[string]any, len(list))
	for _, a := range list {
		m[a.Key] = value(a.Value)
	}
	return m
}

// Certs are a CA and certificates it signed, as PEM files.
type Certs struct {
	CA                    string
	ServerCert, ServerKey string // for 127.0.0.1 and localhost
	ClientCert, ClientKey string
}
