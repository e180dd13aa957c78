package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSupervisor(t *testing.T) {
	boom := errors.New("read ring buffer: bad file descriptor")
	for _, c := range []struct {
		name      string
		essential bool
		part      func(ctx context.Context) error
		cancel    bool   // the daemon's context ends before the part returns
		stop      bool   // the daemon says it is stopping before the part returns
		want      string // "" means no failure
	}{
		{"essential part fails", true, func(context.Context) error { return boom }, false, false, "monitor: read ring buffer: bad file descriptor"},
		{"essential part ends quietly", true, func(context.Context) error { return nil }, false, false, "monitor: stopped unexpectedly"},
		{"essential part ends with the daemon", true, func(ctx context.Context) error { <-ctx.Done(); return boom }, true, false, ""},
		{"essential part closed on the way out", true, func(context.Context) error { return nil }, false, true, ""},
		{"optional part fails", false, func(context.Context) error { return boom }, false, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logged strings.Builder
			log := slog.New(slog.NewTextHandler(&logged, nil))
			s := newSupervisor(ctx, func() *slog.Logger { return log })
			if c.stop {
				s.stop()
			}
			if c.essential {
				s.essential("monitor", c.part)
			} else {
				s.optional("monitor", c.part)
			}
			if c.cancel {
				cancel()
			}
			done := make(chan struct{})
			go func() { s.wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("part did not return")
			}
			var got string
			select {
			case err := <-s.Failed():
				got = err.Error()
			default:
			}
			if got != c.want {
				t.Fatalf("failure %q, want %q", got, c.want)
			}
			if c.want != "" && !strings.Contains(logged.String(), "level=ERROR") {
				t.Errorf("no ERROR log line: %s", logged.String())
			}
		})
	}
}

func TestRaiseFileLimit(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	low := old
	low.Cur = min(old.Max, 256)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := raiseFileLimit()
	if err != nil || got != old.Max {
		t.Fatalf("raiseFileLimit: %d, %v; want the hard limit %d", got, err, old.Max)
	}
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil || now.Cur != old.Max {
		t.Fatalf("soft limit now %d (%v), want %d", now.Cur, err, old.Max)
	}
}
