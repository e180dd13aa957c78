package bpflsm

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// The name gate (enforcer.h, struct name_filter): before the open and exec
// hooks build a path, they test the names of its components against a
// filter of the names the rules need. Every exact-path, exec-name,
// directory and pattern rule needs one whole component with a given name:
// an exact path's or exec name's last component, a directory rule's own
// name (every path below it has that component), a pattern's last wholly
// literal component ('*', '?' and sets never match '/', so a pattern's
// components line up with the path's) or, in a pattern, a last component
// ending in its last segment's literal suffix. A path none of whose components is
// such a name matches no rule, whatever its directories were renamed,
// linked or mounted as: the test reads the same names the path is built
// from, along the same walk.

const nameFilterWords = int(enforcerLayoutNAME_FILTER_WORDS)

// deletedSuffix is what d_path appends to the path of an unlinked file:
// a rule naming "x (deleted)" matches such a file whose own name is "x".
const deletedSuffix = " (deleted)"

// pathName is the component a path, exec-name or directory rule needs, ""
// when it needs none (a rule on "/").
func pathName(m hostpolicy.MatchKind, value string) string {
	if m == hostpolicy.MatchExecName {
		return value
	}
	v := strings.TrimRight(value, "/")
	return v[strings.LastIndexByte(v, '/')+1:]
}

// gatePattern records what a pattern of cat needs (gateNeed).
func (s *settings) gatePattern(cat uint32, g glob) {
	if cat != catProcess && cat != catFile {
		return
	}
	name, suffix := g.gateNeed()
	if suffix == "" {
		s.gateName(cat, name)
		return
	}
	if s.suffixes[cat] == nil {
		s.suffixes[cat] = map[string]struct{}{}
	}
	s.suffixes[cat][suffix] = struct{}{}
}

// gateName records that a rule of cat needs a component named name; ""
// turns the gate off for cat. Only process and file rules have paths.
func (s *settings) gateName(cat uint32, name string) {
	if cat != catProcess && cat != catFile {
		return
	}
	if name == "" {
		s.noGate |= 1 << cat
		return
	}
	if s.names[cat] == nil {
		s.names[cat] = map[string]struct{}{}
	}
	s.names[cat][name] = struct{}{}
	if base, ok := strings.CutSuffix(name, deletedSuffix); ok && base != "" {
		s.names[cat][base] = struct{}{}
	}
}

// nameGate is config.name_gate: the path categories whose every rule
// needs a name, and in which an unmatched path decides nothing (no
// allow-list, for every source or for one).
func (s *settings) nameGate() uint32 {
	var gate uint32
	for _, cat := range []uint32{catProcess, catFile} {
		bit := uint32(1) << cat
		if s.noGate&bit == 0 && s.allowlist&bit == 0 && s.hasSources&(bit<<8) == 0 {
			gate |= bit
		}
	}
	return gate
}

// maxSuffix is the longest suffix the filter holds: the hook tests one
// length after the other.
const maxSuffix = 4

// gateNeed is what every match of the pattern needs: a component named
// name, or a last component ending in suffix (its last segment's literal
// bytes at the end, up to maxSuffix), or neither ("", ""). A wholly literal last
// segment is a name; a suffix of 3 bytes or more comes before a literal
// component elsewhere (a shorter one only when there is none): a path's
// last bytes are more telling than a directory's name like "tmp". A
// suffix d_path's " (deleted)" could supply is not used.
func (g glob) gateNeed() (name, suffix string) {
	var segs [][][2]uint8
	seg := [][2]uint8{}
	for _, t := range g.toks {
		if t[0] == tokLit && t[1] == '/' {
			segs, seg = append(segs, seg), [][2]uint8{}
			continue
		}
		seg = append(seg, t)
	}
	segs = append(segs, seg)
	literal := func(s [][2]uint8) string {
		b := make([]byte, 0, len(s))
		for _, t := range s {
			if t[0] != tokLit {
				return ""
			}
			b = append(b, t[1])
		}
		return string(b)
	}
	last := segs[len(segs)-1]
	if n := literal(last); n != "" {
		return n, ""
	}
	i := len(last)
	for i > 0 && last[i-1][0] == tokLit {
		i--
	}
	suffix = literal(last[i:])
	if len(suffix) > maxSuffix {
		suffix = suffix[len(suffix)-maxSuffix:]
	}
	if strings.HasSuffix(deletedSuffix, suffix) {
		suffix = ""
	}
	for j := len(segs) - 2; j >= 0 && len(suffix) < 3; j-- {
		if n := literal(segs[j]); n != "" {
			return n, ""
		}
	}
	return "", suffix
}

// nameFilter is one struct name_filter.
type nameFilter [nameFilterWords]uint64

// nameBit is enforcer.h's name_bit of a name (suffix false: its first 8
// bytes and length) or of a pattern's suffix (its bytes and their number).
func nameBit(name string, cat uint32, suffix bool) uint32 {
	var b [8]byte
	copy(b[:], name)
	head := binary.LittleEndian.Uint64(b[:])
	if suffix {
		cat += 4
	}
	const mul1, mul2 = 0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f
	x := head*mul1 ^ (uint64(len(name))<<8|uint64(cat))*mul2
	x ^= x >> 29
	x *= mul1
	return uint32(x >> 48)
}

func (f *nameFilter) add(name string, cat uint32, suffix bool) {
	b := nameBit(name, cat, suffix)
	f[b>>6] |= 1 << (b & 63)
}

// passes is whether a path whose components are comps passes the gate,
// as may_match in enforcer.bpf.c decides it (for tests).
func (f *nameFilter) passes(comps []string, cat uint32) bool {
	for i, c := range comps {
		if f[nameBit(c, cat, false)>>6]&(1<<(nameBit(c, cat, false)&63)) != 0 {
			return true
		}
		if i != len(comps)-1 {
			continue
		}
		for k := 1; k <= maxSuffix && k <= len(c); k++ {
			b := nameBit(c[len(c)-k:], cat, true)
			if f[b>>6]&(1<<(b&63)) != 0 {
				return true
			}
		}
	}
	return false
}

// inodeBit is the filter bit of a tagged inode's number (enforcer.h).
func inodeBit(ino uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], ino)
	return nameBit(string(b[:]), 8, false)
}

// writeNameFilters writes the filters of generation gen: per category,
// the names of every scope's rules; and the numbers of the inodes the
// Apply tagged.
func (e *Enforcer) writeNameFilters(g *generation, gen uint32, inos []uint64) error {
	var tagged nameFilter
	for _, ino := range inos {
		b := inodeBit(ino)
		tagged[b>>6] |= 1 << (b & 63)
	}
	if err := e.objs.NameFilters.Put(4+gen, &enforcerNameFilter{Bits: tagged}); err != nil {
		return fmt.Errorf("bpflsm: write inode filter: %w", err)
	}
	var f [2]nameFilter
	var lens [2]uint32
	for _, ent := range append([]*entries{g.host}, g.scopes...) {
		for cat := range f {
			for name := range ent.cfg.names[cat] {
				f[cat].add(name, uint32(cat), false)
			}
			for sfx := range ent.cfg.suffixes[cat] {
				f[cat].add(sfx, uint32(cat), true)
				lens[cat] |= 1 << len(sfx)
			}
		}
	}
	for cat := range f {
		if err := e.objs.NameFilters.Put(gen*2+uint32(cat), &enforcerNameFilter{Bits: f[cat], SuffixLens: lens[cat]}); err != nil {
			return fmt.Errorf("bpflsm: write name filter: %w", err)
		}
	}
	return nil
}
