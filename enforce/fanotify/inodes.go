package fanotify

import (
	"slices"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/enforce/ruleobj"
	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// Protected inodes. The tier decides by the name the kernel hands it, and a
// file has other names no rule mentions: a hard link (made before the rules
// or after: fanotify cannot refuse link(2)), the file renamed, a bind mount
// in a mount namespace of the opener's own (any user can make one inside a
// user namespace), an overlayfs layer's private mount. So every file an
// exact-path Block or Audit rule names is also known by identity, read at
// Apply: an open or exec of that inode under any name is decided under the
// rule's name as well, and the stronger decision stands, as BPF-LSM's inode
// tags do. Allow rules are left out: their inode under another name is no
// walk-around, and the name's own decision (a posture miss) is already the
// stricter one.
//
// The identity is (device, inode number, birth time): an inode number freed
// and reused by another file has another birth time, so the new file does
// not inherit the protection. Without birth times (a filesystem that keeps
// none) a reused number is protected until the next Apply: stricter, never
// looser.

// inodeID is a file's identity.
type inodeID struct {
	dev, ino uint64
	btime    unix.StatxTimestamp
}

// protectedInodes maps an identity, per category, to the names that
// category's rules give it.
type protectedInodes map[protectedKey][]string

type protectedKey struct {
	id  inodeID
	cat hostpolicy.Category
}

// fileID reads the identity of fd.
func fileID(fd int) (inodeID, bool) {
	_, id, ok, err := statID(fd)
	return id, err == nil && ok
}

// ruleFileID reads the identity of the file a rule's path names directly
// (ruleobj: never through a symbolic link, which whoever may change it
// could aim at another file, to have it refused for everyone).
func ruleFileID(path string) (inodeID, bool) {
	fd, err := ruleobj.Open(path)
	if err != nil {
		return inodeID{}, false
	}
	defer unix.Close(fd)
	return fileID(fd)
}

// statID is fstat and the identity in one statx: the reader's fast path
// needs both for every event a rule may concern. ok is false for what is
// not a regular file.
func statID(fd int) (st unix.Stat_t, id inodeID, ok bool, err error) {
	var stx unix.Statx_t
	if err = unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_INO|unix.STATX_NLINK|unix.STATX_BTIME, &stx); err != nil {
		return st, id, false, err
	}
	st.Dev, st.Ino, st.Nlink, st.Mode = unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino, uint64(stx.Nlink), uint32(stx.Mode)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return st, id, false, nil
	}
	id = inodeID{dev: st.Dev, ino: stx.Ino}
	if stx.Mask&unix.STATX_BTIME != 0 {
		id.btime = stx.Btime
	}
	return st, id, true, nil
}

// protect reads the identities of the files the rules name exactly.
func protect(rs *hostpolicy.RuleSet, skip func(*hostpolicy.Rule) bool) protectedInodes {
	p := protectedInodes{}
	if rs == nil {
		return p
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if skip(r) || r.Match != hostpolicy.MatchPath || r.Action == hostpolicy.ActionAllow ||
			(r.Category != hostpolicy.CategoryFile && r.Category != hostpolicy.CategoryProcess) {
			continue
		}
		if id, ok := ruleFileID(r.Value); ok {
			k := protectedKey{id, r.Category}
			if !slices.Contains(p[k], r.Value) {
				p[k] = append(p[k], r.Value)
			}
		}
	}
	return p
}

// byIdentity decides fd's inode under every name the rules give it, and
// returns the stronger of that and d, the decision under the name the
// kernel handed over.
func (p protectedInodes) byIdentity(d decide.Decision, t *decide.Table, fd int, cat hostpolicy.Category, subject, source string, f decide.Facts) decide.Decision {
	if len(p) == 0 {
		return d
	}
	id, ok := fileID(fd)
	if !ok {
		return d
	}
	for _, name := range p.names(id, cat) {
		if name != subject {
			d = stronger(d, t.Path(cat, name, source, false, f))
		}
	}
	return d
}

// names are the names the category's rules give the inode id.
func (p protectedInodes) names(id inodeID, cat hostpolicy.Category) []string {
	return p[protectedKey{id, cat}]
}

// stronger is the decision that weighs more: a denial, then an audit, then
// a posture audit, then nothing; a tie keeps a.
func stronger(a, b decide.Decision) decide.Decision {
	if weight(b) > weight(a) {
		return b
	}
	return a
}

func weight(d decide.Decision) int {
	switch {
	case d.Deny:
		return 3
	case d.Verdict == event.VerdictAudit:
		return 2
	case d.Verdict == event.VerdictPostureAudit:
		return 1
	}
	return 0
}
