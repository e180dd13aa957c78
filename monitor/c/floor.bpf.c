// SPDX-License-Identifier: GPL-2.0
// Empty programs for the benchmarks: the cost of merely having a program on
// the tracepoints the monitor uses, the floor the monitor is measured against.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

// Reads nothing from its context, so it attaches to any tracepoint.
SEC("tracepoint/syscalls/sys_enter_openat")
int floor_tp(void *ctx) { return 0; }

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} floor_events SEC(".maps");

// The least a program that reports every event can do: one ring buffer
// record of the size of a bare event header, with nothing read into it.
SEC("tracepoint/syscalls/sys_enter_openat")
int floor_record(void *ctx)
{
	__u64 *r = bpf_ringbuf_reserve(&floor_events, 96, 0);
	if (r) {
		r[0] = 0;
		bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(floor_fork, struct task_struct *parent, struct task_struct *child) { return 0; }

SEC("tp_btf/sched_process_exit")
int BPF_PROG(floor_exit, struct task_struct *p) { return 0; }
