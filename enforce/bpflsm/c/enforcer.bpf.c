// SPDX-License-Identifier: GPL-2.0
/* BPF-LSM enforcer: every decision is made here, from rules the agent writes
 * into maps; user space only reads verdicts from the ring buffer.
 *
 * Matching order for a path (exec or open), first rule per action wins:
 *   exact path (with source, then any source) > exec name > deepest
 *   directory > first pattern.
 * Then: an applicable Block rule denies, else an applicable Audit rule
 * reports, else in allow-list mode an unmatched operation gets the posture.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "enforcer.h"
#include "dentry.h"

char LICENSE[] SEC("license") = "GPL";

#define EACCES 13
#define FMODE_WRITE 0x2
#define MAY_WRITE 0x2
#define MAY_APPEND 0x8
#define CAP_OPT_NOAUDIT 0x2
#define CAP_SETGID 6
#define CAP_SETUID 7
#define S_IFMT 00170000
#define S_IFDIR 0040000

/* Operation properties the flags of a rule are evaluated against. */
#define OP_WRITE 0x1
#define OP_OWNER 0x2
#define OP_TTY 0x4

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, struct path_val);
} path_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key);
	__type(value, struct rule_val);
} net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct src_key);
	__type(value, struct src_val);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_PATTERNS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pattern_key);
	__type(value, struct pattern);
} patterns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pattern_index_key);
	__type(value, struct pattern_index_val);
} pattern_index SEC(".maps");

/* Index gen * MAX_SCOPES + scope: config of each scope of each generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_SCOPES);
	__type(key, __u32);
	__type(value, struct config);
} configs SEC(".maps");

/* Containers with a scope: cgroup id (or namespaces) -> scope. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 15);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct scope_key);
	__type(value, __u32);
} scopes SEC(".maps");

/* Index 0: the active generation, plus one (0 means no rules loaded). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

/* Index 0: a bit per capability some config of the generations that may
 * be in force decides, every bit when one decides every capability (an
 * allow-list): a superset of the active generation's, kept so by Apply
 * (bpflsm.go, commit: widened before the switch, narrowed after it). The
 * capability hooks run on every capable() check and setuid of the host;
 * for a capability no rule names this one lookup ends them, instead of
 * the active config's two and its scope. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} caps_any SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct rate_key);
	__type(value, struct rate_val);
} rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* The executable path of each task, zero padded, filled by the first hook
 * that needs it after an exec (track_exec drops it): fill_exe_cache in
 * hooks that may call bpf_d_path, walk_exe_cache in the others. */
struct exe_path {
	__u32 len;
	__u32 pad;
	__u64 hash; /* FNV-1a of path, the sources key */
	/* lookup_source's answer for this path, valid while src_apply and
	 * src_tag are the config's apply and tag (a new path resets it) */
	__u32 src_apply;
	__u32 src_tag;
	__u32 src_id;
	__u32 src_allow;
	char path[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct exe_path);
} exe_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inode_tag);
} inode_tags SEC(".maps");

/* Index gen * 2 + category (CAT_PROCESS, CAT_FILE): the names of the
 * rules; index 4 + gen: the numbers of the inodes that generation's Apply
 * tagged (enforcer.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, struct name_filter);
} name_filters SEC(".maps");

struct match {
	struct rule_slot slot[NSLOTS];
};

/* The state of one glob match (glob_step). It lives in the scratch area,
 * not in the loop's context on the stack: since 6.7 the verifier verifies
 * a bpf_loop callback again and again until its entry states converge.
 * On the stack the counters hold exact values, which the callback's own
 * branches on them make precise, so every step was a new state and
 * enforce_exec ran out of the verifier's budget on 6.12 ("The sequence of
 * 8193 jumps is too complex"). Read from a map value they are unknown
 * numbers (every index is masked), and the callback converges at once. */
struct glob_state {
	__s32 p, t;   /* token and path positions */
	__s32 sp, st; /* the last star's token and path positions; sp < 0: none */
	__u32 ntok;
	__u32 result;
};

/* Per-CPU work area: LSM programs run with migration disabled and never
 * sleep, so one area per CPU is enough and keeps big buffers off the stack. */
struct scratch {
	struct path_key key;
	struct src_key skey;
	char path[PATH_LEN];
	char tmp[PATH_LEN];
	struct pattern pat;
	__u8 cand[MAX_PATTERNS]; /* the candidate list pattern_step walks */
	__u64 comp[MAX_DEPTH];   /* dentries of the path build_path walks */
	struct {                 /* one name of a path hook, for its decisions */
		__u32 tag;       /* generation and scope */
		__u32 len;       /* of path */
		__u32 op;        /* OP_* */
		__u32 pad;
		__u64 src;       /* pack_src */
	} side;
	struct glob_state glob;  /* the glob match glob_step advances */
	__u32 ncomp;             /* entries of comp (here for the reason glob is) */
	__u32 pad2;
	__u64 word;              /* launder's */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_area SEC(".maps");

/* Puts struct event and the enums into BTF so bpf2go generates their Go
 * types and constants (gen.go's -type list). */
const struct event *unused_event __attribute__((unused));
const struct enums *unused_enums __attribute__((unused));

/* masked bounds an index so the verifier sees it; the barrier keeps clang
 * from dropping a mask it can prove redundant. */
static __always_inline __u32 masked(__u32 i, __u32 mask)
{
	barrier_var(i);
	return i & mask;
}

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_area, &zero);
}

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += 1;
}

/* task_scope returns the scope of the current task: the container scope
 * its cgroup (or, failing that, its namespaces) was given, else 0 (host). */
static __always_inline __u32 task_scope(__u32 g, __u32 scoped)
{
	struct scope_key k = {.gen = g, .by = SCOPE_BY_CGROUP};
	__u32 *v;
	if (scoped & (1 << SCOPE_BY_CGROUP)) {
		k.id = bpf_get_current_cgroup_id();
		v = bpf_map_lookup_elem(&scopes, &k);
		if (v)
			return *v;
	}
	if (scoped & (1 << SCOPE_BY_NS)) {
		struct task_struct *t = bpf_get_current_task_btf();
		__u64 pidns = t->nsproxy->pid_ns_for_children->ns.inum;
		__u64 mntns = t->nsproxy->mnt_ns->ns.inum;
		k.by = SCOPE_BY_NS;
		k.id = pidns << 32 | mntns;
		v = bpf_map_lookup_elem(&scopes, &k);
		if (v)
			return *v;
	}
	return 0;
}

/* active_config returns the config that applies to the current task in
 * the generation in force (NULL when no rules were loaded), and in *tag
 * the generation and scope its keys carry. */
static __always_inline struct config *active_config(__u32 *tag)
{
	__u32 zero = 0;
	__u32 *a = bpf_map_lookup_elem(&active, &zero);
	if (!a || *a == 0)
		return NULL;
	__u32 g = (*a - 1) & 1;
	__u32 idx = g * MAX_SCOPES;
	struct config *cfg = bpf_map_lookup_elem(&configs, &idx);
	if (!cfg)
		return NULL;
	__u32 scope = 0;
	if (cfg->scoped) {
		scope = task_scope(g, cfg->scoped) & (MAX_SCOPES - 1);
		if (scope) {
			idx = g * MAX_SCOPES + scope;
			cfg = bpf_map_lookup_elem(&configs, &idx);
		}
	}
	*tag = g << GEN_SHIFT | scope << SCOPE_SHIFT;
	return cfg;
}

/* merge fills the empty slots of m from v. A global function: the verifier
 * checks it once and callers see m as unknown afterwards, instead of
 * splitting their state on every slot of every lookup (which multiplied
 * file_open's verified instructions towards the 1M limit). */
__noinline int merge(struct match *m, struct rule_val *v)
{
	if (!m || !v)
		return 0;
#pragma unroll
	for (int i = 0; i < NSLOTS; i++) {
		if (!m->slot[i].id && v->slot[i].id)
			m->slot[i] = v->slot[i];
	}
	return 0;
}

/* same_bytes compares the first n bytes of a and b, eight at a time; both
 * must have PATH_LEN readable bytes. Used only on a hash hit. */
static __always_inline int same_bytes(const char *a, const char *b, __u32 n)
{
	for (int i = 0; i < PATH_LEN / 8; i++) {
		__u32 off = i * 8;
		if (off >= n)
			return 1;
		__u64 x = *(__u64 *)(a + off) ^ *(__u64 *)(b + off);
		__u32 left = n - off;
		if (left < 8)
			x &= (1ULL << (left * 8)) - 1;
		if (x)
			return 0;
	}
	return 1;
}

/* path_rule returns the rules a hash hit holds when its path is the n
 * bytes of p, NULL otherwise. */
static __always_inline struct rule_val *path_rule(struct path_val *v, const char *p, __u32 n)
{
	if (!v || v->len != n || !same_bytes(v->path, p, n))
		return NULL;
	return &v->rules;
}

/* Loop contexts carry the caller's scratch pointer: looking it up in every
 * step cost more than the step's own work (the kernels this runs on do not
 * inline per-CPU array lookups). */
struct hash_ctx {
	struct scratch *s;
	__u32 n;
	__u64 h;
};

static long hash_tmp_step(__u32 i, struct hash_ctx *c)
{
	struct scratch *s = c->s;
	if (!s || i >= c->n)
		return 1;
	c->h = (c->h ^ (__u8)s->tmp[masked(i, PATH_MASK)]) * FNV_PRIME;
	return 0;
}

/* hash_tmp is the FNV-1a hash of the first n bytes of s->tmp. */
static __always_inline __u64 hash_tmp(struct scratch *s, __u32 n)
{
	struct hash_ctx c = {.s = s, .n = n, .h = FNV_OFFSET};
	bpf_loop(PATH_LEN, hash_tmp_step, &c, 0);
	return c.h;
}

