package bpflsm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"structs"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/enforce/ruleobj"
)

// Inode identity (enforcer.h, struct inode_tag). Path identity decides the
// names an object has; a hard link made before the rules, or an object
// renamed before them, is another name no rule covers. So Apply tags the
// inode of every object a host-scope Block or Audit rule names that exists
// now with what the rules decide for that name (nameRules: its exact and
// directory rules, per category, as match_path finds them), and file_open
// and bprm_check_security decide with the tag too: the same rule, as if the
// object had been opened or run by that name. The alert's Resource stays
// the name used, as upstream's always is (its PolicyName names the rule).
// The rules are in the tag rather than the name, so the hooks decide it
// with one more lookup and no second path walk (which also did not fit
// file_open's stack beside its own).
//
// What is tagged: the path of each file and process rule (matchPaths), and
// in the directories of directory rules the regular files with more than
// one link (the only ones with a name outside the directory), found by a
// walk when the rule comes (tagNames). The walks visit at most maxTagWalk
// entries per Apply, all rules together; Stats reports how many inodes were tagged and whether
// the walk stopped at the bound. Not tagged: container scopes (their paths
// are in the containers' mount namespaces); patterns do not count in a
// tag's rules.
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
	tagged  int      // inodes tagged
	inos    []uint64 // their inode numbers, for the hooks' filter (names.go)
	failed  int      // objects that exist but could not be tagged
	err     error    // the first reason one could not
	walkCut bool     // a directory walk stopped at maxTagWalk
}

// newEpoch starts the epochs of this process somewhere no earlier process
// (whose pinned tags a new one adopts) is likely to have been.
func newEpoch() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) | 1
}

