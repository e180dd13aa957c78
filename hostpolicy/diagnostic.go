package hostpolicy

import (
	"errors"
	"fmt"
	"strings"
)

// Origin says where a policy came from, with the line of every field the
// decoder saw, so later stages can point at the exact line of a bad value.
type Origin struct {
	File  string // file name as given to Decode ("" for gRPC payloads)
	Line  int    // line of the document's first key
	lines map[string]int
}

// LineOf returns the line of a field path such as "spec.process.matchPaths[0].path",
// falling back to the closest recorded parent, then to the document's line.
func (o Origin) LineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := o.lines[p]; ok {
			return l
		}
	}
	return o.Line
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// Diagnostic is one finding about a policy: an error that rejects it, or a
// warning about input that was accepted and normalized.
type Diagnostic struct {
	File    string
	Line    int
	Path    string // field path, e.g. spec.file.matchDirectories[1].dir
	Msg     string
	Warning bool
}

// String renders "file:line: path: message", the format of every policy error.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		b.WriteByte(':')
		if d.Line > 0 {
			fmt.Fprintf(&b, "%d:", d.Line)
		}
		b.WriteByte(' ')
	} else if d.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", d.Line)
	}
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Diagnostics is a list of findings in the order they were found.
type Diagnostics []Diagnostic

// HasErrors reports whether any finding is an error rather than a warning.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if !d.Warning {
			return true
		}
	}
	return false
}

// Warnings returns only the warnings.
func (ds Diagnostics) Warnings() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Warning {
			out = append(out, d)
		}
	}
	return out
}

// Err returns nil when there are no errors, else an error listing every error line.
func (ds Diagnostics) Err() error {
	var lines []string
	for _, d := range ds {
		if !d.Warning {
			lines = append(lines, d.String())
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New(strings.Join(lines, "\n"))
}

// diagSink collects diagnostics for one policy document.
type diagSink struct {
	origin *Origin
	out    Diagnostics
}

func (s *diagSink) errorf(path, format string, args ...any) {
	s.add(path, false, format, args...)
}

func (s *diagSink) warnf(path, format string, args ...any) {
	s.add(path, true, format, args...)
}

func (s *diagSink) add(path string, warning bool, format string, args ...any) {
	s.out = append(s.out, Diagnostic{
		File:    s.origin.File,
		Line:    s.origin.LineOf(path),
		Path:    path,
		Msg:     fmt.Sprintf(format, args...),
		Warning: warning,
	})
}

func itoa(i int) string { return fmt.Sprint(i) }
