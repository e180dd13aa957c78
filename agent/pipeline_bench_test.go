package agent

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/proctable"
	"golang.org/x/sys/unix"
)

// BenchmarkPipeline is the agent's user-space cost per telemetry event
// after the monitor's decode: attribution, the monitor-only matcher (one
// Audit file rule that does not match), the HostLog of the default
// visibility and its publication to a real feeder with no subscriber and
// no exporter, as a daemon with nobody watching runs ("unwatched"), or
// with the log built and published as for a subscriber ("watched"). The
// events are what the monitor hands over for an open, a connect and a
// failed setuid.
func BenchmarkPipeline(b *testing.B) {
	b.Run("unwatched", func(b *testing.B) { benchPipeline(b, false) })
	b.Run("watched", func(b *testing.B) { benchPipeline(b, true) })
}

// watchedLogs is the feeder as it is while someone takes logs.
type watchedLogs struct{ *feeder.Server }

func (watchedLogs) LogUnwatched() bool { return false }

func benchPipeline(b *testing.B, watched bool) {
	srv, err := feeder.New(feeder.Options{Host: "testhost"})
	if err != nil {
		b.Fatal(err)
	}
	procs := proctable.New(proctable.Options{})
	for pid := uint32(1000); pid < 1100; pid++ {
		procs.Exec(proctable.Process{HostPID: pid, HostPPID: 1, Exe: "/usr/bin/app", Args: []string{"--serve"}, Cwd: "/srv"})
	}
	var out Publisher = srv
	if watched {
		out = watchedLogs{srv}
	}
	p := newPipeline(context.Background(), procs, out, "", visibility{true, true, true, true})
	p.setRules(ruleSet(b, `  file:
    matchDirectories:
    - dir: /var/secret/
      recursive: true
  action: Audit
`, hostpolicy.Postures{}), nil)
	now := time.Now()
	var stream []event.Event
	for i := 0; i < 50; i++ {
		ev := event.Event{Time: now.Add(time.Duration(i) * time.Microsecond), HostPID: uint32(1000 + i), HostPPID: 1,
			PID: uint32(1000 + i), PPID: 1, Comm: "app", CgroupID: 1, PidNS: 0xeffffffc, MntNS: 0xf0000000}
		switch i % 5 {
		case 0, 1, 2:
			path := "/srv/data/file-" + strconv.Itoa(i)
			ev.Operation, ev.Syscall, ev.Retval = event.OpFile, "SYS_OPENAT", 3
			ev.Resource, ev.Data, ev.Path = path, "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY|O_CLOEXEC", path
			ev.File = event.File{Op: event.FileOpen, Flags: unix.O_RDONLY | unix.O_CLOEXEC}
		case 3:
			ev.Operation, ev.Syscall = event.OpNetwork, "SYS_CONNECT"
			ev.Resource, ev.Data = "remoteip=10.0.0.1 port=443 protocol=TCP", "syscall=SYS_CONNECT fd=3"
			ev.Socket = event.Socket{Family: unix.AF_INET, Type: unix.SOCK_STREAM}
		case 4:
			ev.Operation, ev.Syscall, ev.Retval = event.OpSyscall, "SYS_SETUID", -1
			ev.Resource, ev.Data = "", "syscall=SYS_SETUID userid=0"
		}
		stream = append(stream, ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.handleInline(stream[i%len(stream)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