/* ---- executable paths ------------------------------------------------- */

/* fill_exe_cache stores task's executable path; only hooks that may call
 * bpf_d_path inline it. */
static __always_inline struct exe_path *fill_exe_cache(struct task_struct *task, struct scratch *s)
{
	struct exe_path *e = bpf_task_storage_get(&exe_cache, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!e)
		return NULL;
	if (e->len)
		return e;
	struct mm_struct *mm = task->mm;
	if (!mm)
		return NULL;
	struct file *exe = mm->exe_file;
	if (!exe)
		return NULL;
	long n = bpf_d_path((struct path *)&exe->f_path, s->tmp, PATH_LEN);
	if (n <= 0)
		return NULL;
	__builtin_memset(e->path, 0, PATH_LEN);
	bpf_probe_read_kernel_str(e->path, PATH_LEN, s->tmp);
	e->hash = hash_tmp(s, n - 1);
	e->len = n - 1;
	e->src_apply = 0;
	return e;
}

struct src_ref {
	__u32 id;
	__u32 allowlist;
};

/* lookup_source returns the source id of an executable path (0 when it
 * is no rule's source) and the categories it is allow-listed in. Scalars,
 * not the map pointer: clang may otherwise merge the NULL check away from
 * the dereference in ways the verifier cannot follow. The answer is kept
 * in the task's exe_path for the Apply (cfg->apply, never 0) and tag it
 * was found for: a task's every socket, open and capability use asks the
 * same question until it execs or the rules change. */
static __always_inline struct src_ref lookup_source(struct scratch *s, struct config *cfg, __u32 gen,
						    struct exe_path *e, int own)
{
	struct src_ref out = {};
	if (!e)
		return out;
	/* Only the task itself reads and writes its memo: another task (a
	 * child at exec) could interleave its writes of the four fields with
	 * the owner's and leave an answer beside another path's key. */
	__u32 apply = own ? cfg->apply : 0;
	if (apply && e->src_apply == apply && e->src_tag == gen) {
		out.id = e->src_id;
		out.allowlist = e->src_allow;
		return out;
	}
	s->skey.gen = gen;
	s->skey.pad = 0;
	s->skey.hash = e->hash;
	struct src_val *v = bpf_map_lookup_elem(&sources, &s->skey);
	if (v && v->len == e->len && same_bytes(v->path, e->path, e->len)) {
		out.id = v->id;
		out.allowlist = v->allowlist;
	}
	if (apply) {
		e->src_id = out.id;
		e->src_allow = out.allowlist;
		e->src_tag = gen;
		e->src_apply = apply;
	}
	return out;
}

/* ---- path matching ----------------------------------------------------- */

/* The directory rules a path walk found. A struct of its own, without
 * pointers: dir_hit, a global function, gets only this part of the walk's
 * context, because since 6.7 (or so) the verifier forgets every value the
 * memory a global function is given holds, pointers included, and the
 * walk's scratch pointer must survive into walk_step's next call. */
struct dir_found {
	__s32 pos[NSLOTS];
	struct rule_slot nonrec[NSLOTS];
	struct rule_slot rec[NSLOTS];
};

struct walk_ctx {
	struct scratch *s;
	__u32 len;
	__s32 last_slash;
	__u32 dir_kind;
	__u32 src;
	__u64 h;  /* FNV-1a of the path up to here */
	__u64 hn; /* of the bytes since the last '/' */
	struct dir_found d;
};

/* dir_hit records a directory rule found at pos; global for the same
 * reason as merge. */
__noinline int dir_hit(struct dir_found *d, struct rule_val *v, __s32 pos)
{
	if (!d || !v)
		return 0;
#pragma unroll
	for (int i = 0; i < NSLOTS; i++) {
		if (!v->slot[i].id)
			continue;
		if (v->slot[i].flags & F_RECURSIVE) {
			d->rec[i] = v->slot[i];
		} else {
			d->nonrec[i] = v->slot[i];
			d->pos[i] = pos;
		}
	}
	return 0;
}

/* path_lookup finds the rules of kind (and source) for the n bytes of p,
 * whose hash is h. */
static __always_inline struct rule_val *path_lookup(struct scratch *s, __u32 kind, __u32 src, __u64 h,
						    const char *p, __u32 n)
{
	s->key.kind = kind;
	s->key.src = src;
	s->key.hash = h;
	return path_rule(bpf_map_lookup_elem(&path_rules, &s->key), p, n);
}

/* dir_lookup looks up the directory that the path up to and including the
 * '/' at pos names; h is that prefix's hash. */
static __always_inline void dir_lookup(struct scratch *s, struct walk_ctx *w, __s32 pos, __u64 h)
{
	__u32 n = masked(pos + 1, 2 * PATH_LEN - 1);
	dir_hit(&w->d, path_lookup(s, w->dir_kind, 0, h, s->path, n), pos);
	if (w->src) /* after the any-source entry, so it wins at the same depth */
		dir_hit(&w->d, path_lookup(s, w->dir_kind, w->src, h, s->path, n), pos);
}

/* walk_step hashes one byte of the path and, at each '/', looks up the
 * directory the prefix names. */
static long walk_step(__u32 i, struct walk_ctx *w)
{
	struct scratch *s = w->s;
	if (!s || i >= w->len)
		return 1;
	__u8 c = s->path[masked(i, PATH_MASK)];
	w->h = (w->h ^ c) * FNV_PRIME;
	if (c != '/') {
		w->hn = (w->hn ^ c) * FNV_PRIME;
		return 0;
	}
	w->hn = FNV_OFFSET;
	w->last_slash = i;
	if (w->dir_kind)
		dir_lookup(s, w, i, w->h);
	return 0;
}

struct glob_ctx {
	struct scratch *s;
};

static __always_inline int class_has(struct scratch *s, __u8 cls, __u8 c)
{
	__u8 byte = s->pat.classes[masked(cls, PAT_CLASSES - 1)][masked(c >> 3, 31)];
	return (byte >> (c & 7)) & 1;
}

/* glob_step advances the glob match in s->glob by one step: s->pat's
 * tokens against s->path, with '*' backtracking that never crosses '/'. */
static long glob_step(__u32 i, struct glob_ctx *gc)
{
	struct scratch *s = gc->s;
	if (!s)
		return 1;
	struct glob_state *g = &s->glob;
	__u8 c = s->path[masked(g->t, PATH_MASK)];
	if (g->t >= PATH_LEN)
		c = 0;
	if (g->p < (__s32)g->ntok) {
		__u32 tp = masked(g->p, PAT_TOKENS - 1);
		__u8 type = s->pat.tok[tp][0];
		__u8 arg = s->pat.tok[tp][1];
		if (type == T_STAR) {
			g->sp = g->p;
			g->st = g->t;
			g->p++;
			return 0;
		}
		if (c) {
			int ok = 0;
			switch (type) {
			case T_LIT:
				ok = c == arg;
				break;
			case T_ANY:
				ok = c != '/';
				break;
			case T_CLASS:
				ok = c != '/' && class_has(s, arg, c);
				break;
			case T_NCLASS:
				ok = c != '/' && !class_has(s, arg, c);
				break;
			}
			if (ok) {
				if (c == '/')
					g->sp = -1; /* a star before a '/' can never help again */
				g->p++;
				g->t++;
				return 0;
			}
		}
	} else if (!c) {
		g->result = 1;
		return 1;
	}
	if (g->sp >= 0) {
		__u8 sc = s->path[masked(g->st, PATH_MASK)];
		if (sc && sc != '/' && g->st < PATH_LEN - 1) {
			g->st++;
			g->t = g->st;
			g->p = g->sp + 1;
			return 0;
		}
	}
	g->result = 0;
	return 1;
}

struct pat_ctx {
	struct scratch *s;
	__u32 gen;
	__u32 n;
	__u32 category;
	__u32 len;  /* of s->path */
	__u64 head; /* s->path's first 8 bytes */
	__u64 tail; /* its last 8 bytes, when len >= 8 */
	struct rule_slot found[NSLOTS];
};

static long pattern_step(__u32 i, struct pat_ctx *pc)
{
	struct scratch *cs = pc->s;
	if (!cs || i >= pc->n)
		return 1;
	struct pattern_key k = {.gen = pc->gen, .idx = cs->cand[masked(i, MAX_PATTERNS - 1)]};
	struct pattern *p = bpf_map_lookup_elem(&patterns, &k);
	if (!p || p->category != pc->category)
		return 0;
	__u8 slot = p->slot;
	if (slot >= NSLOTS || pc->found[slot].id)
		return 0;
	/* Cheap rejections first: a match starts with the pattern's literal
	 * prefix and ends with its literal suffix. */
	__u8 pl = p->pre_len, sl = p->suf_len;
	if (pl && pl <= 8 && ((pc->head ^ p->pre) & (~0ULL >> (64 - 8 * pl))))
		return 0;
	if (sl && sl <= 8 && pc->len >= 8 && (pc->tail >> (64 - 8 * sl)) != p->suf)
		return 0;
	__builtin_memcpy(&cs->pat, p, sizeof(*p));
	cs->glob.p = 0;
	cs->glob.t = 0;
	cs->glob.sp = -1;
	cs->glob.st = 0;
	cs->glob.ntok = p->ntok;
	cs->glob.result = 0;
	struct glob_ctx g = {.s = cs};
	bpf_loop(GLOB_STEPS, glob_step, &g, 0);
	if (!cs->glob.result)
		return 0;
	if (slot == SLOT_BLOCK) {
		pc->found[SLOT_BLOCK].id = p->id;
		pc->found[SLOT_BLOCK].flags = p->flags;
	} else if (slot == SLOT_AUDIT) {
		pc->found[SLOT_AUDIT].id = p->id;
		pc->found[SLOT_AUDIT].flags = p->flags;
	} else {
		pc->found[SLOT_ALLOW].id = p->id;
		pc->found[SLOT_ALLOW].flags = p->flags;
	}
	return 0;
}

