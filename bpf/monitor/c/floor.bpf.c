// SPDX-License-Identifier: GPL-2.0
// Empty programs for the benchmarks: the cost of merely having a program on
// a syscall tracepoint, the floor the monitor is measured against.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_openat")
int floor_enter(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_exit_openat")
int floor_exit(void *ctx) { return 0; }

SEC("tracepoint/sched/sched_process_exec")
int floor_sched(void *ctx) { return 0; }
