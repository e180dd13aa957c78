/* Shared layout of the BPF-LSM enforcer's maps and events. The Go side
 * (bpflsm) uses the types and the enums' constants bpf2go generates from
 * it (gen.go), so each number is written here only.
 */
#ifndef BPFLSM_ENFORCER_H
#define BPFLSM_ENFORCER_H

#include "kubearmor.h"

enum layout {
	/* A path key holds up to 255 bytes and the terminating NUL. */
	PATH_LEN = 256,

	/* Glob patterns are compiled by the Go side into tokens. */
	PAT_TOKENS = 128,
	PAT_CLASSES = 8,
	MAX_PATTERNS = 256,
	GLOB_STEPS = 1 << 16,

	/* Rule generations: every key carries one, the active one is in
	 * `active`. Apply writes the inactive generation, flips, then deletes
	 * the old one. */
	GEN_SHIFT = 24,

	/* Rule scopes: 0 is the host, 1..MAX_SCOPES-2 are sets of container
	 * policies, SCOPE_NONE is a known container no policy selects (no
	 * rules, not even the host's). A key's kind and a source or pattern
	 * key's gen hold the tag gen << GEN_SHIFT | scope << SCOPE_SHIFT. */
	SCOPE_SHIFT = 8,
	MAX_SCOPES = 1024,
	SCOPE_NONE = MAX_SCOPES - 1,

	/* The name filter (struct name_filter): one bit per name hash. */
	NAME_FILTER_WORDS = 1024,
};
#define PATH_MASK (PATH_LEN - 1)

/* How a task is found to be in a container: by its cgroup id, or (for a
 * container whose cgroup is unknown) by its pid and mount namespaces. */
enum scope_by {
	SCOPE_BY_CGROUP = 1,
	SCOPE_BY_NS = 2,
};

struct scope_key {
	__u32 gen;
	__u32 by; /* enum scope_by */
	__u64 id; /* cgroup id, or pid_ns << 32 | mnt_ns */
};

/* Key kinds (low bits of key.kind). */
enum key_kind {
	K_EXEC_PATH = 1,
	K_EXEC_NAME = 2,
	K_EXEC_DIR = 3,
	K_FILE_PATH = 4,
	K_FILE_DIR = 5,
	K_NET_TYPE = 6,
	K_NET_PROTO = 7,
	K_NET_ANY = 8,
	K_CAP = 9,
	/* A directory above a protected path (a file or process rule's path):
	 * renaming it would move the protected path out from under its rule.
	 * The value holds the Block and Audit rules below it. */
	K_ANCESTOR = 10,
};

/* Rule flags. */
enum rule_flag {
	F_OWNER = 0x1,
	F_READONLY = 0x2,
	F_RECURSIVE = 0x4,
	F_TTY = 0x8,
};

/* Categories, also the bit positions of allow-list masks. */
enum category {
	CAT_PROCESS = 0,
	CAT_FILE = 1,
	CAT_NETWORK = 2,
	CAT_CAPS = 3,
	NCATS = 4,
};

/* Hooks that report. */
enum hook {
	H_BPRM_CHECK = 1,
	H_FILE_OPEN = 2,
	H_FILE_PERMISSION = 3,
	H_SOCKET_CREATE = 4,
	H_SOCKET_CONNECT = 5,
	H_SOCKET_BIND = 6,
	H_SOCKET_ACCEPT = 7,
	H_CAPABLE = 8,
	H_TASK_FIX_SETUID = 9,
	H_TASK_FIX_SETGID = 10,
	/* Namespace operations, decided by the path hooks. */
	H_PATH_MKNOD = 11,
	H_PATH_UNLINK = 12,
	H_PATH_MKDIR = 13,
	H_PATH_RMDIR = 14,
	H_PATH_SYMLINK = 15,
	H_PATH_LINK = 16,
	H_PATH_RENAME = 17,
	H_PATH_CHMOD = 18,
	H_PATH_CHOWN = 19,
	H_PATH_TRUNCATE = 20,
};

/* The deepest path the path hooks build (components of up to 255 bytes
 * hold at least one byte and a '/'). */
#define MAX_DEPTH 128

/* Special network values: SOCK_* types are small integers, protocols use
 * IPPROTO_* numbers, K_NET_ANY keys use value 0. */

