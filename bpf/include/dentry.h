/* Reading a dentry's name with direct loads, for programs that hold it as
 * a BTF pointer (LSM hooks, tp_btf, fexit): the monitor's path walk and
 * the enforcer's name gate. Needs vmlinux.h and bpf_core_read.h first.
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

#endif
