// Package export writes alerts and logs outside the agent: JSON lines to
// stdout or a file (logPath), and syslog (RFC 5424, optionally CEF). Each
// exporter is a feeder.Sink: the feeder calls it from the exporter's own
// goroutine and queue, so a slow disk or log server never blocks the
// pipeline.
package export

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/armorhost/kubearmor/feeder/export/jsonenc"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// JSONLines writes every alert and log as one JSON object per line, byte
// for byte what `karmor logs --json` prints for the same event: the proto
// field names, Timestamp as a number, empty fields omitted except PPID and
// UID (karmor-client.md §4.5). The generated structs carry those json tags,
// so encoding/json produces exactly karmor's bytes; package jsonenc writes
// the same bytes without reflection, straight into the line buffer.
//
// A failed write (ENOSPC, EIO, ...) loses the lines it was writing, counted,
// and puts the exporter in a failing state that Stage reports; the next
// attempt is made after a backoff, on a freshly opened file, so the exporter
// recovers on its own once space is freed. A short write is cut back to the
// last whole line, so a recovered file holds no broken line.
type JSONLines struct {
	path string
	health

	mu       sync.Mutex
	out      io.Writer
	f        *os.File // nil for stdout and caller-owned writers
	buf      []byte   // whole lines not yet written
	bufLines uint64
}

// Stdout is the logPath value that means standard output.
const Stdout = "stdout"

// bufferBytes of lines are gathered before a write.
const bufferBytes = 64 << 10

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
	return &JSONLines{out: w}
}

func (j *JSONLines) open() error {
	if j.path == Stdout {
		j.out, j.f = os.Stdout, nil
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("export: open %s: %w", j.path, err)
	}
	j.out, j.f = f, f
	return nil
}

// WriteAlert buffers one alert line.
func (j *JSONLines) WriteAlert(a *kubearmorpb.Alert) error {
	return writeLine(j, a, jsonenc.AppendAlert)
}

// WriteLog buffers one log line.
func (j *JSONLines) WriteLog(l *kubearmorpb.Log) error {
	return writeLine(j, l, jsonenc.AppendLog)
}

// writeLine encodes v with encode straight into the line buffer.
func writeLine[T any](j *JSONLines, v T, encode func([]byte, T) []byte) error {
	if !j.receive(1) {
		return nil // failing, next attempt not yet due: counted as lost
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = encode(j.buf, v)
	j.buf = append(j.buf, '\n')
	j.bufLines++
	j.setPending(j.bufLines)
	if len(j.buf) >= bufferBytes {
		return j.flushLocked()
	}
	return nil
}

// Flush writes buffered lines out.
func (j *JSONLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flushLocked()
}

func (j *JSONLines) flushLocked() error {
	if len(j.buf) == 0 {
		return nil
	}
	lines := j.bufLines
	defer func() {
		j.buf, j.bufLines = j.buf[:0], 0
		j.setPending(0)
	}()
	if !j.due() {
		j.drop(lines)
		return nil
	}
	if j.failing() && j.path != Stdout && j.path != "" {
		// Retrying after a failure: a new file descriptor, and a new file
		// if the old one was removed.
		if j.f != nil {
			j.f.Close()
			j.f, j.out = nil, nil
		}
		if err := j.open(); err != nil {
			j.failed(lines, err)
			return err
		}
	}
	if j.out == nil {
		err := fmt.Errorf("export: %s is not open", j.name())
		j.failed(lines, err)
		return err
	}
	var before int64 = -1
	if j.f != nil {
		if fi, err := j.f.Stat(); err == nil && fi.Mode().IsRegular() {
			before = fi.Size()
		}
	}
	n, err := j.out.Write(j.buf)
	if err == nil {
		j.wrote(lines)
		return nil
	}
	// Keep the whole lines that made it; cut a partial one off so that the
	// file holds no broken JSON once writes succeed again.
	whole := bytes.LastIndexByte(j.buf[:n], '\n') + 1
	if whole < n && before >= 0 {
		j.f.Truncate(before + int64(whole))
	}
	done := uint64(bytes.Count(j.buf[:whole], []byte{'\n'}))
	if done > 0 {
		j.wrote(done)
	}
	if j.f != nil {
		err = fmt.Errorf("export: %w", err) // an *os.PathError names the file
	} else {
		err = fmt.Errorf("export: write %s: %w", j.name(), err)
	}
	j.failed(lines-done, err)
	return err
}

// Reopen flushes and reopens the file, for logrotate (SIGHUP): lines
// written afterwards go to a new file at the same path. Safe to call from
// any goroutine.
func (j *JSONLines) Reopen() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	flushErr := j.flushLocked()
	if j.f == nil {
		if j.path == "" || j.path == Stdout {
			return flushErr
		}
	} else if err := j.f.Close(); err != nil && flushErr == nil {
		flushErr = fmt.Errorf("export: close before reopen: %w", err)
	}
	j.f, j.out = nil, nil
	if err := j.open(); err != nil {
		return err
	}
	if flushErr != nil {
		return fmt.Errorf("export: flush before reopen: %w", flushErr)
	}
	return nil
}

// Close flushes and closes the file.
func (j *JSONLines) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.flushLocked()
	if j.f != nil {
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		j.f, j.out = nil, nil
	}
	return err
}

func (j *JSONLines) name() string {
	if j.path == "" {
		return "writer"
	}
	return j.path
}
