// SPDX-License-Identifier: GPL-2.0
/* The availability probe: attach succeeding proves nothing (the kernel
 * attaches LSM programs even when bpf is not an active LSM), so this
 * program counts the file opens of one process and the Go side checks that
 * its own open was seen. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

volatile const __u32 target_tgid;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(probe_file_open, struct file *file, int ret)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return ret;
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&seen, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	return ret;
}
