// SPDX-License-Identifier: GPL-2.0
// System monitor: process lifecycle and selected syscalls, reported through
// one ring buffer. Process lifecycle comes from tp_btf tracepoints.
//
// A syscall event is built when the syscall returns, which knows the return
// value: the arguments come from the user registers saved at entry, and the
// program reads what it needs (paths, socket addresses) and emits one record.
// Thin programs feed the same per-kind bodies (file_exit, net_exit,
// send_exit, cred_exit, exec_exit):
//
//   - fexit on the inner functions every entry of a network or credential
//     syscall calls (__sys_connect, __sys_setuid, ...: 64-bit, 32-bit,
//     16-bit ids, socketcall), their arguments being the syscall's;
//   - fexit on the other syscalls' wrappers (__x64_sys_openat, and the
//     32-bit entry points __ia32_sys_* / __ia32_compat_sys_*), which read
//     the saved user registers; kretprobes instead on a wrapper the
//     kernel's BTF names twice. Only the traced syscalls pay. User space
//     loads one copy per function and tells it, by the attach cookie, which
//     syscall it is and where its arguments are;
//   - classic syscall exit tracepoints, for kernels that refuse trampolines.
//     Any syscall tracepoint puts every syscall of every task on the
//     kernel's tracing path, and they do not see 32-bit syscalls at all.
//
// User space attaches only the programs of the visible scopes, so an
// invisible scope costs nothing.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "dentry.h"

char LICENSE[] SEC("license") = "GPL";

// Record kinds, scopes, flags and limits: decode.go and syscalls.go use
// the Go constants bpf2go generates from these enums (gen.go).
enum record_kind {
	REC_SYSCALL = 1, // a traced syscall returned
	REC_EXEC = 2,    // sched_process_exec: a new program image runs
	REC_FORK = 3,    // a new process (not a thread) was created
	REC_EXIT = 4,    // the last thread of a process exited
};

// Scope bits (monitor.Scope).
enum scope {
	SCOPE_PROCESS = 1,
	SCOPE_FILE = 2,
	SCOPE_NETWORK = 4,
	SCOPE_CAPABILITIES = 8,
};

// Record flags.
enum record_flag {
	FLAG_TRUNCATED = 1, // some variable data did not fit
	FLAG_NO_STASH = 2,  // exec record without the execve arguments
	// A relative path was resolved in the kernel, while the syscall's view
	// of the file system still held (a later chdir cannot change it): the
	// field after the path is either the opened file's own path
	// (PATH_FILE) or the directory the path is relative to, the dfd's or
	// the working directory (PATH_BASE). Both are dentry walks, leaf
	// first, like put_path writes them.
	FLAG_PATH_FILE = 4,
	FLAG_PATH_BASE = 8,
};

#define AT_FDCWD_ -100

enum limit {
	ARGS_MAX = 1024, // exec argv bytes
};

#define DATA_MAX 4096	 // variable bytes a record may carry
#define DATA_SCRATCH 8192 // room for a DATA_MAX-masked offset plus one field
#define STR_MAX 1024	 // one user string (path, mount source, ...)
#define NAME_MAX_ 256	 // one path component incl. NUL
#define SOCKADDR_MAX 128 // sizeof(struct sockaddr_storage)
#define PATH_DEPTH 40	 // dentry walk iterations (components + mount crossings)
#define EXEC_ARGV_MAX 20 // argv entries read for a failed execve

// x86-64 syscall numbers the exit programs dispatch on.
#define NR_open 2
#define NR_sendto 44
#define NR_sendmsg 46
#define NR_truncate 76
#define NR_rename 82
#define NR_mkdir 83
#define NR_link 86
#define NR_symlink 88
#define NR_chmod 90
#define NR_mknod 133
#define NR_mkdirat 258
#define NR_mknodat 259
#define NR_renameat 264
#define NR_linkat 265
#define NR_symlinkat 266
#define NR_fchmodat 268
#define NR_renameat2 316
#define NR_sendmmsg 307
#define NR_fchmodat2 452
#define NR_socket 41
#define NR_connect 42
#define NR_accept 43
#define NR_bind 49
#define NR_listen 50
#define NR_execve 59
#define NR_rmdir 84
#define NR_unlink 87
#define NR_chown 92
#define NR_mount 165
#define NR_umount2 166
#define NR_openat 257
#define NR_fchownat 260
#define NR_unlinkat 263
#define NR_accept4 288
#define NR_execveat 322
#define NR_openat2 437

struct record {
	u64 ts; // CLOCK_BOOTTIME ns
	u64 cgroup_id;
	s64 retval;
	u64 args[6];
	u32 kind;
	u32 nr;
	u32 host_pid; // tgid in the initial pid namespace
	u32 host_ppid;
	u32 pid; // tgid in the task's own pid namespace
	u32 ppid;
	u32 uid;
	u32 pid_ns;
	u32 mnt_ns;
	u32 aux;
	u16 data_len;
	u16 flags;
	char comm[16];
	u8 data[DATA_SCRATCH];
};

// Puts the enums into BTF so bpf2go generates their Go constants.
struct enums {
	enum record_kind k;
	enum scope s;
	enum record_flag f;
	enum limit l;
};
const struct enums *unused_enums __attribute__((unused));

// Set by user space before load.
volatile const u32 self_tgid = 0;      // the agent's own host tgid: never reported
volatile const u32 report_success = 0; // scopes whose successful syscalls are reported (others: failures only)
// Waking the reader for every record costs an interrupt per event (in a VM,
// an exit to the hypervisor). Records are written without a wakeup and the
// reader polls while events flow; the first record into an empty buffer
// wakes a reader that went to sleep for lack of events, and a filling
// buffer wakes it early.
volatile const u64 wakeup_bytes = 1 << 20;

// Events are stamped with CLOCK_BOOTTIME: nanosecond resolution, monotonic
// on each CPU (so events of one CPU keep their order), and it keeps counting
// through suspend, so one offset taken in user space maps it to wall time.
// (Jiffies, used before to spare the clock read under kvm-clock, gave every
// event of a 4 ms tick the same time.)
static __always_inline u64 now_ns(void)
{
	return bpf_ktime_get_boot_ns();
}

struct stash {
	u64 args[6];
	u32 nr;
	u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); // resized by user space
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u64); // pid_tgid
	__type(value, struct stash);
} stashes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct record);
} scratch SEC(".maps");

// Counters; indices mirrored in monitor.go.
#define CNT_RINGBUF_FULL 0
#define CNT_STASH_FULL 1
#define CNT_MAX 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline void count(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

// stashed counts the stashes written less those deleted, so that the
// programs on every exec and exit look in the map only when it may hold
// one: a hash lookup or delete that finds nothing still hashes the key and
// (delete) takes the bucket's lock. On the fexit path only execveat
// stashes. It may count high (a stash replaced), which costs a lookup,
// never low: a thread's own increment precedes its own lookup.
volatile u64 stashed = 0;