/* match_patterns runs the patterns of one candidate list against s->path. */
static __always_inline void match_patterns(struct scratch *s, struct pat_ctx *pc, __u8 sel, __u8 byte)
{
	struct pattern_index_key k = {.gen = pc->gen, .category = pc->category, .sel = sel, .byte = byte};
	struct pattern_index_val *v = bpf_map_lookup_elem(&pattern_index, &k);
	if (!v)
		return;
	pc->n = v->n;
	__builtin_memcpy(s->cand, v->idx, MAX_PATTERNS);
	bpf_loop(MAX_PATTERNS, pattern_step, pc, 0);
}

/* match_path finds the rules for s->path (length len) in one category.
 * kind_name is 0 for categories without exec names. */
static __always_inline void match_path(struct scratch *s, struct config *cfg, __u32 gen, __u32 category,
				       __u32 kind_path, __u32 kind_name, __u32 kind_dir, __u32 src, __u32 len,
				       int is_dir, struct match *m)
{
	__u32 g = gen; /* the tag: generation and scope */
	struct walk_ctx w = {.s = s, .len = len, .last_slash = -1, .src = src, .h = FNV_OFFSET, .hn = FNV_OFFSET};
	if (cfg->kinds & (1 << kind_dir))
		w.dir_kind = g | kind_dir;
#pragma unroll
	for (int i = 0; i < NSLOTS; i++)
		w.d.pos[i] = -2;

	bpf_loop(PATH_LEN, walk_step, &w, 0);

	if (cfg->kinds & (1 << kind_path)) {
		if (src)
			merge(m, path_lookup(s, g | kind_path, src, w.h, s->path, len));
		merge(m, path_lookup(s, g | kind_path, 0, w.h, s->path, len));
	}

	/* a directory opened by itself matches its own directory rules: its
	 * path and a '/' (written into the path's NUL, restored after) */
	if (is_dir && w.dir_kind && len < PATH_LEN - 1 && len > 1) {
		s->path[masked(len, PATH_MASK)] = '/';
		dir_lookup(s, &w, len, (w.h ^ '/') * FNV_PRIME);
		s->path[masked(len, PATH_MASK)] = 0;
		w.last_slash = len;
	}

	if (kind_name && (cfg->kinds & (1 << kind_name)) && w.last_slash >= 0) {
		/* the name, copied to the start of tmp for the comparison */
		__u32 off = masked(w.last_slash + 1, PATH_MASK);
		__u32 n = len - (w.last_slash + 1);
		bpf_probe_read_kernel_str(s->tmp, PATH_LEN, s->path + off);
		if (src)
			merge(m, path_lookup(s, g | kind_name, src, w.hn, s->tmp, n));
		merge(m, path_lookup(s, g | kind_name, 0, w.hn, s->tmp, n));
	}

	struct match dm = {};
#pragma unroll
	for (int i = 0; i < NSLOTS; i++) {
		if (w.d.pos[i] == w.last_slash)
			dm.slot[i] = w.d.nonrec[i];
		else
			dm.slot[i] = w.d.rec[i];
	}
	merge(m, (struct rule_val *)&dm);

	if (cfg->npatterns && (cfg->pattern_cats & (1 << category))) {
		struct pat_ctx pc = {.s = s, .gen = gen, .category = category, .len = len};
		/* path is followed by tmp in struct scratch: 8-byte reads from
		 * any offset below PATH_LEN stay inside the map value */
		pc.head = *(__u64 *)s->path;
		if (len >= 8)
			pc.tail = *(__u64 *)(s->path + masked(len - 8, PATH_MASK));
		match_patterns(s, &pc, PSEL_LAST, len ? s->path[masked(len - 1, PATH_MASK)] : 0);
		match_patterns(s, &pc, PSEL_SECOND, s->path[1]);
		match_patterns(s, &pc, PSEL_ANY, 0);
		merge(m, (struct rule_val *)&pc.found);
	}
}

/* ---- decisions ----------------------------------------------------------- */

/* exempt: the operation is the exception a flagged rule carves out
 * (readOnly: reads; ownerOnly: the owner; both: the owner's reads). */
static __always_inline int exempt(__u32 flags, __u32 op)
{
	if (!(flags & (F_OWNER | F_READONLY)))
		return 0;
	if ((flags & F_OWNER) && !(op & OP_OWNER))
		return 0;
	if ((flags & F_READONLY) && (op & OP_WRITE))
		return 0;
	return 1;
}

static __always_inline int applies(__u32 flags, __u32 op)
{
	if ((flags & F_TTY) && !(op & OP_TTY))
		return 0;
	return !exempt(flags, op);
}

struct decision {
	__u32 verdict;
	__u32 rule;
	int deny;
};

static __always_inline struct decision decide(struct match *m, __u32 op, int allowlisted, int posture_block)
{
	struct decision d = {};
	if (m->slot[SLOT_BLOCK].id && applies(m->slot[SLOT_BLOCK].flags, op)) {
		d.verdict = V_BLOCK;
		d.rule = m->slot[SLOT_BLOCK].id;
		d.deny = 1;
		return d;
	}
	if (m->slot[SLOT_AUDIT].id && applies(m->slot[SLOT_AUDIT].flags, op)) {
		d.verdict = V_AUDIT;
		d.rule = m->slot[SLOT_AUDIT].id;
		return d;
	}
	if (!allowlisted)
		return d;
	__u32 af = m->slot[SLOT_ALLOW].flags;
	if (m->slot[SLOT_ALLOW].id && (!(af & (F_OWNER | F_READONLY)) || exempt(af, op)))
		return d;
	d.verdict = posture_block ? V_POSTURE_BLOCK : V_POSTURE_AUDIT;
	d.deny = posture_block;
	return d;
}

static __always_inline int is_allowlisted(struct config *cfg, __u32 src_allow, __u32 category)
{
	return ((cfg->allowlist | src_allow) >> category) & 1;
}

/* file_match and file_verdict are the decision of file rules for the path
 * hooks: match_path and decide with the file category's arguments, as
 * file_open calls them, so a path hook decides exactly as an open does.
 * (file_open calls the two directly: going through these wrappers changed
 * its register allocation enough to take its verification from 219k to
 * 977k instructions.) With ancestors, the rules of protected paths below
 * the path count too (for renames of a directory, which move everything
 * below it). */
static __always_inline void file_match(struct scratch *s, struct config *cfg, __u32 gen, __u32 src, __u32 len,
				       int is_dir, int ancestors, struct match *m)
{
	match_path(s, cfg, gen, CAT_FILE, K_FILE_PATH, 0, K_FILE_DIR, src, len, is_dir, m);
	if (ancestors && (cfg->kinds & (1 << K_ANCESTOR))) {
		/* hashed again rather than returned by match_path, which
		 * would change file_open's code (see above) */
		bpf_probe_read_kernel_str(s->tmp, PATH_LEN, s->path);
		__u64 h = hash_tmp(s, len);
		if (src)
			merge(m, path_lookup(s, gen | K_ANCESTOR, src, h, s->path, len));
		merge(m, path_lookup(s, gen | K_ANCESTOR, 0, h, s->path, len));
	}
}

static __always_inline struct decision file_verdict(struct config *cfg, struct match *m, __u32 op, struct src_ref sv)
{
	return decide(m, op, is_allowlisted(cfg, sv.allowlist, CAT_FILE), cfg->posture_block & (1 << CAT_FILE));
}

/* config_of is the config of a tag (generation and scope) active_config
 * returned, so a decision split over global functions uses one
 * generation throughout. */
static __always_inline struct config *config_of(__u32 tag)
{
	__u32 idx = (tag >> GEN_SHIFT) * MAX_SCOPES + ((tag >> SCOPE_SHIFT) & (MAX_SCOPES - 1));
	return bpf_map_lookup_elem(&configs, &idx);
}

/* Decisions cross global functions packed in a __u64: verdict in the low
 * byte, deny in bit 8, the rule in the high half. */
static __always_inline __u64 pack_decision(struct decision d)
{
	return (__u64)d.rule << 32 | (d.deny ? 1 << 8 : 0) | (d.verdict & 0xff);
}

static __always_inline struct decision unpack_decision(__u64 v)
{
	struct decision d = {.verdict = v & 0xff, .deny = (v >> 8) & 1, .rule = v >> 32};
	return d;
}

/* tagged_decision is d, or the decision of the rules Apply tagged the
 * object's inode with (inodes.go) where that one is stronger: it denies,
 * or d decides nothing. The tag holds what the rules' name for the object
 * decides (its exact and directory rules, computed by Apply as match_path
 * would), per category, so a name no rule covers (a hard link made before
 * the rules) is decided as that name: explicit Block and Audit rules only,
 * an allow-list's posture stays the name used's business. Only host-scope
 * rules tag inodes (Apply resolves their paths in its own mount
 * namespace). */
static __always_inline struct decision tagged_decision(struct decision d, struct config *cfg, __u32 gtag,
							struct inode *inode, __u32 category, __u32 op, __u32 src)
{
	if (d.deny || !cfg->epoch || ((gtag >> SCOPE_SHIFT) & (MAX_SCOPES - 1)))
		return d;
	struct inode_tag *it = bpf_inode_storage_get(&inode_tags, inode, 0, 0);
	if (!it)
		return d;
	struct inode_name *n = &it->gen[masked(gtag >> GEN_SHIFT, 1)];
	__u32 c = masked(category, 1);
	if (n->epoch != cfg->epoch || (n->src[c] && n->src[c] != src))
		return d;
	struct decision td = decide((struct match *)&n->rules[c], op, 0, 0);
	if (td.verdict && (td.deny || !d.verdict))
		return td;
	return d;
}

