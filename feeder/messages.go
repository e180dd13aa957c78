package feeder

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// LogHandler returns a slog handler that passes every record to next and
// also publishes records at minLevel or above as WatchMessages messages,
// so the agent's own log lines reach karmor's --msgPath.
func (s *Server) LogHandler(next slog.Handler, minLevel slog.Level) slog.Handler {
	return &messageHandler{next: next, s: s, min: minLevel}
}

type messageHandler struct {
	next   slog.Handler
	s      *Server
	min    slog.Level
	prefix string // rendered attrs from WithAttrs, with group names applied
	group  string
}

func (h *messageHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min || h.next.Enabled(ctx, l)
}

func (h *messageHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if r.Level >= h.min {
		var b strings.Builder
		b.WriteString(r.Message)
		b.WriteString(h.prefix)
		r.Attrs(func(a slog.Attr) bool {
			writeAttr(&b, h.group, a)
			return true
		})
		h.s.PublishMessage(levelName(r.Level), b.String())
	}
	return err
}

func (h *messageHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, h.group, a)
	}
	return &messageHandler{next: h.next.WithAttrs(attrs), s: h.s, min: h.min, prefix: b.String(), group: h.group}
}

func (h *messageHandler) WithGroup(name string) slog.Handler {
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &messageHandler{next: h.next.WithGroup(name), s: h.s, min: h.min, prefix: h.prefix, group: g}
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := a.Key
	if group != "" {
		key = group + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, ga := range a.Value.Group() {
			writeAttr(b, key, ga)
		}
		return
	}
	fmt.Fprintf(b, " %s=%v", key, a.Value.Any())
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return LevelError
	case l >= slog.LevelWarn:
		return LevelWarn
	case l >= slog.LevelInfo:
		return LevelInfo
	}
	return LevelDebug
}