static __always_inline void put_stash(u64 id, struct stash *s)
{
	if (bpf_map_update_elem(&stashes, &id, s, BPF_ANY) < 0)
		count(CNT_STASH_FULL);
	else
		__sync_fetch_and_add(&stashed, 1);
}

static __always_inline void drop_stash(u64 id)
{
	if (stashed && bpf_map_delete_elem(&stashes, &id) == 0)
		__sync_fetch_and_sub(&stashed, 1);
}

static __always_inline struct record *scratch_record(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

// fill_task writes the identity of task t (a BTF pointer) into the record
// header. Direct BTF loads cost far less than one probe-read helper call
// each; only a task in a nested pid namespace needs the variable-index
// reads of its namespace pids.
static __always_inline void fill_task(struct record *r, struct task_struct *t)
{
	struct task_struct *parent = t->real_parent;
	r->host_pid = t->tgid;
	r->host_ppid = parent->tgid;

	struct pid *tp = t->group_leader->thread_pid;
	unsigned int level = tp->level;
	if (level == 0) {
		r->pid = tp->numbers[0].nr;
		r->pid_ns = tp->numbers[0].ns->ns.inum;
		r->ppid = r->host_ppid;
	} else {
		struct upid up = {};
		bpf_probe_read_kernel(&up, sizeof(up), &tp->numbers[level & 31]);
		r->pid = up.nr;
		r->pid_ns = BPF_CORE_READ(up.ns, ns.inum);
		r->ppid = 0;
		struct pid *pp = parent->group_leader->thread_pid;
		if (pp->level >= level) {
			struct upid pup = {};
			bpf_probe_read_kernel(&pup, sizeof(pup), &pp->numbers[level & 31]);
			r->ppid = pup.nr;
		}
	}
	struct nsproxy *nsp = t->nsproxy;
	r->mnt_ns = nsp ? nsp->mnt_ns->ns.inum : 0;
	r->flags = 0;
	r->data_len = 0;
	r->aux = 0;
}

// fill_current starts a record about the current task. Its cgroup, uid and
// comm are the values bpf_get_current_cgroup_id, bpf_get_current_uid_gid
// and bpf_get_current_comm return, read with direct BTF loads instead: the
// three helper calls cost more than the rest of the header together on
// every reported syscall. The comm is copied as two words; the kernel
// pads it with NULs past its end (__set_task_comm), as the helper does.
static __always_inline void fill_current(struct record *r, u32 kind)
{
	struct task_struct *t = bpf_get_current_task_btf();
	r->ts = now_ns();
	r->kind = kind;
	r->cgroup_id = 0;
	struct css_set *cs = t->cgroups;
	if (cs) {
		struct cgroup *cg = cs->dfl_cgrp;
		if (cg) {
			struct kernfs_node *kn = cg->kn;
			if (kn)
				r->cgroup_id = kn->id;
		}
	}
	const struct cred *cred = t->cred;
	r->uid = cred ? cred->uid.val : 0;
	u64 *comm = (u64 *)t->comm;
	*(u64 *)&r->comm[0] = comm[0];
	*(u64 *)&r->comm[8] = comm[1];
	fill_task(r, t);
}

// fill_bare starts a fork or exit record. Those feed only the process
// table, which takes a fork's ids and uid and an exit's pid (decode.go),
// so the comm and cgroup, which cost more than the rest of the header,
// are left empty.
static __always_inline void fill_bare(struct record *r, u32 kind)
{
	r->ts = now_ns();
	r->kind = kind;
	r->nr = 0;
	r->retval = 0;
	r->cgroup_id = 0;
	r->uid = 0;
	__builtin_memset(r->args, 0, sizeof(r->args));
	__builtin_memset(r->comm, 0, sizeof(r->comm));
}

// Variable data is a sequence of fields: u16 length, then that many bytes.
// Every writer checks the room first and masks the offset so the verifier
// can prove the write stays inside data[]; a field that does not fit is
// written empty and the record flagged truncated.

static __always_inline u32 put_empty(struct record *r, u32 off)
{
	if (off > DATA_MAX - 2) {
		r->flags |= FLAG_TRUNCATED;
		return off;
	}
	*(u16 *)&r->data[off & (DATA_MAX - 1)] = 0;
	return off + 2;
}

static __always_inline u32 put_str(struct record *r, u32 off, const void *src, bool user)
{
	if (off > DATA_MAX - STR_MAX - 2)
		return put_empty(r, off);
	u32 o = off & (DATA_MAX - 1);
	long n = user ? bpf_probe_read_user_str(&r->data[o + 2], STR_MAX, src)
		      : bpf_probe_read_kernel_str(&r->data[o + 2], STR_MAX, src);
	if (n < 0)
		n = 0;
	if (n > 0)
		n--; // drop the NUL
	*(u16 *)&r->data[o] = (u16)n;
	return off + 2 + (u32)n;
}

static __always_inline u32 put_user_bytes(struct record *r, u32 off, const void *src, u32 len, u32 max)
{
	if (off > DATA_MAX - max - 2)
		return put_empty(r, off);
	if (len > max) {
		len = max;
		r->flags |= FLAG_TRUNCATED;
	}
	u32 o = off & (DATA_MAX - 1);
	// len <= max <= ARGS_MAX already; the barrier and mask are for the
	// verifier, which may otherwise see a copy of len the clamp did not bound.
	barrier_var(len);
	len &= 2 * ARGS_MAX - 1;
	if (bpf_probe_read_user(&r->data[o + 2], len, src) < 0)
		len = 0;
	*(u16 *)&r->data[o] = (u16)len;
	return off + 2 + len;
}

// put_path walks a struct path up to the root of its mount namespace and
// writes the components leaf first, each NUL-terminated; user space reverses
// them. bpf_d_path is not allowed in tracepoint programs. The walk runs in
// bpf_loop so the verifier checks one step, not PATH_DEPTH unrolled ones.
// Its addresses are plain numbers (read with helpers), so each read is a
// helper call, and it makes as few as the layout allows: a dentry's parent
// and name in one, the name itself in one, a mount's parent and mountpoint
// in one and its root once per mount, and none to know the namespace's
// root mount, which the task's namespace names.
struct walk {
	u64 d;	    // the dentry
	u64 m;	    // its struct mount
	u64 mroot;  // m's root dentry
	u64 nsroot; // the namespace's root mount, whose parent is itself
	u32 off;
	u32 truncated;
};

static long walk_step(u64 i, void *arg)
{
	struct walk *w = arg;
	struct record *r = scratch_record();
	if (!r)
		return 1;
	if (w->d == w->mroot) {
		if (w->m == w->nsroot)
			return 1; // the namespace's root
		u32 off_parent = bpf_core_field_offset(struct mount, mnt_parent);
		u32 off_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint);
		struct {
			u64 parent;
			u64 mountpoint;
		} mp = {};
		long err;
		if (off_mountpoint == off_parent + 8) {
			err = bpf_probe_read_kernel(&mp, sizeof(mp), (void *)(w->m + off_parent));
		} else {
			err = bpf_probe_read_kernel(&mp.parent, 8, (void *)(w->m + off_parent));
			err |= bpf_probe_read_kernel(&mp.mountpoint, 8, (void *)(w->m + off_mountpoint));
		}
		if (err || !mp.parent || mp.parent == w->m)
			return 1; // a detached tree (or another namespace's root)
		u64 mroot = 0;
		u32 off_root = bpf_core_field_offset(struct mount, mnt) + bpf_core_field_offset(struct vfsmount, mnt_root);
		if (bpf_probe_read_kernel(&mroot, sizeof(mroot), (void *)(mp.parent + off_root)))
			return 1;
		w->d = mp.mountpoint;
		w->m = mp.parent;
		w->mroot = mroot;
		return 0;
	}
	struct dentry_step dn = {};
	if (read_dentry_step(&dn, w->d) || !dn.parent || dn.parent == w->d)
		return 1; // a detached tree
	u32 off = w->off;
	if (off > DATA_MAX - NAME_MAX_) {
		w->truncated = 1;
		return 1;
	}
	long n = bpf_probe_read_kernel_str(&r->data[off & (DATA_MAX - 1)], NAME_MAX_, (const void *)dn.name);
	if (n > 0)
		w->off = off + n;
	w->d = dn.parent;
	return 0;
}

