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
// components line up with the path's). A path none of whose components is
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

// literalComponent is the last component of the pattern made of literal
// bytes only, "" when it has none.
func (g glob) literalComponent() string {
	var comp []byte
	literal, best := true, ""
	end := func() {
		if literal && len(comp) > 0 {
			best = string(comp)
		}
		comp, literal = comp[:0], true
	}
	for _, t := range g.toks {
		if t[0] == tokLit && t[1] == '/' {
			end()
			continue
		}
		if t[0] != tokLit {
			literal = false
		}
		comp = append(comp, t[1])
	}
	end()
	return best
}

// nameFilter is one struct name_filter.
type nameFilter [nameFilterWords]uint64

// nameBit is enforcer.h's name_bit.
func nameBit(name string, cat uint32) uint32 {
	var b [8]byte
	copy(b[:], name)
	head := binary.LittleEndian.Uint64(b[:])
	const mul1, mul2 = 0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f
	x := head*mul1 ^ (uint64(len(name))<<8|uint64(cat))*mul2
	x ^= x >> 29
	x *= mul1
	return uint32(x >> 48)
}

func (f *nameFilter) add(name string, cat uint32) {
	b := nameBit(name, cat)
	f[b>>6] |= 1 << (b & 63)
}

func (f *nameFilter) has(name string, cat uint32) bool {
	b := nameBit(name, cat)
	return f[b>>6]&(1<<(b&63)) != 0
}

// writeNameFilters writes the filters of generation gen: per category,
// the names of every scope's rules.
func (e *Enforcer) writeNameFilters(g *generation, gen uint32) error {
	var f [2]nameFilter
	for _, ent := range append([]*entries{g.host}, g.scopes...) {
		for cat := range ent.cfg.names {
			for name := range ent.cfg.names[cat] {
				f[cat].add(name, uint32(cat))
			}
		}
	}
	for cat := range f {
		if err := e.objs.NameFilters.Put(gen*2+uint32(cat), &enforcerNameFilter{Bits: f[cat]}); err != nil {
			return fmt.Errorf("bpflsm: write name filter: %w", err)
		}
	}
	return nil
}