static __always_inline int has_tty(struct task_struct *t)
{
	return BPF_CORE_READ(t, signal, tty) != NULL;
}

/* ---- events -------------------------------------------------------------- */

/* rate_ok lets at most cfg->rate_burst identical events per second through
 * and counts the rest; the next event that passes carries the count. */
static __always_inline int rate_ok(struct config *cfg, __u32 rule, __u32 hook, __u32 verdict, __u32 *suppressed)
{
	*suppressed = 0;
	if (!cfg->rate_burst)
		return 1;
	struct rate_key k = {.rule = rule, .tgid = bpf_get_current_pid_tgid() >> 32, .hook = hook, .verdict = verdict};
	__u64 now = bpf_ktime_get_ns();
	struct rate_val *v = bpf_map_lookup_elem(&rate, &k);
	if (!v) {
		struct rate_val nv = {.window = now, .count = 1};
		bpf_map_update_elem(&rate, &k, &nv, BPF_ANY);
		return 1;
	}
	if (now - v->window >= 1000000000ULL) {
		*suppressed = v->suppressed;
		v->window = now;
		v->count = 1;
		v->suppressed = 0;
		return 1;
	}
	if (v->count < cfg->rate_burst) {
		v->count++;
		return 1;
	}
	__sync_fetch_and_add(&v->suppressed, 1);
	count(C_SUPPRESSED);
	return 0;
}

/* ns_pid is a pid as seen in its own (innermost) namespace. */
static __always_inline __u32 ns_pid(struct pid *p)
{
	if (!p)
		return 0;
	unsigned int level = p->level;
	struct upid u = {};
	void *at = (void *)p + bpf_core_field_offset(struct pid, numbers) + (__u64)(level & 31) * sizeof(struct upid);
	bpf_probe_read_kernel(&u, sizeof(u), at);
	return u.nr;
}

static __always_inline struct event *new_event(struct config *cfg, struct decision *d, __u32 hook, int deny_errno)
{
	__u32 suppressed;
	if (!rate_ok(cfg, d->rule, hook, d->verdict, &suppressed))
		return NULL;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(C_RINGBUF_FULL);
		return NULL;
	}
	count(C_EVENTS);
	struct task_struct *t = bpf_get_current_task_btf();
	e->ts = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->host_pid = t->tgid;
	e->host_ppid = t->real_parent->tgid;
	e->pid = ns_pid(t->thread_pid);
	e->ppid = ns_pid(t->real_parent->thread_pid);
	e->uid = t->cred->uid.val;
	e->pid_ns = t->nsproxy->pid_ns_for_children->ns.inum;
	e->mnt_ns = t->nsproxy->mnt_ns->ns.inum;
	e->rule_id = d->rule;
	e->retval = d->deny ? -deny_errno : 0;
	e->hook = hook;
	e->verdict = d->verdict;
	e->suppressed = suppressed;
	e->arg = 0;
	e->family = 0;
	e->sock_type = 0;
	e->protocol = 0;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->tty[0] = 0;
	struct tty_struct *tty = BPF_CORE_READ(t, signal, tty);
	if (tty)
		bpf_probe_read_kernel_str(e->tty, sizeof(e->tty), tty->name);
	e->resource[0] = 0;
	e->exe[0] = 0;
	e->parent_exe[0] = 0;
	return e;
}

static __always_inline void copy_exe(char *dst, struct exe_path *e)
{
	if (e)
		bpf_probe_read_kernel_str(dst, PATH_LEN, e->path);
}


/* ---- the name gate (enforcer.h, struct name_filter) ---------------------- */

struct gate_ctx {
	struct name_filter *f;
	__u64 d;        /* struct dentry * */
	__u64 mnt;      /* struct mount * */
	__u64 mroot;    /* its root dentry */
	__u64 root_d;   /* the task's root */
	__u64 root_mnt; /* its struct vfsmount * */
	__u32 category;
	__u32 done;     /* 1: the walk reached the root; 2: a name hit */
	__u32 last;     /* the next component tested is the path's last */
	__u32 pad;
};

/* filter_has tests one bit of the filter. */
static __always_inline int filter_has(struct name_filter *f, __u32 bit)
{
	return (f->bits[masked(bit >> 6, NAME_FILTER_WORDS - 1)] >> (bit & 63)) & 1;
}

/* suffix_hit tests the last bytes of the path's last component (its
 * name, len bytes, the first 8 in head) against the patterns' literal
 * suffixes (enforcer.h), of the lengths the filter holds: testing every
 * length from 1 to 8 cost open/close about 10 points in the benchmark. */
static __always_inline int suffix_hit(struct name_filter *f, __u64 name, __u32 len, __u64 head, __u32 category)
{
	__u32 lens = f->suffix_lens;
	if (!lens)
		return 0;
	__u64 t = head;
	__u32 n = len;
	if (len > 8) {
		if (bpf_probe_read_kernel(&t, 8, (void *)(name + len - 8)))
			return 1;
		n = 8;
	}
#pragma unroll
	for (__u32 k = 1; k <= 4; k++) {
		if (((lens >> k) & 1) && k <= n) {
			__u64 sfx = (t >> (8 * (n - k))) & ((1ULL << (8 * k)) - 1);
			if (filter_has(f, name_bit(sfx, k, category + 4)))
				return 1;
		}
	}
	return 0;
}

/* name_hit tests one component (its name at name, len bytes, the first
 * 8 in head, zero padded) against the filter: its name, and when it is
 * the path's last its suffixes. */
static __always_inline int name_hit(struct name_filter *f, __u64 name, __u32 len, __u64 head, __u32 category,
				    __u32 last)
{
	return filter_has(f, name_bit(head, len, category)) ||
	       (last && suffix_hit(f, name, len, head, category));
}

/* gate_step takes one step of build_path's walk (up_step: the same stops,
 * the same mount crossings, so it sees exactly the components the path
 * will hold) and tests the component's name against the filter. Two
 * reads per component: its parent and name (one read, they are adjacent
 * in struct dentry on every kernel this runs on; two otherwise), and the
 * name's first 8 bytes. gate_direct_step takes the walk's first steps,
 * inside the object's own mount; this one goes on from that mount's root. */
static long gate_step(__u32 i, struct gate_ctx *c)
{
	struct name_filter *f = c->f;
	if (!f)
		return 1;
	__u64 vm = c->mnt + bpf_core_field_offset(struct mount, mnt);
	if (c->d == c->root_d && vm == c->root_mnt) {
		c->done = 1;
		return 1;
	}
	if (c->d == c->mroot) {
		struct mount *m = (struct mount *)c->mnt;
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (!parent || parent == m) { /* the namespace's root */
			c->done = 1;
			return 1;
		}
		c->d = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)parent;
		c->mroot = (__u64)BPF_CORE_READ(parent, mnt.mnt_root);
		return 0;
	}
	struct dentry_step dn = {};
	long err = read_dentry_step(&dn, c->d);
	__u64 head = 0;
	if (!err)
		err = bpf_probe_read_kernel(&head, 8, (void *)dn.name);
	if (err) { /* not read: the path decides */
		c->done = 2;
		return 1;
	}
	if (!dn.parent || dn.parent == c->d) {
		c->done = 1;
		return 1;
	}
	__u32 len = dn.hash_len >> 32;
	if (len < 8)
		head &= (1ULL << (len * 8)) - 1;
	if (name_hit(f, dn.name, len, head, c->category, c->last)) {
		c->done = 2;
		return 1;
	}
	c->last = 0;
	c->d = dn.parent;
	return 0;
}

/* The walk inside the object's own mount, where the dentries are the
 * hook's BTF pointers: their parents and names are direct loads, not
 * bpf_probe_read_kernel calls (which cost most of gate_step), and an
 * inline name (most are) is read from the dentry itself. The mount's
 * struct mount is not reachable so (6.1's verifier cannot cast a
 * vfsmount to it), so at the mount's root gate_step takes over. */
struct gate_direct_ctx {
	struct name_filter *f;
	struct dentry *d;
	struct dentry *mroot;  /* the mount's root */
	struct dentry *root_d; /* the task's root */
	__u32 root_mnt;        /* the mount is the task's root's */
	__u32 category;
	__u32 done;            /* as gate_ctx's; 3: at the mount's root */
	__u32 last;
};

static long gate_direct_step(__u32 i, struct gate_direct_ctx *c)
{
	struct name_filter *f = c->f;
	struct dentry *d = c->d;
	if (!f || !d)
		return 1;
	if (d == c->root_d && c->root_mnt) {
		c->done = 1;
		return 1;
	}
	if (d == c->mroot) {
		c->done = 3;
		return 1;
	}
	struct dentry *parent = d->d_parent;
	if (!parent || parent == d) {
		c->done = 1;
		return 1;
	}
	__u32 len = d->d_name.len;
	__u64 name = (__u64)d->d_name.name;
	const unsigned char *in = dentry_inline_name(d);
	__u64 inl = (__u64)in;
	__u64 head = *(__u64 *)in;
	if (name != inl && bpf_probe_read_kernel(&head, 8, (void *)name)) {
		c->done = 2;
		return 1;
	}
	if (len < 8)
		head &= (1ULL << (len * 8)) - 1;
	if (name_hit(f, name, len, head, c->category, c->last)) {
		c->done = 2;
		return 1;
	}
	c->last = 0;
	c->d = parent;
	return 0;
}

