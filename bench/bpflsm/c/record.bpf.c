// SPDX-License-Identifier: GPL-2.0
// The record floor (scripts/bench-bpflsm, config r): the least a monitor
// that reports every open, connect, setuid and exec can do. One empty ring buffer
// record per event, on the hooks telemetry uses, with nothing read into it.
// Two sets: fexit programs on the syscalls, for kernels with BPF
// trampolines, and one tracepoint program for the syscall exit tracepoints
// elsewhere; the bench loads the first the kernel accepts. Exec is reported
// from sched_process_exec: its BTF tracepoint with the fexit set, as the
// monitor does, else the classic one.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

// The size of the monitor's bare event header (monitor/c/floor.bpf.c).
#define RECORD_SIZE 96

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} records SEC(".maps");

// No wakeup per record: the reader polls, as the monitor's does.
static __always_inline int record(void)
{
	__u64 *r = bpf_ringbuf_reserve(&records, RECORD_SIZE, 0);
	if (r) {
		r[0] = 0;
		bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	}
	return 0;
}

// Reads nothing from its context, so it attaches to any tracepoint.
SEC("tracepoint/syscalls/sys_exit_openat")
int record_tp(void *ctx) { return record(); }

// The socket calls' wrappers (__x64_sys_socket, ...) are in 6.1's BTF
// twice (cilium/ebpf: "multiple matching types"; likely net/socket.c's and
// the weak stub of kernel/sys_ni.c), and cilium/ebpf refuses an ambiguous
// target, so these hook the implementations the wrappers call.
// Nothing is read from the context: the trampoline is the cost.
SEC("tp_btf/sched_process_exec")
int record_exec(void *ctx) { return record(); }

SEC("fexit/__x64_sys_openat")
int record_openat(void *ctx) { return record(); }

SEC("fexit/__sys_socket")
int record_socket(void *ctx) { return record(); }

SEC("fexit/__sys_connect")
int record_connect(void *ctx) { return record(); }

SEC("fexit/__sys_accept4")
int record_accept4(void *ctx) { return record(); }

// setuid is reported under the capabilities scope (monitor/syscalls.go, as
// upstream's capabilities probes do), on the function the monitor hooks.
SEC("fexit/__sys_setuid")
int record_setuid(void *ctx) { return record(); }