/* Path keys hold the path's 64-bit FNV-1a hash, not the path: the kernel
 * hashes a map key whole on every lookup, and hashing 264-byte keys at each
 * directory of every opened path cost more than the open itself. The hook
 * computes the hash of each prefix as it walks the path; the value keeps
 * the path, compared on a hit, so a collision never decides. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

struct path_key {
	__u32 kind; /* gen << GEN_SHIFT | key_kind */
	__u32 src;  /* source id, 0 for rules without fromSource */
	__u64 hash; /* FNV-1a of the path */
};

struct rule_slot {
	__u32 id;
	__u32 flags;
};

struct rule_val {
	struct rule_slot slot[NSLOTS];
};

struct path_val {
	struct rule_val rules;
	__u32 len; /* of path, without the NUL */
	__u32 pad;
	char path[PATH_LEN];
};

struct net_key {
	__u32 kind; /* gen << GEN_SHIFT | key_kind */
	__u32 src;
	__u32 value;
};

struct src_key {
	__u32 gen; /* the tag: gen << GEN_SHIFT | scope << SCOPE_SHIFT */
	__u32 pad;
	__u64 hash; /* FNV-1a of the executable's path */
};

struct src_val {
	__u32 id;
	__u32 allowlist; /* categories in allow-list mode for this source */
	__u32 len;       /* of path */
	__u32 pad;
	char path[PATH_LEN];
};

/* Token types of a compiled glob. */
enum tok {
	T_LIT = 1,   /* arg: the byte */
	T_ANY = 2,   /* ?: any byte but '/' */
	T_STAR = 3,  /* *: any run of bytes without '/' */
	T_CLASS = 4, /* arg: index into classes */
	T_NCLASS = 5 /* negated class */
};

struct pattern {
	__u32 id;
	__u8 category; /* CAT_PROCESS or CAT_FILE */
	__u8 slot;     /* enum slot */
	__u8 flags;
	__u8 ntok;
	/* The literal bytes every match starts and ends with (up to 8 each,
	 * little-endian, pre_len/suf_len of them): a cheap test that skips
	 * most patterns before the glob walk. */
	__u8 pre_len;
	__u8 suf_len;
	__u8 pad[6];
	__u64 pre;
	__u64 suf;
	__u8 tok[PAT_TOKENS][2];
	__u8 classes[PAT_CLASSES][32];
};

struct pattern_key {
	__u32 gen; /* the tag, as in src_key */
	__u32 idx;
};

/* The pattern index puts every pattern in one candidate list, chosen by
 * literal bytes all its matches share: its last byte when it ends with a
 * literal, else its second byte when it starts with two literals, else the
 * list every path checks. A path checks only the lists its own last and
 * second bytes select, so patterns that cannot match cost nothing. */
enum pattern_sel {
	PSEL_ANY = 0,
	PSEL_LAST = 1,
	PSEL_SECOND = 2,
};

struct pattern_index_key {
	__u32 gen; /* the tag, as in src_key */
	__u8 category;
	__u8 sel; /* enum pattern_sel */
	__u8 byte;
	__u8 pad;
};

struct pattern_index_val {
	__u32 n;
	__u8 idx[MAX_PATTERNS]; /* pattern_key.idx of each candidate */
};

/* Settings of one scope of one generation. */
struct config {
	__u32 allowlist;   /* categories in allow-list mode for every source */
	__u32 posture_block; /* categories whose default posture is block */
	__u32 kinds;       /* bit per key_kind that has entries: skips useless lookups */
	__u32 has_sources; /* bit per category with fromSource rules */
	__u32 npatterns;
	__u32 pattern_cats; /* bit per category with patterns */
	__u64 caps;        /* capabilities with rules, bit per CAP_* */
	__u32 rate_burst;  /* events per (rule, task, hook) and second; 0 = no limit */
	__u32 scoped;      /* host config only: bit per scope_by with container keys */
	__u32 epoch;       /* the Apply that wrote this generation: inode names of it count */
	__u32 name_gate;   /* bit per category whose rules all need a name the name filter holds */
	/* bit per key_kind with entries for every task (source 0); kinds
	 * holds these and the kinds with fromSource entries, so a hook looks
	 * up the every-task key only when such a rule exists (most network
	 * and capability rules name a source) */
	__u32 global_kinds;
	/* the Apply that wrote this config, never 0 and never the same twice
	 * in one agent's life: what a task's cached source lookup is for */
	__u32 apply;
};