/* ---- the name memo ----------------------------------------------------------
 *
 * The name gate's answer "no component of this path has a name the filter
 * holds" is a function of the names of the dentry chain from the object to
 * the task's root, of the mounts it crosses, of that root and of the
 * filter (the Apply). may_match remembers the answer per object, so that
 * an object opened again costs one lookup instead of the walk: an open of
 * a file no rule concerns is what most opens are. An answer stands only
 * while all of its inputs stand, and each input is in its signature:
 *
 * - the names: the kernel's rename_lock sequence, which every change of a
 *   dentry's name or parent (d_move, d_exchange, d_splice_alias's moves)
 *   advances, and which is odd while one is under way;
 * - the mounts: mount_lock's sequence, advanced by every change of the
 *   mount tree (mount, bind, move, umount, pivot_root);
 * - the object: its dentry and mount (a hard link is another dentry, a
 *   bind mount another mount), the task's root (a chroot), the Apply.
 *
 * Both sequences are read before the walk and again after it, and an
 * answer is kept only when neither moved and neither was odd, as d_path's
 * own seqlock retry does. A dentry freed and another allocated at the
 * same address for the same inode would match the signature: every
 * binding of a dentry to an inode passes the d_instantiate hook first,
 * which forgets that inode's answers (forget_names). The signature is
 * one 64-bit word per category, written and read whole, so an entry
 * being rewritten on another CPU is never read half old, half new; an
 * answer that matches is one computed from the same inputs (or a 64-bit
 * collision of a mix of kernel addresses no user sees).
 *
 * The sequences are 32-bit counters that wrap: after 2^31 renames (or
 * mount changes) a sequence reads what it read before, and an entry that
 * old would match again though the names changed in between. So an
 * answer also carries the time in units of 1024 jiffies (1 to 4 s): it
 * holds at most that long, and then costs one walk to renew, while
 * wrapping a sequence takes billions of renames.
 *
 * The sequences' addresses are constants the loader sets from
 * /proc/kallsyms (kallsyms.go), not __ksym externs: with kptr_restrict 2
 * the kernel shows every address as 0, and a loader that resolves ksyms
 * refuses the whole object then, weak or not. An address of 0 turns the
 * memo off (the verifier drops its code) and nothing else. x86 only: its
 * loads are not reordered with other loads, which the walk between the
 * two reads relies on. */
volatile const __u64 rename_lock_addr = 0;
volatile const __u64 mount_lock_addr = 0;

struct name_memo {
	__u64 sig[2]; /* by category: CAT_PROCESS, CAT_FILE */
};

/* Keyed by the object's dentry's inode (struct inode *), so that
 * forget_names finds it; bounded: an entry evicted is a walk, not a
 * wrong answer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u64);
	__type(value, struct name_memo);
} name_memos SEC(".maps");

/* Kernels from 6.2 on have bpf_rdonly_cast, which turns the sequences'
 * addresses into typed pointers: two plain loads instead of two
 * bpf_probe_read_kernel calls, which are ~100 instructions each and a
 * third of the memo's hit (docs/benchmarks.md, "The name memo's reads").
 * On older kernels the loader poisons the call and ksym_exists is 0,
 * so the verifier never walks it. Both locks are seqlock_t, whose first
 * member is the struct seqcount read here. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define ksym_exists(sym) (!!(sym))

/* names_seq reads both sequences into *seq; 0 when either is unreadable
 * or odd (a change under way): then nothing is remembered. */
static __always_inline int names_seq(__u64 *seq)
{
	__u32 r = 0, m = 0;
	__u64 ra = rename_lock_addr, ma = mount_lock_addr;
	if (!ra || !ma)
		return 0;
	if (ksym_exists(bpf_rdonly_cast)) {
		__u32 id = bpf_core_type_id_kernel(struct seqcount);
		struct seqcount *rs = bpf_rdonly_cast((void *)ra, id);
		struct seqcount *ms = bpf_rdonly_cast((void *)ma, id);
		/* volatile: read here, between the walk's loads as the helper
		 * calls were, never merged with another read */
		r = *(volatile __u32 *)&rs->sequence;
		m = *(volatile __u32 *)&ms->sequence;
	} else if (bpf_probe_read_kernel(&r, 4, (void *)ra) || bpf_probe_read_kernel(&m, 4, (void *)ma)) {
		return 0;
	}
	if ((r | m) & 1)
		return 0;
	*seq = (__u64)r << 32 | m;
	return 1;
}

static __always_inline __u64 memo_mix(__u64 h, __u64 v)
{
	h = (h ^ v) * NAME_MUL1;
	return h ^ (h >> 31);
}

/* launder returns a kernel address as a plain number: the verifier allows
 * no arithmetic on pointers, and a pointer stored into a map value (the
 * per-CPU scratch area) and read back is a number. volatile keeps clang
 * from handing the register back instead. */
static __always_inline __u64 launder(struct scratch *s, const void *p)
{
	*(volatile __u64 *)&s->word = (__u64)p;
	return *(volatile __u64 *)&s->word;
}

static __always_inline __u64 memo_sig(struct scratch *s, __u64 seq, struct dentry *d, struct vfsmount *mnt,
				      struct fs_struct *fs, __u32 apply, __u32 category)
{
	__u64 h = memo_mix(NAME_MUL2, seq);
	h = memo_mix(h, bpf_jiffies64() >> 10);
	h = memo_mix(h, launder(s, d));
	h = memo_mix(h, launder(s, mnt));
	h = memo_mix(h, launder(s, fs->root.dentry));
	h = memo_mix(h, launder(s, fs->root.mnt));
	h = memo_mix(h, (__u64)apply << 32 | category);
	return h | 1; /* never 0, the value of no answer */
}

/* remember keeps sig as the answer for key's category, when the
 * sequences still read seq (the walk saw one state of the names). */
static __always_inline void remember(__u64 key, __u32 category, __u64 seq, __u64 sig)
{
	__u64 now;
	if (!names_seq(&now) || now != seq)
		return;
	struct name_memo *m = bpf_map_lookup_elem(&name_memos, &key);
	if (m) {
		m->sig[masked(category, 1)] = sig;
	} else {
		struct name_memo v = {};
		v.sig[masked(category, 1)] = sig;
		bpf_map_update_elem(&name_memos, &key, &v, BPF_ANY);
	}
	count(C_NAME_MEMO);
}

/* A dentry bound to an inode: its answers go (see the memo's comment).
 * Pipes, sockets and anonymous inodes (every socket(2) binds one) have
 * made-up names (d_dname), which may_match never remembers. */
SEC("lsm/d_instantiate")
int BPF_PROG(forget_names, struct dentry *dentry, struct inode *inode)
{
	if (!inode || !dentry)
		return 0;
	const struct dentry_operations *ops = dentry->d_op;
	if (ops && ops->d_dname)
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u64 key = launder(s, inode);
	if (bpf_map_lookup_elem(&name_memos, &key))
		bpf_map_delete_elem(&name_memos, &key);
	return 0;
}

/* may_match is 0 when no exact, exec-name, directory or pattern rule of
 * category can match the path of dentry d on mnt (struct vfsmount *):
 * none of its components has a name the filter holds. 1 otherwise, also
 * whenever the category's config does not allow the gate or the walk does
 * not reach the root within build_path's bound. */
static __always_inline int may_match(struct config *cfg, __u32 tag, __u32 category, struct vfsmount *mnt,
				     struct dentry *d)
{
	if (!(cfg->name_gate & (1 << category)))
		return 1;
	/* d_path asks a pseudo file system's d_dname for such a dentry's
	 * path (pipe:[...], /dmabuf:name, ...), not its name */
	const struct dentry_operations *ops = d->d_op;
	if (ops && ops->d_dname)
		return 1;
	__u32 idx = masked(tag >> GEN_SHIFT, 1) * 2 + masked(category, 1);
	struct name_filter *f = bpf_map_lookup_elem(&name_filters, &idx);
	if (!f)
		return 1;
	struct task_struct *t = bpf_get_current_task_btf();
	struct fs_struct *fs = t->fs;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	__u64 key = launder(s, d->d_inode);
	__u64 seq = 0, sig = 0;
	if (key && names_seq(&seq)) {
		sig = memo_sig(s, seq, d, mnt, fs, cfg->apply, category);
		struct name_memo *m = bpf_map_lookup_elem(&name_memos, &key);
		if (m && m->sig[masked(category, 1)] == sig)
			return 0;
	}
	struct dentry *mroot = mnt->mnt_root;
	struct gate_direct_ctx dc = {
		.f = f,
		.d = d,
		.mroot = mroot,
		.root_d = fs->root.dentry,
		.root_mnt = mnt == fs->root.mnt,
		.category = category,
		.last = 1,
	};
	long steps = bpf_loop(2 * MAX_DEPTH, gate_direct_step, &dc, 0);
	if (dc.done != 3 || steps <= 0) {
		if (dc.done != 1)
			return 1;
		if (sig)
			remember(key, category, seq, sig);
		return 0;
	}
	/* the step that stopped at the mount's root is gate_step's first */
	struct gate_ctx c = {
		.f = f,
		.d = (__u64)dc.d,
		.mnt = (__u64)mnt - bpf_core_field_offset(struct mount, mnt),
		.mroot = (__u64)mroot,
		.root_d = (__u64)fs->root.dentry,
		.root_mnt = (__u64)fs->root.mnt,
		.category = category,
		.last = dc.last,
	};
	bpf_loop(2 * MAX_DEPTH + 1 - steps, gate_step, &c, 0);
	if (c.done != 1)
		return 1;
	if (sig)
		remember(key, category, seq, sig);
	return 0;
}

