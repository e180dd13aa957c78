// SPDX-License-Identifier: GPL-2.0
// The floors the BPF-LSM enforcer is measured against (scripts/bench-bpflsm):
// programs on the enforcer's hooks that decide nothing. The empty set is
// what having any BPF-LSM program on these hooks costs; the d_path set adds
// the one thing every path-based enforcer must do on exec and open, which
// is to turn the file into a path.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define PATH_LEN 256

struct path_buf {
	char p[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} buf SEC(".maps");

SEC("lsm/bprm_check_security")
int BPF_PROG(empty_exec, struct linux_binprm *bprm, int ret) { return ret; }

SEC("lsm/bprm_committed_creds")
int BPF_PROG(empty_committed, struct linux_binprm *bprm) { return 0; }

SEC("lsm/file_open")
int BPF_PROG(empty_open, struct file *file, int ret) { return ret; }

SEC("lsm/socket_create")
int BPF_PROG(empty_socket, int family, int type, int protocol, int kern, int ret) { return ret; }

SEC("lsm/socket_connect")
int BPF_PROG(empty_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret) { return ret; }

SEC("lsm/socket_bind")
int BPF_PROG(empty_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret) { return ret; }

SEC("lsm/socket_accept")
int BPF_PROG(empty_accept, struct socket *sock, struct socket *newsock, int ret) { return ret; }

SEC("lsm/capable")
int BPF_PROG(empty_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts, int ret) { return ret; }

SEC("lsm/task_fix_setuid")
int BPF_PROG(empty_setuid, struct cred *new, const struct cred *old, int flags, int ret) { return ret; }

SEC("lsm/task_fix_setgid")
int BPF_PROG(empty_setgid, struct cred *new, const struct cred *old, int flags, int ret) { return ret; }

static __always_inline void resolve(const struct path *p)
{
	__u32 zero = 0;
	struct path_buf *b = bpf_map_lookup_elem(&buf, &zero);
	if (b)
		bpf_d_path((struct path *)p, b->p, PATH_LEN);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(dpath_exec, struct linux_binprm *bprm, int ret)
{
	if (!ret)
		resolve(&bprm->file->f_path);
	return ret;
}

SEC("lsm/file_open")
int BPF_PROG(dpath_open, struct file *file, int ret)
{
	if (!ret)
		resolve(&file->f_path);
	return ret;
}
