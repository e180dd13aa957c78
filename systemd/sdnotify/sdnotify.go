// Package sdnotify tells systemd what the agent is doing: ready, reloading,
// stopping, a one-line status, and watchdog pings.
//
// Every function is a no-op that returns nil when NOTIFY_SOCKET is unset, so
// the agent behaves the same in the foreground (`make run`) as under systemd.
package sdnotify

import (
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Enabled reports whether systemd asked for notifications (NOTIFY_SOCKET is
// set). Callers never need to check it; it is for logging only.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Ready tells systemd that startup, or a reload, is complete. For
// Type=notify this is what makes `systemctl start` return, so send it only
// once policies are enforced.
func Ready() error { return send(daemon.SdNotifyReady) }

// Reloading tells systemd a reload began. Send Ready when it is done.
// MONOTONIC_USEC is included because systemd 253+ requires it for
// Type=notify-reload and older versions ignore it.
func Reloading() error {
	return send(daemon.SdNotifyReloading + "\n" + monotonicUsec())
}

// Stopping tells systemd that shutdown began, so a slow teardown of BPF
// programs is not mistaken for a hang.
func Stopping() error { return send(daemon.SdNotifyStopping) }

// Status sets the free-form line `systemctl status` shows. The protocol is
// newline-separated KEY=VALUE pairs, so line breaks are flattened: a stray
// newline in a message must not smuggle in another assignment.
func Status(line string) error {
	line = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, line)
	return send("STATUS=" + line)
}

func send(state string) error {
	// unsetEnvironment=false: the agent notifies many times over its life.
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func monotonicUsec() string {
	var ts unix.Timespec
	// CLOCK_MONOTONIC cannot fail on Linux; on error the zero value is sent
	// and systemd merely logs that the timestamp is stale.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Sec*1_000_000+ts.Nsec/1_000)
}