/* tag_may_decide is whether an object may have an inode tag that decides
 * (tagged_decision): then its path is built even when no name matches.
 * The inode storage lookup cost more than the name gate's whole walk, so
 * its number is tested against the tagged inodes' first. */
static __always_inline int tag_may_decide(struct config *cfg, __u32 tag, struct inode *inode)
{
	if (!cfg->epoch || ((tag >> SCOPE_SHIFT) & (MAX_SCOPES - 1)))
		return 0;
	__u32 idx = 4 + masked(tag >> GEN_SHIFT, 1);
	struct name_filter *f = bpf_map_lookup_elem(&name_filters, &idx);
	if (f && !filter_has(f, name_bit(inode->i_ino, 8, 8)))
		return 0;
	return bpf_inode_storage_get(&inode_tags, inode, 0, 0) != NULL;
}

/* ---- hooks ---------------------------------------------------------------- */

static __always_inline int wants(struct config *cfg, __u32 category, __u32 kinds)
{
	__u32 bit = 1 << category;
	return (cfg->kinds & kinds) || (cfg->pattern_cats & bit) || (cfg->allowlist & bit) ||
	       (cfg->has_sources & (bit << 8));
}

#define EXEC_KINDS ((1 << K_EXEC_PATH) | (1 << K_EXEC_NAME) | (1 << K_EXEC_DIR))
#define FILE_KINDS ((1 << K_FILE_PATH) | (1 << K_FILE_DIR))
#define NET_KINDS ((1 << K_NET_TYPE) | (1 << K_NET_PROTO) | (1 << K_NET_ANY))

/* has_sources: low byte = categories with fromSource rules, next byte =
 * categories with a per-source allow-list. */
static __always_inline int needs_source(struct config *cfg, __u32 category)
{
	return cfg->has_sources & ((1 << category) | (1 << (category + 8)));
}

SEC("lsm/bprm_check_security")
int BPF_PROG(enforce_exec, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	__u32 gen;
	struct config *cfg = active_config(&gen);
	if (!cfg || !wants(cfg, CAT_PROCESS, EXEC_KINDS))
		return 0;
	struct file *f = bprm->file;
	if (!may_match(cfg, gen, CAT_PROCESS, f->f_path.mnt, f->f_path.dentry) &&
	    !tag_may_decide(cfg, gen, f->f_inode))
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	long n = bpf_d_path((struct path *)&f->f_path, s->path, PATH_LEN);
	__u32 len = 0;
	if (n > 0)
		len = n - 1;
	else
		count(C_LONG_PATH);

	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct *parent = t->real_parent;
	struct exe_path *pexe = NULL;
	struct src_ref sv = {};
	if (needs_source(cfg, CAT_PROCESS)) {
		pexe = fill_exe_cache(parent, s);
		sv = lookup_source(s, cfg, gen, pexe, 0);
	}
	struct match m = {};
	if (len)
		match_path(s, cfg, gen, CAT_PROCESS, K_EXEC_PATH, K_EXEC_NAME, K_EXEC_DIR, sv.id, len, 0, &m);

	__u32 op = 0;
	if (f->f_inode->i_uid.val == t->cred->fsuid.val)
		op |= OP_OWNER;
	if (has_tty(t))
		op |= OP_TTY;
	struct decision d = decide(&m, op, is_allowlisted(cfg, sv.allowlist, CAT_PROCESS), cfg->posture_block & (1 << CAT_PROCESS));
	if (len)
		d = tagged_decision(d, cfg, gen, f->f_inode, CAT_PROCESS, op, sv.id);
	if (!d.verdict)
		return 0;
	struct event *e = new_event(cfg, &d, H_BPRM_CHECK, EACCES);
	if (e) {
		if (len)
			bpf_probe_read_kernel_str(e->resource, PATH_LEN, s->path);
		bpf_probe_read_kernel_str(e->exe, PATH_LEN, s->path);
		if (!pexe)
			pexe = fill_exe_cache(parent, s);
		copy_exe(e->parent_exe, pexe);
		bpf_ringbuf_submit(e, 0);
	}
	return d.deny ? -EACCES : 0;
}

/* A new image: the task's cached executable path is the old one's, so it
 * is dropped, and filled again from mm->exe_file (the new image) by the
 * first hook that needs it (fill_exe_cache, walk_exe_cache). Resolving it
 * here for every exec cost more than the enforcer's exec decision itself
 * (docs/benchmarks.md), for a path most programs never need. */
SEC("lsm/bprm_committed_creds")
int BPF_PROG(track_exec, struct linux_binprm *bprm)
{
	struct exe_path *e = bpf_task_storage_get(&exe_cache, bpf_get_current_task_btf(), 0, 0);
	if (e)
		e->len = 0;
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(enforce_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	__u32 gen;
	struct config *cfg = active_config(&gen);
	if (!cfg || !wants(cfg, CAT_FILE, FILE_KINDS))
		return 0;
	/* An exec's open of the program (and of its ELF interpreter) is
	 * decided here too, as a read: a file rule that refuses reading a
	 * program refuses running it (decide.Exec). The kernel marks such an
	 * open in f_flags (__FMODE_EXEC), never in f_mode, so the test of
	 * f_mode's FMODE_EXEC that stood here skipped nothing on any kernel. */
	unsigned int fmode = file->f_mode;
	if (!may_match(cfg, gen, CAT_FILE, file->f_path.mnt, file->f_path.dentry) &&
	    !tag_may_decide(cfg, gen, file->f_inode))
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	long n = bpf_d_path((struct path *)&file->f_path, s->path, PATH_LEN);
	if (n <= 0) {
		count(C_LONG_PATH);
		return 0;
	}
	if (s->path[0] != '/') /* pipes, sockets, anonymous inodes */
		return 0;
	__u32 len = n - 1;

	struct task_struct *t = bpf_get_current_task_btf();
	struct exe_path *exe = NULL;
	struct src_ref sv = {};
	if (needs_source(cfg, CAT_FILE)) {
		exe = fill_exe_cache(t, s);
		sv = lookup_source(s, cfg, gen, exe, 1);
	}
	struct inode *inode = file->f_inode;
	int is_dir = (inode->i_mode & S_IFMT) == S_IFDIR;
	struct match m = {};
	match_path(s, cfg, gen, CAT_FILE, K_FILE_PATH, 0, K_FILE_DIR, sv.id, len, is_dir, &m);

	__u32 op = 0;
	if (fmode & FMODE_WRITE)
		op |= OP_WRITE;
	if (inode->i_uid.val == t->cred->fsuid.val)
		op |= OP_OWNER;
	if (has_tty(t))
		op |= OP_TTY;
	struct decision d = decide(&m, op, is_allowlisted(cfg, sv.allowlist, CAT_FILE), cfg->posture_block & (1 << CAT_FILE));
	d = tagged_decision(d, cfg, gen, inode, CAT_FILE, op, sv.id);
	if (!d.verdict)
		return 0;
	struct event *e = new_event(cfg, &d, H_FILE_OPEN, EACCES);
	if (e) {
		e->arg = fmode;
		bpf_probe_read_kernel_str(e->resource, PATH_LEN, s->path);
		if (!exe)
			exe = fill_exe_cache(t, s);
		copy_exe(e->exe, exe);
		copy_exe(e->parent_exe, fill_exe_cache(t->real_parent, s));
		bpf_ringbuf_submit(e, 0);
	}
	return d.deny ? -EACCES : 0;
}

/* ---- namespace operations ------------------------------------------------------ */

/* The path hooks (unlink, rename, link, chmod, ...) may not call
 * bpf_d_path on the kernels this runs on (it is allowed only in the
 * sleepable hook set, which holds none of them), and most get a directory
 * and a dentry rather than a path. build_path therefore walks the dentry
 * chain up to the task's root as d_path does, crossing mount points, and
 * writes the path into s->path. */
struct up_ctx {
	struct scratch *s;
	__u64 d;         /* struct dentry * */
	__u64 mnt;       /* struct mount * */
	__u64 root_d;    /* the task's root */
	__u64 root_mnt;  /* its struct vfsmount * */
	__u32 overflow;
	__u32 pad;
};

static long up_step(__u32 i, struct up_ctx *c)
{
	struct scratch *s = c->s;
	if (!s)
		return 1;
	struct dentry *d = (struct dentry *)c->d;
	struct mount *m = (struct mount *)c->mnt;
	__u64 vm = c->mnt + bpf_core_field_offset(struct mount, mnt);
	if (c->d == c->root_d && vm == c->root_mnt)
		return 1;
	struct dentry *mroot = BPF_CORE_READ((struct vfsmount *)vm, mnt_root);
	if (d == mroot) {
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (!parent || parent == m) /* the namespace's root */
			return 1;
		c->d = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)parent;
		return 0;
	}
	struct dentry *p = BPF_CORE_READ(d, d_parent);
	if (!p || p == d)
		return 1;
	/* The count is in the scratch area, not in c: an exact count on the
	 * stack made 6.12's verifier follow the rest of build_path once for
	 * each of its 129 values (300k of a path hook's 400k instructions). */
	__u32 n = s->ncomp;
	if (n >= MAX_DEPTH) {
		c->overflow = 1;
		return 1;
	}
	s->comp[masked(n, MAX_DEPTH - 1)] = c->d;
	s->ncomp = n + 1;
	c->d = (__u64)p;
	return 0;
}

struct down_ctx {
	struct scratch *s;
	__u32 n;
	__u32 len;
	__u32 overflow;
};