/* The name filter: a necessary condition for a path to match any exact,
 * exec-name, directory or pattern rule of a category, tested before the
 * path is built. Every such rule needs one whole path component with a
 * given name (an exact path's or exec name's last component, a directory
 * rule's last component, a pattern's last wholly literal component), or
 * a pattern a last component ending in given bytes (its last segment's
 * literal suffix, up to 4 bytes), so Apply sets the bit of each such name
 * and suffix, per generation and category (index gen * 2 + category,
 * union of every scope), and the open and exec hooks walk the object's
 * dentries up to the task's root as build_path does, testing each
 * component's name, and the last one's last bytes: no bit set, no
 * rule can match and no path is built. A category with a rule that needs no component (a
 * directory rule on "/", a pattern without a literal component) or in
 * allow-list mode has no bit in config.name_gate and always builds it.
 * A name's bit is name_bit(its first 8 bytes little-endian and zero
 * padded, its length, category), a suffix's name_bit(its bytes, their
 * number, category + 4). A filter of its own holds the numbers of the
 * inodes an Apply tagged (inodes.go), name_bit(i_ino, 8, 8), so the
 * hooks look up an inode's tag only when its number's bit is set. The Go
 * side computes the same. */
struct name_filter {
	__u64 bits[NAME_FILTER_WORDS];
	__u32 suffix_lens; /* bit k: a suffix of k bytes (1..4) is in bits */
	__u32 pad;
};

#define NAME_MUL1 0x9e3779b97f4a7c15ULL
#define NAME_MUL2 0xc2b2ae3d27d4eb4fULL

static inline __u32 name_bit(__u64 head, __u32 len, __u32 category)
{
	__u64 x = head * NAME_MUL1 ^ ((__u64)len << 8 | category) * NAME_MUL2;
	x ^= x >> 29;
	x *= NAME_MUL1;
	return (__u32)(x >> 48); /* 16 bits: NAME_FILTER_WORDS * 64 */
}

/* Inode identity for objects the rules name that exist when they are
 * applied: Apply tags each such inode (from user space, keyed by an fd of
 * it) with what the rules' name for it decides, per category (index
 * CAT_PROCESS, CAT_FILE), so any other name the object has (a hard link
 * made before the rules, a rename before them) is decided alike. One
 * half per generation, so writing the inactive generation leaves the
 * active one's alone; a half counts only while its epoch is the active
 * config's (a later Apply that did not tag the inode again leaves it
 * stale). The storage dies with the inode: a reused inode number inherits
 * nothing. */
struct inode_name {
	__u32 epoch;
	__u32 src[2]; /* the rules' fromSource id, 0 for every source */
	__u32 pad;
	struct rule_val rules[2];
};

struct inode_tag {
	struct inode_name gen[2];
};

struct rate_key {
	__u32 rule;
	__u32 tgid;
	__u32 hook;
	__u32 verdict;
};

struct rate_val {
	__u64 window;
	__u32 count;
	__u32 suppressed;
};

/* Counters in a per-CPU array. */
enum counter {
	C_EVENTS = 0,
	C_SUPPRESSED = 1,
	C_RINGBUF_FULL = 2,
	C_LONG_PATH = 3,
	C_NAME_MEMO = 4, /* name gate answers remembered (the name memo) */
	NCOUNTERS = 5,
};

struct event {
	__u64 ts;
	__u64 cgroup_id;
	__u32 host_pid;
	__u32 host_ppid;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 pid_ns;
	__u32 mnt_ns;
	__u32 rule_id;
	__s32 retval;
	__u32 hook;
	__u32 verdict;
	__u32 suppressed; /* identical events dropped since the previous one */
	__u32 arg;        /* capability number, setuid target */
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
	__u16 pad;
	char comm[16];
	char tty[64];
	char resource[PATH_LEN];
	char exe[PATH_LEN];
	char parent_exe[PATH_LEN];
};

/* Every enum above, for BTF (enforcer.bpf.c's unused_enums): bpf2go
 * generates Go constants only for types the object's BTF holds. */
struct enums {
	enum layout l;
	enum scope_by sb;
	enum key_kind k;
	enum slot s;
	enum rule_flag f;
	enum category c;
	enum verdict v;
	enum hook h;
	enum tok t;
	enum pattern_sel ps;
	enum counter n;
};

#endif
