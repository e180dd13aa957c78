package bpflsm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Inode identity (enforcer.h, struct inode_tag). Path identity decides the
// names an object has; a hard link made before the rules, or an object
// renamed before them, is another name no rule covers. So Apply tags the
// inode of every object a host-scope Block or Audit rule names that exists
// now with the rule's name for it, and file_open and bprm_check_security
// decide that name too (decide_tagged): the same rule, as if the object had
// been opened or run by that name. The alert's Resource stays the name
// used, as upstream's always is (its PolicyName names the rule).
//
// What is tagged: the path of each file and process rule (matchPaths), and
// in the directories of directory rules the regular files with more than
// one link (the only ones with a name outside the directory). The walk of
// those directories visits at most maxTagWalk entries per Apply, all
// rules together; Stats reports how many inodes were tagged and whether
// the walk stopped at the bound. Container scopes are not tagged: their
// paths are in the containers' mount namespaces.
//
// A tag belongs to one generation and one Apply (its epoch): the next
// Apply writes the inactive generation's half, so the active half holds
// until the flip, and a tag that Apply did not write again is stale once
// the epoch moves. The storage dies with the inode, so a freed inode
// number that is reused inherits nothing. Objects made after Apply (the
// rule's path re-created) get the path model's protection by name; they
// are tagged at the next Apply.

// maxTagWalk bounds the directory entries one Apply visits for tags.
const maxTagWalk = 4096

// tagResult is what one Apply tagged.
type tagResult struct {
	tagged  int  // inodes tagged
	failed  int  // objects that exist but could not be tagged
	walkCut bool // a directory walk stopped at maxTagWalk
}

// newEpoch starts the epochs of this process somewhere no earlier process
// (whose pinned tags a new one adopts) is likely to have been.
func newEpoch() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) | 1
}

// tagNames lists the names to tag for the host scope's entries.
func tagNames(ent *entries) (names []string, walkCut bool) {
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			names = append(names, p)
		}
	}
	type dirRule struct {
		path      string
		recursive bool
	}
	var dirs []dirRule
	for k, v := range ent.paths {
		if v[slotBlock].id == 0 && v[slotAudit].id == 0 {
			continue
		}
		switch k.kind {
		case kindFilePath, kindExecPath:
			add(k.path)
		case kindFileDir, kindExecDir:
			rec := (v[slotBlock].flags|v[slotAudit].flags)&flagRecursive != 0
			dirs = append(dirs, dirRule{strings.TrimSuffix(k.path, "/"), rec})
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
	budget := maxTagWalk
	for _, dr := range dirs {
		dir, recursive := dr.path, dr.recursive
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if budget <= 0 {
				walkCut = true
				return filepath.SkipAll
			}
			budget--
			if err != nil {
				return nil // a directory that does not exist or cannot be read
			}
			if d.IsDir() {
				if p != dir && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Nlink > 1 {
				add(p)
			}
			return nil
		})
	}
	return names, walkCut
}

// tagInodes writes the tags of generation gen (epoch) for ent.
func (e *Enforcer) tagInodes(ent *entries, gen, epoch uint32) tagResult {
	names, cut := tagNames(ent)
	r := tagResult{walkCut: cut}
	for _, p := range names {
		switch err := tagInode(e.objs.InodeTags, p, gen, epoch); {
		case err == nil:
			r.tagged++
		case errors.Is(err, os.ErrNotExist), errors.Is(err, errSkip):
		default:
			r.failed++
		}
	}
	return r
}

var errSkip = errors.New("not a regular file")

// tagInode writes name p into generation gen's half of its inode's tag.
// O_PATH: the agent's own tagging opens nothing (no file_open decision,
// no alert), and a rule's path that is a symbolic link is not followed
// (path identity never matches it either).
func tagInode(m *ebpf.Map, p string, gen, epoch uint32) error {
	if len(p) >= pathLen {
		return errSkip
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errSkip
	}
	var val enforcerInodeTag
	key := int32(fd)
	if err := m.Lookup(&key, &val); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	half := &val.Gen[gen&1]
	half.Path = [pathLen]int8{}
	half.Epoch, half.Len = epoch, uint32(len(p))
	putString(half.Path[:], p)
	return m.Put(&key, &val)
}
