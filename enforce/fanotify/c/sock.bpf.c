// SPDX-License-Identifier: GPL-2.0
/* cgroup socket programs of the fanotify tier: network protocol rules for
 * kernels without BPF-LSM. Attached at the cgroup2 root, so they see every
 * task on the host and in its containers. A program returning 0 makes the
 * syscall fail with EPERM.
 *
 * Rules live in net_rules keyed by generation; the agent writes a new
 * generation, then flips `active`, then deletes the old one, so a decision
 * never sees half of an update.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "kubearmor.h"

char LICENSE[] SEC("license") = "GPL";

/* Key kinds of net_rules. */
enum key_kind { K_TYPE = 1, K_PROTO = 2, K_ANY = 3 };
/* The program that reports. */
enum hook { H_SOCK_CREATE = 1, H_CONNECT4, H_CONNECT6, H_BIND4, H_BIND6 };

struct net_key {
	__u32 gen;
	__u32 kind;
	__u32 value;
};

struct rule_val {
	__u32 id[NSLOTS];
};

struct config {
	__u32 allowlist;     /* some Allow rule exists: misses get the posture */
	__u32 posture_block; /* the network posture is block */
	__u32 agent_tgid;    /* never decided: the agent itself */
	__u32 enabled;       /* any network rule at all */
};

struct event {
	__u64 ts;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 rule;
	__u32 verdict;
	__u32 hook;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 pad;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct net_key);
	__type(value, struct rule_val);
} net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct config);
} configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

/* keep the types and enums in the object for bpf2go */
const struct event *unused_event __attribute__((unused));
struct enums {
	enum key_kind k;
	enum hook h;
	enum verdict v;
	enum slot s;
};
const struct enums *unused_enums __attribute__((unused));

static __always_inline void merge(struct rule_val *m, struct rule_val *v)
{
	if (!v)
		return;
#pragma unroll
	for (int i = 0; i < NSLOTS; i++)
		if (!m->id[i])
			m->id[i] = v->id[i];
}

static __always_inline void lookup(struct rule_val *m, __u32 gen, __u32 kind, __u32 value)
{
	struct net_key k = {.gen = gen, .kind = kind, .value = value};
	merge(m, bpf_map_lookup_elem(&net_rules, &k));
}

/* report says which verdicts a hook reports, so that a TCP connection
 * raises one alert: a socket a rule allows (Audit, audit posture) is
 * reported once, when it is made, as the monitor-only tier matches the
 * socket(2) that made it; connect and bind report only denials (a socket
 * made before the rule that now refuses it). */
enum { R_DENY = 1, R_ALLOW = 2 };

static __always_inline int decide(__u32 hook, __u32 family, __u32 type, __u32 protocol, __u32 report)
{
	if (family != AF_INET && family != AF_INET6)
		return 1;
	__u32 zero = 0;
	__u32 *gp = bpf_map_lookup_elem(&active, &zero);
	if (!gp)
		return 1;
	__u32 gen = *gp & 1;
	struct config *cfg = bpf_map_lookup_elem(&configs, &gen);
	if (!cfg || !cfg->enabled)
		return 1;
	__u64 pt = bpf_get_current_pid_tgid();
	if ((__u32)(pt >> 32) == cfg->agent_tgid)
		return 1;
	protocol = implied_protocol(type, protocol);

	struct rule_val m = {};
	lookup(&m, gen, K_TYPE, type);
	lookup(&m, gen, K_PROTO, protocol);
	lookup(&m, gen, K_ANY, 0);

	__u32 verdict = V_NONE, rule = 0;
	if (m.id[SLOT_BLOCK]) {
		verdict = V_BLOCK;
		rule = m.id[SLOT_BLOCK];
	} else if (m.id[SLOT_AUDIT]) {
		verdict = V_AUDIT;
		rule = m.id[SLOT_AUDIT];
	} else if (cfg->allowlist && !m.id[SLOT_ALLOW]) {
		verdict = cfg->posture_block ? V_POSTURE_BLOCK : V_POSTURE_AUDIT;
	}
	if (verdict == V_NONE)
		return 1;
	int deny = verdict == V_BLOCK || verdict == V_POSTURE_BLOCK;
	if (!(report & (deny ? R_DENY : R_ALLOW)))
		return deny ? 0 : 1;

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->ts = bpf_ktime_get_boot_ns();
		e->cgroup_id = bpf_get_current_cgroup_id();
		e->tgid = pt >> 32;
		e->tid = (__u32)pt;
		e->uid = (__u32)bpf_get_current_uid_gid();
		e->rule = rule;
		e->verdict = verdict;
		e->hook = hook;
		e->family = family;
		e->type = type;
		e->protocol = protocol;
		e->pad = 0;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		bpf_ringbuf_submit(e, 0);
	}
	return deny ? 0 : 1;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	return decide(H_SOCK_CREATE, sk->family, sk->type, sk->protocol, R_DENY | R_ALLOW);
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return decide(H_CONNECT4, ctx->family, ctx->type, ctx->protocol, R_DENY);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return decide(H_CONNECT6, ctx->family, ctx->type, ctx->protocol, R_DENY);
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	return decide(H_BIND4, ctx->family, ctx->type, ctx->protocol, R_DENY);
}

SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	return decide(H_BIND6, ctx->family, ctx->type, ctx->protocol, R_DENY);
}