static long down_step(__u32 i, struct down_ctx *c)
{
	struct scratch *s = c->s;
	if (!s || i >= c->n)
		return 1;
	struct dentry *d = (struct dentry *)s->comp[masked(c->n - 1 - i, MAX_DEPTH - 1)];
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	if (c->len >= PATH_LEN - 1) {
		c->overflow = 1;
		return 1;
	}
	s->path[masked(c->len, PATH_MASK)] = '/';
	c->len++;
	/* path is followed by tmp in struct scratch: a read of PATH_LEN bytes
	 * from any offset below PATH_LEN stays inside the map value */
	long r = bpf_probe_read_kernel_str(s->path + masked(c->len, PATH_MASK), PATH_LEN, name);
	if (r <= 1) {
		c->overflow = 1;
		return 1;
	}
	c->len += r - 1;
	return 0;
}

/* build_path writes the path of dentry d on mount mnt (struct vfsmount *),
 * as the current task sees it, into s->path and returns its length; 0 when
 * it is longer than PATH_LEN - 1 bytes or cannot be read. A global
 * function, verified once: the kernel pointers are plain numbers here,
 * only ever read through bpf_probe_read_kernel. */
__noinline __u32 build_path(struct scratch *s, __u64 mnt, __u64 d)
{
	if (!s || !mnt || !d)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct up_ctx u = {
		.s = s,
		.d = d,
		.mnt = mnt - bpf_core_field_offset(struct mount, mnt),
		.root_d = (__u64)BPF_CORE_READ(t, fs, root.dentry),
		.root_mnt = (__u64)BPF_CORE_READ(t, fs, root.mnt),
	};
	s->ncomp = 0;
	bpf_loop(2 * MAX_DEPTH, up_step, &u, 0);
	if (u.overflow)
		return 0;
	__u32 n = s->ncomp;
	if (n == 0) {
		s->path[0] = '/';
		s->path[1] = 0;
		return 1;
	}
	struct down_ctx c = {.s = s, .n = n};
	bpf_loop(MAX_DEPTH, down_step, &c, 0);
	if (c.overflow || c.len >= PATH_LEN)
		return 0;
	s->path[masked(c.len, PATH_MASK)] = 0;
	return c.len;
}

/* walk_exe_cache is fill_exe_cache for hooks that may not call bpf_d_path:
 * the executable's path comes from build_path (s->path is overwritten). */
static __always_inline struct exe_path *walk_exe_cache(struct task_struct *task, struct scratch *s)
{
	struct exe_path *e = bpf_task_storage_get(&exe_cache, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!e)
		return NULL;
	if (e->len)
		return e;
	__u64 mnt = (__u64)BPF_CORE_READ(task, mm, exe_file, f_path.mnt);
	__u64 d = (__u64)BPF_CORE_READ(task, mm, exe_file, f_path.dentry);
	__u32 n = build_path(s, mnt, d);
	if (!n)
		return NULL;
	bpf_probe_read_kernel_str(s->tmp, PATH_LEN, s->path);
	__builtin_memset(e->path, 0, PATH_LEN);
	bpf_probe_read_kernel_str(e->path, PATH_LEN, s->tmp);
	e->hash = hash_tmp(s, n);
	e->len = n;
	e->src_apply = 0;
	return e;
}

/* What a path hook checks on one path besides the file rules. */
#define SIDE_PROCESS 0x1   /* process Block rules: no new name for a blocked program */
#define SIDE_ANCESTORS 0x2 /* a directory: the rules of protected paths below it */

#define PATH_KINDS (FILE_KINDS | (1 << K_ANCESTOR))

static __always_inline __u64 pack_src(struct src_ref sv)
{
	return (__u64)sv.allowlist << 32 | sv.id;
}

/* decide_file is file_decision for the path hooks on the name
 * prepare_side left in the scratch area, with is_dir in bit 0 of how and
 * ancestors in bit 1. The path hooks' steps are global functions the hook
 * calls one after the other: each is verified once, its branches do not
 * multiply the caller's states, and the stacks of two never add up. */
__noinline __u64 decide_file(__u32 how)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 tag = s->side.tag, len = s->side.len;
	struct config *cfg = config_of(tag);
	if (!cfg || !len || len >= PATH_LEN)
		return 0;
	struct match m = {};
	file_match(s, cfg, tag, (__u32)s->side.src, len, how & 1, how & 2, &m);
	struct src_ref sv = {.id = (__u32)s->side.src, .allowlist = s->side.src >> 32};
	return pack_decision(file_verdict(cfg, &m, s->side.op, sv));
}

/* decide_exec decides, for a link or rename of s->path, whether a process
 * Block rule covers it as a program: only explicit Block rules, since an
 * allow-list's posture is about running programs, not about naming them. */
__noinline __u64 decide_exec(void)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 tag = s->side.tag, len = s->side.len;
	struct config *cfg = config_of(tag);
	if (!cfg || !len || len >= PATH_LEN || !(cfg->kinds & EXEC_KINDS))
		return 0;
	struct match pm = {};
	match_path(s, cfg, tag, CAT_PROCESS, K_EXEC_PATH, K_EXEC_NAME, K_EXEC_DIR, (__u32)s->side.src, len, 0, &pm);
	struct decision d = decide(&pm, s->side.op, 0, 0);
	if (d.verdict != V_BLOCK)
		return 0;
	return pack_decision(d);
}

/* report_side sends the alert of a path hook's decision about s->path. A
 * global function, so its stack is not added to the decision's. */
__noinline int report_side(__u64 packed, __u32 hook)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct config *cfg = config_of(s->side.tag);
	if (!cfg)
		return 0;
	struct decision dec = unpack_decision(packed);
	struct event *e = new_event(cfg, &dec, hook, EACCES);
	if (!e)
		return 0;
	bpf_probe_read_kernel_str(e->resource, PATH_LEN, s->path);
	struct task_struct *t = bpf_get_current_task_btf();
	copy_exe(e->exe, walk_exe_cache(t, s));
	copy_exe(e->parent_exe, walk_exe_cache(t->real_parent, s));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

struct side_args {
	__u64 mnt;    /* struct vfsmount * */
	__u64 dentry; /* struct dentry *, the object or the new name */
	__u32 side;   /* SIDE_* */
	__u32 pad;
};

/* prepare_side builds the path of one name of a path hook (which may not
 * exist yet) and the properties its decisions need, into s->side; it
 * returns the path's length, 0 when there is nothing to decide. Every
 * such operation changes the file system, so it is decided as a write:
 * readOnly rules refuse it. */
__noinline __u32 prepare_side(struct side_args *a)
{
	if (!a)
		return 0;
	__u32 gen;
	struct config *cfg = active_config(&gen);
	if (!cfg)
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 side = a->side;
	struct dentry *d = (struct dentry *)a->dentry;
	struct task_struct *t = bpf_get_current_task_btf();
	struct exe_path *exe = NULL;
	struct src_ref sv = {};
	if (needs_source(cfg, CAT_FILE) || ((side & SIDE_PROCESS) && needs_source(cfg, CAT_PROCESS))) {
		exe = walk_exe_cache(t, s);
		sv = lookup_source(s, cfg, gen, exe, 1);
	}
	__u32 len = build_path(s, a->mnt, a->dentry);
	if (!len) {
		count(C_LONG_PATH);
		return 0;
	}
	/* the owner of the object, or of the directory a new name goes in */
	struct inode *ino = BPF_CORE_READ(d, d_inode);
	if (!ino)
		ino = BPF_CORE_READ(d, d_parent, d_inode);
	__u32 op = OP_WRITE;
	if (ino && BPF_CORE_READ(ino, i_uid.val) == t->cred->fsuid.val)
		op |= OP_OWNER;
	if (has_tty(t))
		op |= OP_TTY;
	s->side.tag = gen;
	s->side.len = len;
	s->side.op = op;
	s->side.src = pack_src(sv);
	return len;
}

static __always_inline int dentry_is_dir(struct dentry *d)
{
	struct inode *ino = BPF_CORE_READ(d, d_inode);
	return ino && (BPF_CORE_READ(ino, i_mode) & S_IFMT) == S_IFDIR;
}

/* path_config is the config a path hook decides with, NULL when no rule
 * could apply; with process, process rules count too. */
static __always_inline struct config *path_config(__u32 *gen, int process)
{
	struct config *cfg = active_config(gen);
	if (!cfg)
		return NULL;
	if (wants(cfg, CAT_FILE, PATH_KINDS) || (process && (cfg->kinds & EXEC_KINDS)))
		return cfg;
	return NULL;
}

/* one_side decides an operation of hook on one name: the object d on
 * mount mnt, or a new name. */
static __always_inline int one_side(__u32 hook, struct vfsmount *mnt, struct dentry *d, int is_dir, __u32 side)
{
	struct side_args a = {.mnt = (__u64)mnt, .dentry = (__u64)d, .side = side};
	if (!prepare_side(&a))
		return 0;
	__u32 how = (is_dir ? 1 : 0) | ((side & SIDE_ANCESTORS) ? 2 : 0);
	__u64 packed = decide_file(how);
	if (!((packed >> 8) & 1) && (side & SIDE_PROCESS)) {
		__u64 pd = decide_exec();
		if (pd)
			packed = pd;
	}
	if (!(packed & 0xff))
		return 0;
	report_side(packed, hook);
	return (packed >> 8) & 1 ? -EACCES : 0;
}

/* dir_side: a name in directory dir. */
static __always_inline int dir_side(__u32 hook, const struct path *dir, struct dentry *d, int is_dir)
{
	__u32 gen;
	if (!path_config(&gen, 0))
		return 0;
	return one_side(hook, dir->mnt, d, is_dir, 0);
}

