package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/proctable"
	"google.golang.org/protobuf/proto"
)

// A HostLog carries exactly the fields the alerts of the same event start
// from (base), with Type HostLog: log builds them without building an
// alert first, and the two must not drift apart.
func TestLogIsAlertBase(t *testing.T) {
	p := &pipeline{}
	at := &proctable.Attribution{HostPID: 7, HostPPID: 1, PID: 7, PPID: 1, UID: 1000, ProcessName: "/usr/bin/c\xffat",
		ParentProcessName: "/bin/bash", Source: "/usr/bin/cat", Cwd: "/home/u", TTY: "pts0"}
	for _, ev := range []*event.Event{
		{Time: time.Date(2026, 12, 4, 1, 2, 3, 456_789_123, time.UTC), Operation: event.OpFile, Resource: "/etc/\xffx",
			Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", Retval: 3, Comm: "cat"},
		{Time: time.Unix(1, 0), Operation: event.OpSyscall, Data: "syscall=SYS_SETUID userid=0", Retval: -1, Comm: "a\xffb"},
		{Operation: event.OpNetwork, Resource: "remoteip=10.0.0.1 port=443 protocol=TCP", Retval: -111},
	} {
		a := p.base(ev, at)
		want := &kubearmorpb.Log{Timestamp: a.Timestamp, UpdatedTime: a.UpdatedTime, HostPPID: a.HostPPID, HostPID: a.HostPID,
			PPID: a.PPID, PID: a.PID, UID: a.UID, ParentProcessName: a.ParentProcessName, ProcessName: a.ProcessName,
			Type: typeHostLog, Source: a.Source, Operation: a.Operation, Resource: a.Resource, Data: a.Data,
			Result: a.Result, Cwd: a.Cwd, TTY: a.TTY, ExecEvent: a.ExecEvent}
		if got := p.log(ev, at); !proto.Equal(got, want) {
			t.Errorf("%s event: log\n%v\nwant\n%v", ev.Operation, got, want)
		}
		if a.UpdatedTime != ev.Time.UTC().Format(timeLayout) || a.Timestamp != ev.Time.Unix() {
			t.Errorf("%s event: alert time %d %q, want %d %q", ev.Operation, a.Timestamp, a.UpdatedTime, ev.Time.Unix(), ev.Time.UTC().Format(timeLayout))
		}
	}
}

// logSink collects what a feeder sink receives.
type logSink struct {
	mu   sync.Mutex
	logs []*kubearmorpb.Log
}

func (s *logSink) WriteAlert(*kubearmorpb.Alert) error { return nil }
func (s *logSink) WriteLog(l *kubearmorpb.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, l)
	return nil
}
func (s *logSink) Flush() error { return nil }

func (s *logSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logs)
}

// With nobody watching logs the pipeline builds none but the feeder still
// counts every one as published; once a sink subscribes it receives each
// log, the same as the pipeline builds it.
func TestLogsCountedWhileUnwatched(t *testing.T) {
	srv, err := feeder.New(feeder.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(context.Background(), proctable.New(proctable.Options{}), srv, "", visibility{true, true, true, true})
	ev := event.Event{Time: time.Unix(1700000000, 123456789), HostPID: 42, Operation: event.OpFile, Syscall: "SYS_OPENAT",
		Resource: "/etc/hostname", Path: "/etc/hostname", Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", Retval: 3, Comm: "cat"}
	for range 3 {
		p.handleInline(ev)
	}
	if got := srv.FeederStatus().LogsPublished; got != 3 {
		t.Fatalf("logs published with no subscriber = %d, want 3", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &logSink{}
	subscribed := make(chan struct{})
	go srv.RunSink(ctx, "test", sink, feeder.SinkOptions{Logs: true, Subscribed: func() { close(subscribed) }})
	<-subscribed
	p.handleInline(ev)
	for deadline := time.Now().Add(5 * time.Second); sink.len() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sink never received the log")
		}
	}
	if got := srv.FeederStatus().LogsPublished; got != 4 {
		t.Errorf("logs published = %d, want 4", got)
	}
	at := p.procs.Describe(&ev)
	want := p.log(&ev, &at)
	want.HostName = "h"
	if got := sink.logs[0]; !proto.Equal(got, want) {
		t.Errorf("sink got\n%v\nwant\n%v", got, want)
	}
}

// An event that the monitor attributed (Exe and ParentExe set) is matched
// without asking the process table again; the table is asked when an
// alert or a log is built, and what is built is what an attribution made
// up front gives.
func TestAttributionOnlyForOutput(t *testing.T) {
	ev := event.Event{Time: time.Unix(1700000000, 0), HostPID: 4242, HostPPID: 4241, Operation: event.OpFile, Syscall: "SYS_OPENAT",
		Exe: "/usr/bin/cat", ParentExe: "/bin/bash", Cwd: "/root", Resource: "/etc/shadow", Path: "/etc/shadow",
		File: event.File{Op: event.FileOpen}, Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", Retval: 3, Comm: "cat"}
	for _, tt := range []struct {
		name         string
		ev           event.Event
		spec         string
		watched      bool
		wantLookups  bool
		alerts, logs int
	}{
		{name: "no output", ev: ev, spec: "  file:\n    matchPaths:\n    - path: /srv/x\n"},
		{name: "an alert", ev: ev, spec: "  action: Audit\n  file:\n    matchPaths:\n    - path: /etc/shadow\n", wantLookups: true, alerts: 1},
		{name: "a log", ev: ev, watched: true, wantLookups: true, logs: 1},
		{name: "no parent set: asked up front", ev: func() event.Event { e := ev; e.ParentExe = ""; return e }(), wantLookups: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := feeder.New(feeder.Options{Host: "h"})
			if err != nil {
				t.Fatal(err)
			}
			tab := proctable.New(proctable.Options{}) // knows no process: every lookup is a miss
			p := newPipeline(context.Background(), tab, srv, "", visibility{true, true, true, true})
			if tt.spec != "" {
				p.setRules(ruleSet(t, tt.spec, hostpolicy.Postures{}), nil)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sink := &logSink{}
			if tt.watched {
				subscribed := make(chan struct{})
				go srv.RunSink(ctx, "test", sink, feeder.SinkOptions{Logs: true, Subscribed: func() { close(subscribed) }})
				<-subscribed
			}
			p.handleInline(tt.ev)
			if looked := tab.Stats().Misses > 0; looked != tt.wantLookups {
				t.Errorf("process table asked: %v, want %v", looked, tt.wantLookups)
			}
			st := srv.FeederStatus()
			if int(st.AlertsPublished) != tt.alerts || int(st.LogsPublished) != max(tt.logs, 1) {
				t.Errorf("alerts %d logs %d, want %d %d", st.AlertsPublished, st.LogsPublished, tt.alerts, max(tt.logs, 1))
			}
			if tt.logs > 0 {
				for deadline := time.Now().Add(5 * time.Second); sink.len() < 1; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the sink never received the log")
					}
				}
				at := tab.Describe(&tt.ev)
				want := p.log(&tt.ev, &at)
				want.HostName = "h"
				if got := sink.logs[0]; !proto.Equal(got, want) {
					t.Errorf("sink got\n%v\nwant\n%v", got, want)
				}
			}
		})
	}
}
