package proctable

import (
	"testing"

	"github.com/armorhost/kubearmor/event"
)

func benchTable(n int) *Table {
	tab := New(Options{MaxEntries: 65536})
	tab.Exec(Process{HostPID: 1, Exe: "/sbin/init"})
	for i := 2; i < n; i++ {
		tab.Exec(Process{HostPID: uint32(i), HostPPID: 1, Exe: "/usr/bin/worker", Args: []string{"--id", "x"}, Cwd: "/srv"})
	}
	return tab
}

// The per-event cost: attribute an event to its process and parent.
func BenchmarkEnrich(b *testing.B) {
	tab := benchTable(10000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := event.Event{HostPID: uint32(2 + i%9000), HostPPID: 1}
		tab.Enrich(&ev)
	}
}

func BenchmarkDescribe(b *testing.B) {
	tab := benchTable(10000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := event.Event{HostPID: uint32(2 + i%9000), HostPPID: 1, Operation: event.OpFile}
		tab.Describe(&ev)
	}
}

func BenchmarkDescribeParallel(b *testing.B) {
	tab := benchTable(10000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ev := event.Event{HostPID: uint32(2 + i%9000), HostPPID: 1, Operation: event.OpFile}
			tab.Describe(&ev)
			i++
		}
	})
}

// A process's whole life as the monitor reports it.
func BenchmarkForkExecExit(b *testing.B) {
	tab := New(Options{MaxEntries: 65536})
	tab.Exec(Process{HostPID: 1, Exe: "/usr/bin/bash"})
	args := []string{"-la", "/tmp"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pid := uint32(2 + i%60000)
		tab.Fork(Process{HostPID: pid, HostPPID: 1})
		tab.Exec(Process{HostPID: pid, HostPPID: 1, Exe: "/usr/bin/ls", Args: args, Cwd: "/root"})
		tab.Exit(pid)
	}
}

func BenchmarkSeedFromProc(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		tab := New(Options{})
		if _, err := tab.SeedFromProc(); err != nil {
			b.Fatal(err)
		}
	}
}
