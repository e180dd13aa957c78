// Package export writes alerts and logs outside the agent: JSON lines to
// stdout or a file (logPath), and syslog (RFC 5424, optionally CEF). Each
// exporter is a feeder.Sink: the feeder calls it from the exporter's own
// goroutine and queue, so a slow disk or log server never blocks the
// pipeline.
package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// JSONLines writes every alert and log as one JSON object per line, byte
// for byte what `karmor logs --json` prints for the same event: the proto
// field names, Timestamp as a number, empty fields omitted except PPID and
// UID (karmor-client.md §4.5). The generated structs carry those json tags,
// so encoding/json produces exactly karmor's bytes.
type JSONLines struct {
	path string

	mu  sync.Mutex
	out io.Writer
	f   *os.File // nil for stdout
	w   *bufio.Writer
}

// Stdout is the logPath value that means standard output.
const Stdout = "stdout"

// OpenJSONLines opens path for appending (created with mode 0640), or
// standard output when path is "stdout".
func OpenJSONLines(path string) (*JSONLines, error) {
	j := &JSONLines{path: path}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

// NewJSONLines writes to w (tests, or a caller-owned writer); Reopen is a
// no-op for it.
func NewJSONLines(w io.Writer) *JSONLines {
	return &JSONLines{out: w, w: bufio.NewWriterSize(w, 64<<10)}
}

func (j *JSONLines) open() error {
	if j.path == Stdout {
		j.out, j.f = os.Stdout, nil
	} else {
		f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("export: open %s: %w", j.path, err)
		}
		j.out, j.f = f, f
	}
	j.w = bufio.NewWriterSize(j.out, 64<<10)
	return nil
}

// WriteAlert buffers one alert line.
func (j *JSONLines) WriteAlert(a *kubearmorpb.Alert) error { return j.write(a) }

// WriteLog buffers one log line.
func (j *JSONLines) WriteLog(l *kubearmorpb.Log) error { return j.write(l) }

func (j *JSONLines) write(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("export: encode: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(line); err != nil {
		return fmt.Errorf("export: write %s: %w", j.name(), err)
	}
	return nil
}

// Flush writes buffered lines out.
func (j *JSONLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("export: write %s: %w", j.name(), err)
	}
	return nil
}

// Reopen flushes and reopens the file, for logrotate (SIGHUP): lines
// written afterwards go to a new file at the same path. Safe to call from
// any goroutine.
func (j *JSONLines) Reopen() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return j.w.Flush()
	}
	flushErr := j.w.Flush()
	closeErr := j.f.Close()
	if err := j.open(); err != nil {
		return err
	}
	if flushErr != nil {
		return fmt.Errorf("export: flush before reopen: %w", flushErr)
	}
	if closeErr != nil {
		return fmt.Errorf("export: close before reopen: %w", closeErr)
	}
	return nil
}

// Close flushes and closes the file.
func (j *JSONLines) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.w.Flush()
	if j.f != nil {
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		j.f = nil
	}
	return err
}

func (j *JSONLines) name() string {
	if j.path == "" {
		return "writer"
	}
	return j.path
}