// ns_root is the current task's mount namespace's root mount.
static __always_inline u64 ns_root(struct task_struct *t)
{
	struct nsproxy *nsp = t->nsproxy;
	return nsp ? (u64)nsp->mnt_ns->root : 0;
}

// end_path ends a walked path's field, begun at off: the record flagged
// when the walk ran out of room, the length written, the offset after it
// returned (end, bounded).
static __always_inline u64 end_path(struct record *r, u64 off, u32 end, bool truncated)
{
	if (truncated)
		r->flags |= FLAG_TRUNCATED;
	if (end > DATA_MAX)
		end = DATA_MAX;
	*(u16 *)&r->data[off & (DATA_MAX - 1)] = (u16)(end - off - 2);
	return end;
}

// walk_path is put_path's walk as a global function. The verifier checks
// a global function once per program, on its own, where an inlined walk is
// checked again at every call site and, after its bpf_loop, once for each
// state the loop's callback can end in: inlined, this walk took the exec
// programs' verification to 85,000-100,000 instructions (TestVerifierCost).
// Its arguments are the struct path's two words, read by the caller: a
// global function takes plain numbers, not the callers' typed pointers.
__attribute__((noinline)) u64 walk_path(u64 off, u64 mnt, u64 dentry)
{
	struct record *r = scratch_record();
	if (!r)
		return off;
	if (off > DATA_MAX - 2)
		return put_empty(r, off);
	u64 mroot = 0;
	u32 off_root = bpf_core_field_offset(struct vfsmount, mnt_root);
	bpf_probe_read_kernel(&mroot, sizeof(mroot), (void *)(mnt + off_root));
	struct walk w = {
		.d = dentry,
		.m = mnt - bpf_core_field_offset(struct mount, mnt),
		.mroot = mroot,
		.nsroot = ns_root(bpf_get_current_task_btf()),
		.off = off + 2,
	};
	bpf_loop(PATH_DEPTH, walk_step, &w, 0);
	return end_path(r, off, w.off, w.truncated);
}

// The exec record's two paths, the program and the working directory,
// are the current task's, reachable as BTF pointers: inside the path's
// own mount walk_task_path steps with direct loads, and copies a short
// name (most are) from the dentry as four words, where walk_step makes
// two probe-read helper calls. A mount crossing needs struct mount, which
// 6.1's verifier cannot reach from a vfsmount, so there walk_step takes
// over; the namespace's root mount, where most walks end, is known from
// the task's namespace.
struct dwalk {
	struct dentry *d;
	struct dentry *mroot; // the mount's root
	u32 off;
	u32 state;
};

enum dwalk_state {
	DWALK_ON = 0,
	DWALK_DONE = 1,	      // the walk ended (a detached tree, or no dentry)
	DWALK_TRUNCATED = 2,  // out of room
	DWALK_MOUNT_ROOT = 3, // at the mount's root: cross it, or stop
};

static long dwalk_step(u64 i, void *arg)
{
	struct dwalk *w = arg;
	struct record *r = scratch_record();
	struct dentry *d = w->d;
	if (!r || !d) {
		w->state = DWALK_DONE;
		return 1;
	}
	if (d == w->mroot) {
		w->state = DWALK_MOUNT_ROOT;
		return 1;
	}
	struct dentry *parent = d->d_parent;
	if (d == parent) { // a detached tree
		w->state = DWALK_DONE;
		return 1;
	}
	u32 off = w->off;
	if (off > DATA_MAX - NAME_MAX_) {
		w->state = DWALK_TRUNCATED;
		return 1;
	}
	u32 len = d->d_name.len;
	const unsigned char *name = d->d_name.name;
	const unsigned char *in = dentry_inline_name(d);
	u8 *dst = &r->data[off & (DATA_MAX - 1)];
	long n;
	// Under "if (name == in)" clang reads through whichever of the two
	// is at hand, and name is a plain number to the verifier: the test's
	// result is hidden from it, so the copy reads through in.
	u64 inl = name == in && len < DENTRY_INLINE_MIN;
	barrier_var(inl);
	if (inl) {
		*(u64 *)(dst + 0) = *(u64 *)(in + 0);
		*(u64 *)(dst + 8) = *(u64 *)(in + 8);
		*(u64 *)(dst + 16) = *(u64 *)(in + 16);
		*(u64 *)(dst + 24) = *(u64 *)(in + 24);
		// A rename racing the copy may have left no NUL at len; the
		// field's format needs one.
		dst[len & (DENTRY_INLINE_MIN - 1)] = 0;
		n = len + 1;
	} else {
		n = bpf_probe_read_kernel_str(dst, NAME_MAX_, name);
	}
	if (n > 0)
		w->off = off + n;
	w->d = parent;
	return 0;
}

enum task_path {
	TASK_PATH_EXE = 0, // the program the task runs
	TASK_PATH_CWD = 1, // its working directory
};