/* whole_side: an existing object named by a path. */
static __always_inline int whole_side(__u32 hook, const struct path *path)
{
	__u32 gen;
	if (!path_config(&gen, 0))
		return 0;
	struct dentry *d = path->dentry;
	return one_side(hook, path->mnt, d, dentry_is_dir(d), 0);
}

SEC("lsm/path_unlink")
int BPF_PROG(enforce_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return dir_side(H_PATH_UNLINK, dir, dentry, 0);
}

SEC("lsm/path_rmdir")
int BPF_PROG(enforce_path_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return dir_side(H_PATH_RMDIR, dir, dentry, 1);
}

SEC("lsm/path_mkdir")
int BPF_PROG(enforce_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return dir_side(H_PATH_MKDIR, dir, dentry, 1);
}

/* Also every creation of a regular file (open with O_CREAT). */
SEC("lsm/path_mknod")
int BPF_PROG(enforce_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
	     int ret)
{
	if (ret)
		return ret;
	return dir_side(H_PATH_MKNOD, dir, dentry, 0);
}

SEC("lsm/path_symlink")
int BPF_PROG(enforce_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (ret)
		return ret;
	return dir_side(H_PATH_SYMLINK, dir, dentry, 0);
}

/* A hard link gives its source a new name, which no rule may cover: a
 * protected source (a file rule, or a process Block rule on a program) is
 * refused, as is a new name in a protected place. Both names are on the
 * same mount. */
SEC("lsm/path_link")
int BPF_PROG(enforce_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	__u32 gen;
	if (!path_config(&gen, 1))
		return 0;
	struct vfsmount *mnt = new_dir->mnt;
	int r = one_side(H_PATH_LINK, mnt, old_dentry, 0, SIDE_PROCESS);
	if (r)
		return r;
	return one_side(H_PATH_LINK, mnt, new_dentry, 0, 0);
}

/* A rename changes both names: the source (and, for a directory, every
 * protected path below it) and the target (which it may replace, or, with
 * RENAME_EXCHANGE, move to the source's place). Both are decided alike. */
SEC("lsm/path_rename")
int BPF_PROG(enforce_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	__u32 gen;
	if (!path_config(&gen, 1))
		return 0;
	int is_dir = dentry_is_dir(old_dentry);
	int r = one_side(H_PATH_RENAME, old_dir->mnt, old_dentry, is_dir, SIDE_PROCESS | SIDE_ANCESTORS);
	if (r)
		return r;
	return one_side(H_PATH_RENAME, new_dir->mnt, new_dentry, is_dir, SIDE_PROCESS | SIDE_ANCESTORS);
}

SEC("lsm/path_chmod")
int BPF_PROG(enforce_path_chmod, const struct path *path, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return whole_side(H_PATH_CHMOD, path);
}

SEC("lsm/path_chown")
int BPF_PROG(enforce_path_chown, const struct path *path, __u64 uid, __u64 gid, int ret)
{
	if (ret)
		return ret;
	return whole_side(H_PATH_CHOWN, path);
}

SEC("lsm/path_truncate")
int BPF_PROG(enforce_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return whole_side(H_PATH_TRUNCATE, path);
}

/* ---- network ---------------------------------------------------------------- */

static __always_inline void net_lookup(struct match *m, __u32 kind, __u32 src, __u32 value)
{
	struct net_key k = {.kind = kind, .src = src, .value = value};
	merge(m, bpf_map_lookup_elem(&net_rules, &k));
}

/* net_lookup_if is net_lookup of key kind k (tag g) for source src (0:
 * every task's rules), skipped when the config has no keys of that kind
 * for sources (kinds) or for every task (global_kinds). */
static __always_inline void net_lookup_if(struct config *cfg, struct match *m, __u32 g, __u32 k, __u32 src,
					  __u32 value)
{
	if (((src ? cfg->kinds : cfg->global_kinds) >> k) & 1)
		net_lookup(m, g | k, src, value);
}

static __always_inline int enforce_socket(__u32 hook, int family, int type, int protocol)
{
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u32 gen;
	struct config *cfg = active_config(&gen);
	if (!cfg || !wants(cfg, CAT_NETWORK, NET_KINDS))
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	protocol = implied_protocol(type, protocol);

	struct task_struct *t = bpf_get_current_task_btf();
	struct exe_path *exe = NULL;
	struct src_ref sv = {};
	if (needs_source(cfg, CAT_NETWORK)) {
		exe = fill_exe_cache(t, s);
		sv = lookup_source(s, cfg, gen, exe, 1);
	}
	__u32 src = sv.id;
	__u32 g = gen; /* the tag */
	struct match m = {};
	if (src) {
		net_lookup_if(cfg, &m, g, K_NET_TYPE, src, type);
		net_lookup_if(cfg, &m, g, K_NET_PROTO, src, protocol);
		net_lookup_if(cfg, &m, g, K_NET_ANY, src, 0);
	}
	net_lookup_if(cfg, &m, g, K_NET_TYPE, 0, type);
	net_lookup_if(cfg, &m, g, K_NET_PROTO, 0, protocol);
	net_lookup_if(cfg, &m, g, K_NET_ANY, 0, 0);

	__u32 op = has_tty(t) ? OP_TTY : 0;
	struct decision d = decide(&m, op, is_allowlisted(cfg, sv.allowlist, CAT_NETWORK), cfg->posture_block & (1 << CAT_NETWORK));
	if (!d.verdict)
		return 0;
	struct event *e = new_event(cfg, &d, hook, EACCES);
	if (e) {
		e->family = family;
		e->sock_type = type;
		e->protocol = protocol;
		if (!exe)
			exe = fill_exe_cache(t, s);
		copy_exe(e->exe, exe);
		copy_exe(e->parent_exe, fill_exe_cache(t->real_parent, s));
		bpf_ringbuf_submit(e, 0);
	}
	return d.deny ? -EACCES : 0;
}

SEC("lsm/socket_create")
int BPF_PROG(enforce_socket_create, int family, int type, int protocol, int kern, int ret)
{
	if (ret || kern)
		return ret;
	return enforce_socket(H_SOCKET_CREATE, family, type, protocol);
}

static __always_inline int enforce_sock(__u32 hook, struct socket *sock)
{
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	return enforce_socket(hook, sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol);
}

SEC("lsm/socket_connect")
int BPF_PROG(enforce_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return enforce_sock(H_SOCKET_CONNECT, sock);
}

SEC("lsm/socket_bind")
int BPF_PROG(enforce_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return enforce_sock(H_SOCKET_BIND, sock);
}

SEC("lsm/socket_accept")
int BPF_PROG(enforce_socket_accept, struct socket *sock, struct socket *newsock, int ret)
{
	if (ret)
		return ret;
	return enforce_sock(H_SOCKET_ACCEPT, sock);
}

/* ---- capabilities ------------------------------------------------------------ */

/* enforce_cap decides a capability use. It runs in hooks that may not call
 * bpf_d_path, so the executable's path comes from build_path. */
static __always_inline int enforce_cap(__u32 hook, int cap, int report, __u32 arg)
{
	if (cap < 0 || cap > 63)
		return 0;
	__u32 zero = 0;
	__u64 *any = bpf_map_lookup_elem(&caps_any, &zero);
	if (any && !(*any & (1ULL << cap)))
		return 0;
	__u32 gen;
	struct config *cfg = active_config(&gen);
	if (!cfg)
		return 0;
	__u32 bit = 1 << CAT_CAPS;
	if (!(cfg->caps & (1ULL << cap)) && !(cfg->allowlist & bit) && !(cfg->has_sources & (bit << 8)))
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct exe_path *exe = NULL;
	struct src_ref sv = {};
	if (needs_source(cfg, CAT_CAPS)) {
		exe = walk_exe_cache(t, s);
		sv = lookup_source(s, cfg, gen, exe, 1);
	}
	__u32 g = gen; /* the tag */
	struct match m = {};
	if (sv.id)
		net_lookup_if(cfg, &m, g, K_CAP, sv.id, cap);
	net_lookup_if(cfg, &m, g, K_CAP, 0, cap);
	__u32 op = has_tty(t) ? OP_TTY : 0;
	struct decision d = decide(&m, op, is_allowlisted(cfg, sv.allowlist, CAT_CAPS), cfg->posture_block & bit);
	if (!d.verdict)
		return 0;
	if (report) {
		struct event *e = new_event(cfg, &d, hook, EACCES);
		if (e) {
			e->arg = hook == H_CAPABLE ? (__u32)cap : arg;
			if (!exe)
				exe = walk_exe_cache(t, s);
			copy_exe(e->exe, exe);
			copy_exe(e->parent_exe, walk_exe_cache(t->real_parent, s));
			bpf_ringbuf_submit(e, 0);
		}
	}
	return d.deny ? -EACCES : 0;
}

SEC("lsm/capable")
int BPF_PROG(enforce_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts, int ret)
{
	if (ret)
		return ret;
	return enforce_cap(H_CAPABLE, cap, !(opts & CAP_OPT_NOAUDIT), 0);
}

/* setuid/setgid are decided by the setuid/setgid capability rules; the
 * capable hook usually decides first, this covers changes that need no
 * capability check and reports them as Syscall events. */
SEC("lsm/task_fix_setuid")
int BPF_PROG(enforce_setuid, struct cred *new, const struct cred *old, int flags, int ret)
{
	if (ret)
		return ret;
	return enforce_cap(H_TASK_FIX_SETUID, CAP_SETUID, 1, new->uid.val);
}

SEC("lsm/task_fix_setgid")
int BPF_PROG(enforce_setgid, struct cred *new, const struct cred *old, int flags, int ret)
{
	if (ret)
		return ret;
	return enforce_cap(H_TASK_FIX_SETGID, CAP_SETGID, 1, new->gid.val);
}