// tagNames lists the names to tag for the host scope's entries, each with
// the source its rules are for (0: every source; a name only fromSource
// rules name is tagged for the first such source).
//
// A directory rule's directory is walked once, when the rule first comes:
// its tags are written before its generation is active, so the walk's own
// opens are not decided by it. Walking it again at a later Apply would be
// (refused under a Block rule, an alert under an Audit one), so the names
// a walk found are kept (prev, returned updated as walked) for as long as
// the rule stays and tagged again each Apply while they still have more
// than one link. An agent that restarts walks anew.
func tagNames(ent *entries, prev map[string][]string) (names map[string]uint32, walked map[string][]string, walkCut bool) {
	names, walked = map[string]uint32{}, map[string][]string{}
	add := func(p string, src uint32) {
		if cur, ok := names[p]; !ok || (cur != 0 && src == 0) {
			names[p] = src
		}
	}
	type dirRule struct {
		path      string
		src       uint32
		recursive bool
	}
	var dirs []dirRule
	for k, v := range ent.paths {
		if v[slotBlock].id == 0 && v[slotAudit].id == 0 {
			continue
		}
		switch k.kind {
		case kindFilePath, kindExecPath:
			add(k.path, k.src)
		case kindFileDir, kindExecDir:
			rec := (v[slotBlock].flags|v[slotAudit].flags)&flagRecursive != 0
			dirs = append(dirs, dirRule{strings.TrimSuffix(k.path, "/"), k.src, rec})
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
	linked := func(p string) bool {
		var st unix.Stat_t
		return unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1
	}
	budget := maxTagWalk
	for _, dr := range dirs {
		key := fmt.Sprintf("%s\x00%v", dr.path, dr.recursive)
		if found, ok := prev[key]; ok {
			for _, p := range found {
				if linked(p) {
					add(p, dr.src)
				}
			}
			walked[key] = found
			continue
		}
		var found []string
		_ = filepath.WalkDir(dr.path, func(p string, d fs.DirEntry, err error) error {
			if budget <= 0 {
				walkCut = true
				return filepath.SkipAll
			}
			budget--
			if err != nil {
				return nil // a directory that does not exist or cannot be read
			}
			if d.IsDir() {
				if p != dr.path && !dr.recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() && linked(p) {
				found = append(found, p)
				add(p, dr.src)
			}
			return nil
		})
		walked[key] = found
	}
	return names, walked, walkCut
}

// nameRules is what the exact and directory entries of one category decide
// for path p and source src, as the kernel's match_path merges them: the
// exact path (for the source, then for any), then per action the deepest
// directory rule (a non-recursive one only in p's own directory; for the
// source after any source at the same depth, so it wins there).
func (ent *entries) nameRules(kindPath, kindDir uint32, p string, src uint32) ruleValue {
	var m ruleValue
	merge := func(v ruleValue) {
		for i := range m {
			if m[i].id == 0 {
				m[i] = v[i]
			}
		}
	}
	srcs := []uint32{0}
	if src != 0 {
		merge(ent.paths[pathEntry{kind: kindPath, src: src, path: p}])
		srcs = append(srcs, src)
	}
	merge(ent.paths[pathEntry{kind: kindPath, path: p}])
	var rec, nonrec ruleValue
	pos := [len(ruleValue{})]int{-2, -2, -2}
	parent := strings.LastIndexByte(p, '/')
	for i := 0; i <= parent; i++ {
		if p[i] != '/' {
			continue
		}
		for _, s := range srcs {
			v := ent.paths[pathEntry{kind: kindDir, src: s, path: p[:i+1]}]
			for slot, r := range v {
				switch {
				case r.id == 0:
				case r.flags&flagRecursive != 0:
					rec[slot] = r
				default:
					nonrec[slot], pos[slot] = r, i
				}
			}
		}
	}
	var dm ruleValue
	for slot := range dm {
		if pos[slot] == parent {
			dm[slot] = nonrec[slot]
		} else {
			dm[slot] = rec[slot]
		}
	}
	merge(dm)
	return m
}

// tagInodes writes the tags of generation gen (epoch) for ent.
func (e *Enforcer) tagInodes(ent *entries, gen, epoch uint32) tagResult {
	names, walked, cut := tagNames(ent, e.walked)
	e.walked = walked
	r := tagResult{walkCut: cut}
	for p, src := range names {
		var half enforcerInodeName
		half.Epoch = epoch
		for cat, kinds := range map[uint32][2]uint32{catProcess: {kindExecPath, kindExecDir}, catFile: {kindFilePath, kindFileDir}} {
			half.Src[cat] = src
			half.Rules[cat] = *ruleVal(ent.nameRules(kinds[0], kinds[1], p, src))
		}
		switch ino, err := tagInode(e.objs.InodeTags, p, gen, &half); {
		case err == nil:
			r.tagged++
			r.inos = append(r.inos, ino)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, errSkip):
		default:
			if r.failed++; r.err == nil {
				r.err = err
			}
		}
	}
	return r
}

// enforcerInodeName is one generation's half of a tag (bpf2go leaves the
// nested struct unnamed).
type enforcerInodeName = struct {
	_     structs.HostLayout
	Epoch uint32
	Src   [2]uint32
	Pad   uint32
	Rules [2]enforcerRuleVal
}

var errSkip = errors.New("not a regular file")

// tagInode writes half into generation gen's half of p's inode's tag and
// returns the inode's number.
// ruleobj.Open: the agent's own tagging opens nothing (no file_open
// decision, no alert), and a path through a symbolic link tags nothing
// (path identity never matches it either, and whoever may change the link
// could aim the rule at another file).
func tagInode(m *ebpf.Map, p string, gen uint32, half *enforcerInodeName) (uint64, error) {
	fd, err := ruleobj.Open(p)
	if err != nil {
		if errors.Is(err, ruleobj.ErrIndirect) {
			return 0, errSkip
		}
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, errSkip
	}
	var val enforcerInodeTag
	key := int32(fd)
	if err := m.Lookup(&key, &val); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, err
	}
	val.Gen[gen&1] = *half
	return st.Ino, m.Put(&key, &val)
}