// walk_task_path writes the current task's exe or cwd (which) at off, as
// walk_path does. A global function for the same reason: its two loops,
// inlined, would multiply the callers' verification.
__attribute__((noinline)) u64 walk_task_path(u64 off, u64 which)
{
	struct record *r = scratch_record();
	if (!r)
		return off;
	if (off > DATA_MAX - 2)
		return put_empty(r, off);
	struct task_struct *t = bpf_get_current_task_btf();
	const struct path *p = which == TASK_PATH_CWD ? &t->fs->pwd : &t->mm->exe_file->f_path;
	struct vfsmount *vm = p->mnt;
	struct dwalk dw = {
		.d = p->dentry,
		.mroot = vm->mnt_root,
		.off = off + 2,
	};
	long steps = bpf_loop(PATH_DEPTH, dwalk_step, &dw, 0);
	u32 end = dw.off;
	bool truncated = dw.state == DWALK_TRUNCATED;
	struct nsproxy *nsp = t->nsproxy;
	struct vfsmount *nsroot = nsp ? &nsp->mnt_ns->root->mnt : NULL;
	if (dw.state == DWALK_MOUNT_ROOT && vm != nsroot && steps > 0) {
		// Another mount: walk_step crosses it and goes on, with the
		// iterations left (the step that stopped here took none). Its
		// first step needs only the mount: d == mroot says "at its
		// root" without reading the root. Not two constants: 6.1's
		// verifier checks a bpf_loop callback for one iteration only,
		// from this state, and would drop the dentry branch as dead.
		u64 m = 0;
		bpf_probe_read_kernel(&m, sizeof(m), &p->mnt);
		struct walk w = {
			.d = m,
			.m = m - bpf_core_field_offset(struct mount, mnt),
			.mroot = m,
			.nsroot = ns_root(t),
			.off = end,
		};
		bpf_loop(PATH_DEPTH + 1 - steps, walk_step, &w, 0);
		truncated = truncated || w.truncated;
		end = w.off;
	}
	return end_path(r, off, end, truncated);
}

// bounded_end takes a global walk's result: the verifier knows nothing of
// a global function's result, not even that a u32's upper half is zero;
// clang knows what the walk returns (it sees its body) and would drop the
// bounds checks after it, submit's among them. So the result is hidden
// from clang and bounded here, where both see it, and the bounded value is
// a new one to clang: otherwise it may keep using a copy it took before
// the bound, which 6.1's verifier does not know is bounded.
static __always_inline u32 bounded_end(u64 end)
{
	barrier_var(end);
	if (end > DATA_MAX)
		end = DATA_MAX;
	barrier_var(end);
	return end;
}

// put_task_path writes the current task's exe or cwd at off and returns
// the offset after it.
static __always_inline u32 put_task_path(u32 off, enum task_path which)
{
	return bounded_end(walk_task_path(off, which));
}

// put_path writes path p's field at off and returns the offset after it.
static __always_inline u32 put_path(struct record *r, u32 off, const struct path *p)
{
	struct {
		u64 mnt; // struct path: the vfsmount, then the dentry
		u64 dentry;
	} pp = {};
	bpf_probe_read_kernel(&pp, sizeof(pp), p);
	return bounded_end(walk_path(off, pp.mnt, pp.dentry));
}

// fd_file is task t's open file for fd, or NULL.
static __always_inline struct file *fd_file(struct task_struct *t, s64 fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || (u64)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xffffff]);
	return f;
}

// put_base writes the directory a relative path of the current task is
// resolved against: dirfd's file, or the working directory for AT_FDCWD.
// User space joins the two. Without it the path could only be joined with
// the directory the process is in when user space reads the event, which
// after a chdir names another file.
static __always_inline u32 put_base(struct record *r, u32 off, s32 dirfd, u16 *flags)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (dirfd == AT_FDCWD_) {
		struct fs_struct *fs = BPF_CORE_READ(t, fs);
		*flags |= FLAG_PATH_BASE;
		return put_path(r, off, &fs->pwd);
	}
	struct file *f = fd_file(t, dirfd);
	if (!f)
		return off; // a bad dirfd: the syscall failed with EBADF
	*flags |= FLAG_PATH_BASE;
	return put_path(r, off, &f->f_path);
}

// is_relative: the first field holds a path that does not start with '/'.
static __always_inline bool is_relative(struct record *r)
{
	return *(u16 *)&r->data[0] == 0 || r->data[2] != '/';
}

