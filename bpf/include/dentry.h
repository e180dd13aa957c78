/* Reading a dentry's name with direct loads, for programs that hold it as
 * a BTF pointer (LSM hooks, tp_btf, fexit), and its parent and name in one
 * read, for walks over plain addresses. The enforcer's name gate does
 * both, and so do the monitor's path walks (walk_task_path inside a
 * mount, walk_step past it).
 * Needs vmlinux.h and bpf_core_read.h first.
 */
#ifndef KUBEARMOR_DENTRY_H
#define KUBEARMOR_DENTRY_H

/* The inline name's field before 6.14 (d_shortname.string since). */
struct dentry___iname {
	unsigned char d_iname[32];
} __attribute__((preserve_access_index));

/* DENTRY_INLINE_MIN is the room for a short name inside the dentry on
 * every kernel this runs on (32 bytes before 6.14, 40 since): a name
 * shorter than this whose d_name.name points into the dentry can be read
 * as four words. */
#define DENTRY_INLINE_MIN 32

/* dentry_inline_name is where d keeps a short name inside itself. */
static __always_inline const unsigned char *dentry_inline_name(struct dentry *d)
{
	if (bpf_core_field_exists(struct dentry___iname, d_iname))
		return ((struct dentry___iname *)d)->d_iname;
	return d->d_shortname.string;
}

/* What a path walk reads of a dentry it holds as a number (not a BTF
 * pointer): its parent and its name. */
struct dentry_step {
	__u64 parent;
	__u64 hash_len; /* struct qstr: hash, then len (little-endian) */
	__u64 name;
};

/* read_dentry_step reads them in one helper call where d_parent and d_name
 * are adjacent in struct dentry (every kernel this runs on), two
 * otherwise. */
static __always_inline long read_dentry_step(struct dentry_step *s, __u64 d)
{
	__u32 off_parent = bpf_core_field_offset(struct dentry, d_parent);
	__u32 off_name = bpf_core_field_offset(struct dentry, d_name);
	if (off_name == off_parent + 8)
		return bpf_probe_read_kernel(s, sizeof(*s), (void *)(d + off_parent));
	long err = bpf_probe_read_kernel(&s->parent, 8, (void *)(d + off_parent));
	return err | bpf_probe_read_kernel(&s->hash_len, 16, (void *)(d + off_name));
}

#endif