// wake_flags: wake the reader for a record into an empty buffer (it may
// be asleep) or one filling past wakeup_bytes; avail is the data waiting
// before the record was written.
static __always_inline u64 wake_flags(u64 avail)
{
	return avail == 0 || avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(struct record *r, u32 off)
{
	if (off > DATA_MAX)
		off = DATA_MAX;
	r->data_len = off;
	u64 size = offsetof(struct record, data) + off;
	u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (bpf_ringbuf_output(&events, r, size, wake_flags(avail)) < 0)
		count(CNT_RINGBUF_FULL);
}

// A record without data (fork, exit, a setuid) is written in the ring
// buffer itself: reserve_header, fill the header, submit_header. That
// spares the copy from the scratch record, which under emulation costs an
// instruction a byte. The buffer's fill is read before the reservation,
// which counts as data: after it the buffer is never empty.
struct header_slot {
	struct record *r;
	u64 avail;
};

static __always_inline struct header_slot reserve_header(void)
{
	struct header_slot h;
	h.avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	h.r = bpf_ringbuf_reserve(&events, offsetof(struct record, data), 0);
	if (!h.r)
		count(CNT_RINGBUF_FULL);
	return h;
}

static __always_inline void submit_header(struct header_slot h)
{
	h.r->data_len = 0;
	bpf_ringbuf_submit(h.r, wake_flags(h.avail));
}

// ---- syscall arguments ----------------------------------------------------

// The syscall tracepoint context: a common header, the syscall number, then
// as many u64 arguments as the syscall has (enter) or the return value (exit).
struct sys_enter_ctx {
	u64 common;
	s32 nr;
	u32 _pad;
	u64 args[6];
};

struct sys_exit_ctx {
	u64 common;
	s32 nr;
	u32 _pad;
	s64 ret;
};

// Where a program's syscall arguments are (attach cookie, bits 32+; the
// low 32 bits are the x86-64 syscall number).
enum abi {
	ABI_X64 = 0,  // saved user registers, x86-64: di, si, dx, r10, r8, r9
	ABI_IA32 = 1, // saved user registers, int 0x80 / sysenter: bx, cx, dx, si, di, bp (32-bit values)
	// The arguments of the kernel function every entry of the syscall
	// calls (__sys_connect, __sys_setuid, ...), in the syscall's order.
	ABI_FUNC = 2,
	// As ABI_FUNC, for __sys_accept4, which accept and accept4 share: the
	// saved registers say which syscall it is.
	ABI_FUNC_ACCEPT = 3,
};

// regs_args reads the syscall's arguments at exit from the user registers
// the kernel saved on entry (only ax, the return value, changes). This
// spares an entry program and a per-thread map update per syscall. nr is
// the x86-64 number, whatever the entry point: the record and user space
// know one numbering. execve is the exception: a successful one resets the
// registers, so the tracepoint path stashes its arguments at entry.
static __always_inline void regs_args(struct stash *s, const struct pt_regs *regs, u32 nr, u32 abi)
{
	s->nr = nr;
	if (abi == ABI_IA32) {
		s->args[0] = (u32)regs->bx;
		s->args[1] = (u32)regs->cx;
		s->args[2] = (u32)regs->dx;
		s->args[3] = (u32)regs->si;
		s->args[4] = (u32)regs->di;
		s->args[5] = (u32)regs->bp;
		return;
	}
	s->args[0] = regs->di;
	s->args[1] = regs->si;
	s->args[2] = regs->dx;
	s->args[3] = regs->r10;
	s->args[4] = regs->r8;
	s->args[5] = regs->r9;
}

static __always_inline bool is_self(void)
{
	return (u32)(bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

// wanted: failures always, successes when scope is visible, never the
// agent's own.
static __always_inline bool wanted(s64 ret, u32 scope)
{
	if (ret >= 0 && !(report_success & scope))
		return false;
	return !is_self();
}

// tp_args: a syscall exit tracepoint's arguments, from the registers saved
// at entry. Syscall tracepoints see 64-bit syscalls only.
static __always_inline void tp_args(struct stash *s, struct sys_exit_ctx *ctx)
{
	regs_args(s, (const struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()), ctx->nr, ABI_X64);
}

// fexit_args: an fexit program's arguments; the cookie names the syscall
// (x86-64 number, low 32 bits) and the register layout (high bits).
static __always_inline void fexit_args(struct stash *s, void *ctx, const struct pt_regs *regs)
{
	u64 cookie = bpf_get_attach_cookie(ctx);
	regs_args(s, regs, (u32)cookie, (u32)(cookie >> 32));
}

static __always_inline u32 fexit_abi(void *ctx)
{
	return (u32)(bpf_get_attach_cookie(ctx) >> 32);
}

// kprobe_args: a kprobe's or kretprobe's arguments (the fallback for an
// entry point named twice in the kernel's BTF, which kprobes, resolving
// the name by kallsyms, do not mind), from the saved user registers.
static __always_inline void kprobe_args(struct stash *s, void *ctx)
{
	u64 cookie = bpf_get_attach_cookie(ctx);
	regs_args(s, (const struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()), (u32)cookie,
		  (u32)(cookie >> 32));
}

#define TS_COMPAT_ 0x0002	      // thread_info.status: in a 32-bit syscall
#define X32_SYSCALL_BIT_ 0x40000000 // orig_ax of an x32 syscall
#define IA32_socketcall 102
#define SOCKETCALL_accept 5

// accept_nr: accept or accept4, for __sys_accept4 (which both call), from
// the number the current syscall was entered with: x86-64 or x32 accept,
// or a 32-bit socketcall(SYS_ACCEPT); the 32-bit ABI has no accept of its
// own.
static __always_inline u32 accept_nr(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	const struct pt_regs *regs = (const struct pt_regs *)bpf_task_pt_regs(t);
	u64 ax = regs->orig_ax;
	if (t->thread_info.status & TS_COMPAT_)
		return ax == IA32_socketcall && (u32)regs->bx == SOCKETCALL_accept ? NR_accept : NR_accept4;
	return (ax & ~(u64)X32_SYSCALL_BIT_) == NR_accept ? NR_accept : NR_accept4;
}

// func_ret: the return value of the kernel function an fexit program is
// on (ABI_FUNC). Every such function's fits in an int, and an int in rax
// leaves its high half undefined.
static __always_inline s64 func_ret(void *ctx)
{
	u64 ret = 0;
	bpf_get_func_ret(ctx, &ret);
	return (s64)(s32)ret;
}

// func_args: that function's arguments, which are the syscall's in its
// order; the cookie names the syscall.
static __always_inline void func_args(struct stash *s, void *ctx)
{
	u64 cookie = bpf_get_attach_cookie(ctx);
	s->nr = (u32)cookie;
	if ((u32)(cookie >> 32) == ABI_FUNC_ACCEPT)
		s->nr = accept_nr();
	u64 n = bpf_get_func_arg_cnt(ctx);
	for (u32 i = 0; i < 6; i++) {
		u64 v = 0;
		if (i < n)
			bpf_get_func_arg(ctx, i, &v);
		s->args[i] = v;
	}
}

// Entry of execve (3 arguments) and execveat (5): a program may read no
// further into its context than its tracepoint's format allows.
static __always_inline int stash_args(struct sys_enter_ctx *ctx, int n)
{
	if (is_self())
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	struct stash s = {};
	s.nr = ctx->nr;
	s.args[0] = ctx->args[0];
	s.args[1] = ctx->args[1];
	s.args[2] = ctx->args[2];
	if (n > 3) {
		s.args[3] = ctx->args[3];
		s.args[4] = ctx->args[4];
	}
	put_stash(id, &s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int sys_enter_execve(struct sys_enter_ctx *ctx) { return stash_args(ctx, 3); }

SEC("tracepoint/syscalls/sys_enter_execveat")
int sys_enter_execveat(struct sys_enter_ctx *ctx) { return stash_args(ctx, 5); }

// The fexit path stashes execveat's arguments (its fd and flags are in the
// exec record) on entry to that syscall only; execve's are in the new
// image (sched_exec).
SEC("fentry/__x64_sys_execveat")
int BPF_PROG(fentry_execveat, const struct pt_regs *regs)
{
	if (is_self())
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	struct stash s = {};
	fexit_args(&s, ctx, regs);
	put_stash(id, &s);
	return 0;
}

SEC("kprobe/__x64_sys_execveat")
int kprobe_execveat(struct pt_regs *ctx)
{
	if (is_self())
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	struct stash s = {};
	kprobe_args(&s, ctx);
	put_stash(id, &s);
	return 0;
}

// ---- syscall exit: build and emit -----------------------------------------

static __always_inline void begin_syscall(struct record *r, struct stash *s, s64 ret)
{
	fill_current(r, REC_SYSCALL);
	r->nr = s->nr;
	r->retval = ret;
	for (int i = 0; i < 6; i++)
		r->args[i] = s->args[i];
}

static __always_inline bool starts_with_proc_or_sys(struct record *r)
{
	// data[0..1] is the path's length, the path follows.
	u8 *p = &r->data[2];
	if (p[0] != '/')
		return false;
	if (p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c' && p[5] == '/')
		return true;
	return p[1] == 's' && p[2] == 'y' && p[3] == 's' && p[4] == '/';
}

static __always_inline int file_exit(struct stash *sp, s64 ret)
{
	struct stash s = *sp;
	struct record *r = scratch_record();
	if (!r)
		return 0;
	r->flags = 0;

	// The path a rule would protect, and the directory fd it is relative
	// to: for link and rename the existing name (the object given a new
	// name), for symlink the new link.
	const void *path;
	s32 dirfd = AT_FDCWD_;
	switch (s.nr) {
	case NR_open:
	case NR_unlink:
	case NR_rmdir:
	case NR_chown:
	case NR_truncate:
	case NR_rename:
	case NR_mkdir:
	case NR_link:
	case NR_chmod:
	case NR_mknod:
		path = (const void *)s.args[0];
		break;
	case NR_symlink:
		path = (const void *)s.args[1];
		break;
	case NR_symlinkat:
		dirfd = (s32)s.args[1];
		path = (const void *)s.args[2];
		break;
	case NR_openat2: {
		// Replace the open_how pointer by the flags it points to.
		u64 flags = 0;
		bpf_probe_read_user(&flags, sizeof(flags), (const void *)s.args[2]);
		s.args[2] = flags;
		dirfd = (s32)s.args[0];
		path = (const void *)s.args[1];
		break;
	}
	default: // openat, unlinkat, fchownat, mkdirat, mknodat, renameat(2), linkat, fchmodat(2)
		dirfd = (s32)s.args[0];
		path = (const void *)s.args[1];
	}
	// The path first: /proc and /sys are not reported, and finding that
	// out before building the header is cheaper.
	u32 off = put_str(r, 0, path, true);
	if (starts_with_proc_or_sys(r))
		return 0;
	u16 flags = r->flags;
	// A relative path is resolved now: by the file the open returned,
	// which is exact (symlinks, "..", mount points as the kernel walked
	// them), or else by the directory it was relative to.
	if (is_relative(r)) {
		bool opened = ret >= 0 && (s.nr == NR_open || s.nr == NR_openat || s.nr == NR_openat2);
		struct file *f = opened ? fd_file(bpf_get_current_task_btf(), ret) : NULL;
		if (f) {
			flags |= FLAG_PATH_FILE;
			off = put_path(r, off, &f->f_path);
		} else {
			off = put_base(r, off, dirfd, &flags);
		}
	}
	begin_syscall(r, &s, ret);
	r->flags |= flags;
	submit(r, off);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int sys_exit_file(struct sys_exit_ctx *ctx)
{
	struct stash s;
	if (!wanted(ctx->ret, SCOPE_FILE))
		return 0;
	tp_args(&s, ctx);
	return file_exit(&s, ctx->ret);
}

SEC("fexit/__x64_sys_openat")
int BPF_PROG(fexit_file, const struct pt_regs *regs, long ret)
{
	struct stash s;
	if (!wanted(ret, SCOPE_FILE))
		return 0;
	fexit_args(&s, ctx, regs);
	return file_exit(&s, ret);
}

SEC("kretprobe/__ia32_sys_chown16")
int kret_file(struct pt_regs *ctx)
{
	struct stash s;
	s64 ret = PT_REGS_RC(ctx);
	if (!wanted(ret, SCOPE_FILE))
		return 0;
	kprobe_args(&s, ctx);
	return file_exit(&s, ret);
}

static __always_inline int net_exit(struct stash *sp, s64 ret)
{
	struct stash s = *sp;
	struct record *r = scratch_record();
	if (!r)
		return 0;
	begin_syscall(r, &s, ret);

	u32 off = 0;
	switch (s.nr) {
	case NR_connect:
	case NR_bind:
		off = put_user_bytes(r, 0, (const void *)s.args[1], (u32)s.args[2], SOCKADDR_MAX);
		break;
	case NR_accept:
	case NR_accept4:
		if (ret >= 0 && s.args[1] && s.args[2]) {
			u32 len = 0;
			bpf_probe_read_user(&len, sizeof(len), (const void *)s.args[2]);
			off = put_user_bytes(r, 0, (const void *)s.args[1], len, SOCKADDR_MAX);
		}
		break;
	}
	submit(r, off);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_net(struct sys_exit_ctx *ctx)
{
	struct stash s;
	if (!wanted(ctx->ret, SCOPE_NETWORK))
		return 0;
	tp_args(&s, ctx);
	return net_exit(&s, ctx->ret);
}

// The socket syscalls' inner functions (__sys_connect, ...), which the
// 64-bit and 32-bit entries and socketcall(2) all call.
SEC("fexit/__sys_connect")
int fexit_func_net(u64 *ctx)
{
	struct stash s;
	s64 ret = func_ret(ctx);
	if (!wanted(ret, SCOPE_NETWORK))
		return 0;
	func_args(&s, ctx);
	return net_exit(&s, ret);
}

// ---- DNS queries over UDP -------------------------------------------------

#define DNS_PORT 53
#define DNS_MAX 512 // a DNS message over UDP without EDNS
#define IPPROTO_UDP_ 17
#define S_IFMT_ 00170000
#define S_IFSOCK_ 0140000
#define AF_INET_ 2
#define AF_INET6_ 10
#define SENDMMSG_MAX 2 // glibc's resolver sends the A and AAAA queries in one sendmmsg

// udp_sock is the socket behind the current task's fd when it is a UDP
// socket, else NULL: the one test every send of every other socket pays.
static __always_inline struct sock *udp_sock(s64 fd)
{
	struct file *f = fd_file(bpf_get_current_task_btf(), fd);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT_) != S_IFSOCK_)
		return NULL;
	struct socket *sock = (struct socket *)BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP_)
		return NULL;
	return sk;
}

// send_dns reports one datagram sent to port 53: the destination (the
// address given, else the connected socket's peer) as a raw sockaddr, then
// the first DNS_MAX bytes of the payload. User space decodes the query.
static __always_inline void send_dns(struct record *r, struct stash *s, s64 ret, struct sock *sk,
				     const void *addr, u32 addrlen, const void *buf, u64 len)
{
	struct sockaddr_in6 sa = {};
	if (addr && addrlen >= sizeof(struct sockaddr_in)) {
		// Constant sizes for the verifier: an AF_INET6 address is 28
		// bytes, an AF_INET one 16.
		long err = addrlen >= sizeof(sa) ? bpf_probe_read_user(&sa, sizeof(sa), addr)
						 : bpf_probe_read_user(&sa, sizeof(struct sockaddr_in), addr);
		if (err < 0)
			return;
	} else {
		sa.sin6_family = BPF_CORE_READ(sk, __sk_common.skc_family);
		sa.sin6_port = BPF_CORE_READ(sk, __sk_common.skc_dport);
		if (sa.sin6_family == AF_INET_)
			((struct sockaddr_in *)&sa)->sin_addr.s_addr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		else
			sa.sin6_addr = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
	}
	if ((sa.sin6_family != AF_INET_ && sa.sin6_family != AF_INET6_) || sa.sin6_port != bpf_htons(DNS_PORT))
		return;
	begin_syscall(r, s, ret);
	*(u16 *)&r->data[0] = sizeof(sa);
	__builtin_memcpy(&r->data[2], &sa, sizeof(sa));
	u32 off = put_user_bytes(r, 2 + sizeof(sa), buf, len > DNS_MAX ? DNS_MAX : (u32)len, DNS_MAX);
	submit(r, off);
}

// The 32-bit layouts of struct user_msghdr, mmsghdr and iovec.
struct compat_msghdr_ {
	u32 msg_name;
	s32 msg_namelen;
	u32 msg_iov;
	u32 msg_iovlen;
	u32 msg_control;
	u32 msg_controllen;
	u32 msg_flags;
};
struct compat_iovec_ {
	u32 iov_base;
	u32 iov_len;
};
#define COMPAT_MMSGHDR_SIZE 32 // compat_msghdr_ + u32 msg_len

// send_exit reports the DNS queries among sent datagrams. ia32: the
// message headers are in their 32-bit layout.
static __always_inline int send_exit(struct stash *sp, s64 ret, bool ia32)
{
	struct stash s = *sp;
	struct record *r = scratch_record();
	if (!r)
		return 0;
	struct sock *sk = udp_sock((s64)(s32)s.args[0]);
	if (!sk)
		return 0;
	if (s.nr == NR_sendto) {
		send_dns(r, &s, ret, sk, (const void *)s.args[4], (u32)s.args[5], (const void *)s.args[1], s.args[2]);
		return 0;
	}
	// sendmsg: one user_msghdr; sendmmsg: an array of mmsghdr, ret of them sent.
	int n = s.nr == NR_sendmmsg ? (ret < SENDMMSG_MAX ? (int)ret : SENDMMSG_MAX) : 1;
	for (int i = 0; i < SENDMMSG_MAX; i++) {
		if (i >= n)
			break;
		if (ia32) {
			struct compat_msghdr_ mh = {};
			const void *p = (const void *)(s.args[1] + (s.nr == NR_sendmmsg ? i * COMPAT_MMSGHDR_SIZE : 0));
			if (bpf_probe_read_user(&mh, sizeof(mh), p) < 0)
				return 0;
			struct compat_iovec_ iov = {};
			if (mh.msg_iovlen > 0 && bpf_probe_read_user(&iov, sizeof(iov), (const void *)(u64)mh.msg_iov) < 0)
				return 0;
			send_dns(r, &s, ret, sk, (const void *)(u64)mh.msg_name, (u32)mh.msg_namelen,
				 (const void *)(u64)iov.iov_base, iov.iov_len);
			continue;
		}
		struct user_msghdr mh = {};
		const void *p = s.nr == NR_sendmmsg ? (const void *)(s.args[1] + i * sizeof(struct mmsghdr))
						    : (const void *)s.args[1];
		if (bpf_probe_read_user(&mh, sizeof(mh), p) < 0)
			return 0;
		struct iovec iov = {};
		if (mh.msg_iovlen > 0 && bpf_probe_read_user(&iov, sizeof(iov), mh.msg_iov) < 0)
			return 0;
		send_dns(r, &s, ret, sk, mh.msg_name, (u32)mh.msg_namelen, iov.iov_base, iov.iov_len);
	}
	return 0;
}

// Nothing was sent when a send failed: only successes are looked at.
SEC("tracepoint/syscalls/sys_exit_sendto")
int sys_exit_send(struct sys_exit_ctx *ctx)
{
	struct stash s;
	if (ctx->ret < 0 || !wanted(ctx->ret, SCOPE_NETWORK))
		return 0;
	tp_args(&s, ctx);
	return send_exit(&s, ctx->ret, false);
}

#define MSG_CMSG_COMPAT_ 0x80000000

// __sys_sendto, __sys_sendmsg, __sys_sendmmsg. The 32-bit entries pass
// their message headers with MSG_CMSG_COMPAT in the flags (which the
// 64-bit ones refuse): that says the layout. The flag and the
// forbid_cmsg_compat argument are dropped from the record's arguments.
SEC("fexit/__sys_sendto")
int fexit_func_send(u64 *ctx)
{
	struct stash s;
	s64 ret = func_ret(ctx);
	if (ret < 0 || !wanted(ret, SCOPE_NETWORK))
		return 0;
	func_args(&s, ctx);
	bool compat = false;
	if (s.nr == NR_sendmsg || s.nr == NR_sendmmsg) {
		int fi = s.nr == NR_sendmsg ? 2 : 3;
		compat = s.args[fi] & MSG_CMSG_COMPAT_;
		s.args[fi] &= ~(u64)MSG_CMSG_COMPAT_;
		s.args[fi + 1] = 0;
	}
	return send_exit(&s, ret, compat);
}

static __always_inline int cred_exit(struct stash *sp, s64 ret)
{
	struct stash s = *sp;
	if (s.nr != NR_mount && s.nr != NR_umount2) {
		// The setuid family and ptrace: their arguments say it all.
		struct header_slot h = reserve_header();
		if (!h.r)
			return 0;
		begin_syscall(h.r, &s, ret);
		submit_header(h);
		return 0;
	}
	struct record *r = scratch_record();
	if (!r)
		return 0;
	begin_syscall(r, &s, ret);

	u32 off = 0;
	if (s.nr == NR_mount) {
		off = put_str(r, off, (const void *)s.args[0], true);
		off = put_str(r, off, (const void *)s.args[1], true);
		off = put_str(r, off, (const void *)s.args[2], true);
		off = put_str(r, off, (const void *)s.args[4], true);
	} else {
		off = put_str(r, off, (const void *)s.args[0], true);
	}
	submit(r, off);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int sys_exit_cred(struct sys_exit_ctx *ctx)
{
	struct stash s;
	if (!wanted(ctx->ret, SCOPE_CAPABILITIES))
		return 0;
	tp_args(&s, ctx);
	return cred_exit(&s, ctx->ret);
}

SEC("fexit/__x64_sys_ptrace")
int BPF_PROG(fexit_cred, const struct pt_regs *regs, long ret)
{
	struct stash s;
	if (!wanted(ret, SCOPE_CAPABILITIES))
		return 0;
	fexit_args(&s, ctx, regs);
	return cred_exit(&s, ret);
}

// __sys_setuid and its siblings, which the 64-bit, 32-bit and 16-bit-id
// entries all call (the 16-bit ids widened).
SEC("fexit/__sys_setuid")
int fexit_func_cred(u64 *ctx)
{
	struct stash s;
	s64 ret = func_ret(ctx);
	if (!wanted(ret, SCOPE_CAPABILITIES))
		return 0;
	func_args(&s, ctx);
	return cred_exit(&s, ret);
}

SEC("kretprobe/__x64_sys_mount")
int kret_cred(struct pt_regs *ctx)
{
	struct stash s;
	s64 ret = PT_REGS_RC(ctx);
	if (!wanted(ret, SCOPE_CAPABILITIES))
		return 0;
	kprobe_args(&s, ctx);
	return cred_exit(&s, ret);
}

// A successful execve is reported by sched_process_exec; what reaches here
// with an error is a failed one, whose registers still hold its arguments.
// ia32: argv is an array of 32-bit pointers.
static __always_inline int exec_exit(struct stash *sp, s64 ret, bool ia32)
{
	struct stash s = *sp;
	struct record *r = scratch_record();
	if (!r)
		return 0;
	begin_syscall(r, &s, ret);

	const void *filename = (const void *)s.args[0];
	u64 argv = s.args[1];
	if (s.nr == NR_execveat) {
		filename = (const void *)s.args[1];
		argv = s.args[2];
	}
	u32 off = put_str(r, 0, filename, true);

	// argv as one field of NUL-terminated strings, argv[0] included.
	if (off > DATA_MAX - 2) {
		submit(r, off);
		return 0;
	}
	u32 start = off;
	off += 2;
	for (int i = 0; i < EXEC_ARGV_MAX && argv; i++) {
		u64 p = 0;
		long err = ia32 ? bpf_probe_read_user(&p, sizeof(u32), (const void *)(argv + i * sizeof(u32)))
				: bpf_probe_read_user(&p, sizeof(u64), (const void *)(argv + i * sizeof(u64)));
		if (err < 0 || !p)
			break;
		if (off > DATA_MAX - NAME_MAX_) {
			r->flags |= FLAG_TRUNCATED;
			break;
		}
		long n = bpf_probe_read_user_str(&r->data[off & (DATA_MAX - 1)], NAME_MAX_, (const void *)p);
		if (n <= 0)
			break;
		off += n;
	}
	*(u16 *)&r->data[start & (DATA_MAX - 1)] = (u16)(off - start - 2);
	// 3: for a relative file name, the directory it was relative to.
	if (is_relative(r)) {
		u16 flags = 0;
		off = put_base(r, off, s.nr == NR_execveat ? (s32)s.args[0] : AT_FDCWD_, &flags);
		r->flags |= flags;
	}
	submit(r, off);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int sys_exit_exec(struct sys_exit_ctx *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	drop_stash(id);
	struct stash s;
	if (!wanted(ctx->ret, 0)) // failures only
		return 0;
	tp_args(&s, ctx);
	return exec_exit(&s, ctx->ret, false);
}

SEC("fexit/__x64_sys_execve")
int BPF_PROG(fexit_exec, const struct pt_regs *regs, long ret)
{
	if (ret >= 0)
		return 0; // reported by sched_exec, which removed any stash
	u64 id = bpf_get_current_pid_tgid();
	drop_stash(id);
	struct stash s;
	if (!wanted(ret, 0))
		return 0;
	fexit_args(&s, ctx, regs);
	return exec_exit(&s, ret, fexit_abi(ctx) == ABI_IA32);
}

SEC("kretprobe/__x64_sys_execveat")
int kret_exec(struct pt_regs *ctx)
{
	s64 ret = PT_REGS_RC(ctx);
	if (ret >= 0)
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	drop_stash(id);
	struct stash s;
	if (!wanted(ret, 0))
		return 0;
	kprobe_args(&s, ctx);
	return exec_exit(&s, ret, (u32)(bpf_get_attach_cookie(ctx) >> 32) == ABI_IA32);
}

// ---- process lifecycle -----------------------------------------------------

// tp_btf rather than the classic tracepoint: the kernel does not format a
// trace record (with a copy of the file name) for the program first, and
// the task and binprm are BTF pointers.
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_exec, struct task_struct *t, pid_t old_pid, struct linux_binprm *bprm)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	if (tgid == self_tgid)
		return 0;
	struct record *r = scratch_record();
	if (!r)
		return 0;
	fill_current(r, REC_EXEC);
	r->retval = 0;

	// The stash was made by the thread that called execve, whose tid may
	// have been replaced by the tgid.
	u64 key = ((u64)tgid << 32) | (u32)old_pid;
	struct stash *s = stashed ? bpf_map_lookup_elem(&stashes, &key) : NULL;
	if (s) {
		r->nr = s->nr;
		for (int i = 0; i < 6; i++)
			r->args[i] = s->args[i];
		drop_stash(key);
	} else {
		r->nr = NR_execve;
		for (int i = 0; i < 6; i++)
			r->args[i] = 0;
		r->flags |= FLAG_NO_STASH;
	}

	// 1: the executable, resolved by the kernel (symlinks followed).
	struct mm_struct *mm = t->mm;
	u32 off = put_task_path(0, TASK_PATH_EXE);

	// 2: the file name as given to execve, which user space reads only
	// when the walk gave no path (decode.go's execText): empty otherwise.
	off = off > 2 ? put_empty(r, off) : put_str(r, off, bprm->filename, false);

	// 3: argv, NUL-separated, as the new image sees it.
	unsigned long as = mm->arg_start;
	unsigned long ae = mm->arg_end;
	off = put_user_bytes(r, off, (const void *)as, ae > as ? (u32)(ae - as) : 0, ARGS_MAX);

	// 4: the working directory.
	off = put_task_path(off, TASK_PATH_CWD);

	// 5: the controlling terminal's name.
	struct tty_struct *tty = t->signal->tty;
	if (tty)
		off = put_str(r, off, &tty->name, false);
	else
		off = put_empty(r, off);

	submit(r, off);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid) // a thread, not a process
		return 0;
	if (parent->tgid == self_tgid)
		return 0;
	struct header_slot h = reserve_header();
	if (!h.r)
		return 0;
	fill_bare(h.r, REC_FORK);
	const struct cred *cred = parent->cred;
	h.r->uid = cred ? cred->uid.val : 0; // current's, which the child inherits
	fill_task(h.r, child);
	submit_header(h);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_exit, struct task_struct *p)
{
	// A thread killed inside a traced syscall never reaches sys_exit.
	drop_stash(bpf_get_current_pid_tgid());

	if (p->signal->live.counter != 0) // other threads still run
		return 0;
	if (p->tgid == self_tgid)
		return 0;
	struct header_slot h = reserve_header();
	if (!h.r)
		return 0;
	struct record *r = h.r;
	fill_bare(r, REC_EXIT);
	r->host_pid = p->tgid;
	r->host_ppid = r->pid = r->ppid = r->pid_ns = r->mnt_ns = 0;
	r->flags = 0;
	r->aux = 0;
	r->retval = p->exit_code;
	submit_header(h);
	return 0;
}
