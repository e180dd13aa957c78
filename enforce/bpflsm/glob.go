package bpflsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Token types of a compiled glob (enum tok of enforcer.h, generated).
const (
	tokLit    = uint8(enforcerTokT_LIT)
	tokAny    = uint8(enforcerTokT_ANY)
	tokStar   = uint8(enforcerTokT_STAR)
	tokClass  = uint8(enforcerTokT_CLASS)
	tokNClass = uint8(enforcerTokT_NCLASS)
)

const (
	patTokens  = int(enforcerLayoutPAT_TOKENS)
	patClasses = int(enforcerLayoutPAT_CLASSES)
)

// glob is a pattern compiled for the kernel's matcher: '*' matches a run of
// bytes without '/', '?' one byte but '/', [...] a byte of a set (never '/'),
// '\' escapes the next byte. "**" is the same as "*".
type glob struct {
	toks    [][2]uint8
	classes [][32]uint8
}

func compileGlob(pattern string) (glob, error) {
	var g glob
	if pattern == "" {
		return g, fmt.Errorf("empty pattern")
	}
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*':
			if n := len(g.toks); n > 0 && g.toks[n-1][0] == tokStar {
				continue
			}
			g.toks = append(g.toks, [2]uint8{tokStar, 0})
		case '?':
			g.toks = append(g.toks, [2]uint8{tokAny, 0})
		case '\\':
			if i+1 == len(pattern) {
				return g, fmt.Errorf("pattern ends in an escape")
			}
			i++
			g.toks = append(g.toks, [2]uint8{tokLit, pattern[i]})
		case '[':
			set, negated, next, err := parseClass(pattern, i)
			if err != nil {
				return g, err
			}
			if len(g.classes) == patClasses {
				return g, fmt.Errorf("more than %d [...] sets", patClasses)
			}
			typ := uint8(tokClass)
			if negated {
				typ = tokNClass
			}
			g.toks = append(g.toks, [2]uint8{typ, uint8(len(g.classes))})
			g.classes = append(g.classes, set)
			i = next
		default:
			g.toks = append(g.toks, [2]uint8{tokLit, c})
		}
		if len(g.toks) > patTokens {
			return g, fmt.Errorf("pattern has more than %d elements", patTokens)
		}
	}
	return g, nil
}

// parseClass reads the set starting at pattern[open] == '[' and returns it
// as a bitmap, whether it is negated, and the index of the closing ']'.
func parseClass(pattern string, open int) (set [32]uint8, negated bool, end int, err error) {
	i := open + 1
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negated = true
		i++
	}
	first := true
	for ; i < len(pattern); i++ {
		c := pattern[i]
		if c == ']' && !first {
			return set, negated, i, nil
		}
		first = false
		if c == '\\' && i+1 < len(pattern) {
			i++
			c = pattern[i]
		}
		lo, hi := c, c
		if i+2 < len(pattern) && pattern[i+1] == '-' && pattern[i+2] != ']' {
			hi = pattern[i+2]
			if hi == '\\' && i+3 < len(pattern) {
				hi = pattern[i+3]
				i++
			}
			i += 2
			if hi < lo {
				return set, false, 0, fmt.Errorf("bad range %c-%c in %q", lo, hi, pattern)
			}
		}
		for b := int(lo); b <= int(hi); b++ {
			set[b>>3] |= 1 << (b & 7)
		}
	}
	return set, false, 0, fmt.Errorf("unterminated [ in %q", pattern)
}

// match runs the same prefilter as pattern_step and the same step machine
// as glob_step in enforcer.bpf.c, so the kernel's algorithm can be tested on
// the host.
func (g glob) match(text string, maxSteps int) bool {
	if !g.mayMatch(text) {
		return false
	}
	matched, _ := g.run(text, maxSteps)
	return matched
}

// literalEnds returns the literal bytes every match starts and ends with,
// up to 8 each, packed little-endian as struct pattern's pre and suf hold
// them.
func (g glob) literalEnds() (pre uint64, preLen uint8, suf uint64, sufLen uint8) {
	for _, tok := range g.toks {
		if tok[0] != tokLit || preLen == 8 {
			break
		}
		pre |= uint64(tok[1]) << (8 * preLen)
		preLen++
	}
	first := len(g.toks)
	for first > 0 && g.toks[first-1][0] == tokLit && len(g.toks)-first < 8 {
		first--
	}
	for i, tok := range g.toks[first:] {
		suf |= uint64(tok[1]) << (8 * i)
	}
	return pre, preLen, suf, uint8(len(g.toks) - first)
}

// mayMatch is pattern_step's cheap test: false when text cannot match.
func (g glob) mayMatch(text string) bool {
	pre, preLen, suf, sufLen := g.literalEnds()
	var head [8]byte // the kernel's path buffer: text, then NUL
	copy(head[:], text)
	if preLen > 0 && (binary.LittleEndian.Uint64(head[:])^pre)&(^uint64(0)>>(64-8*preLen)) != 0 {
		return false
	}
	if sufLen > 0 && len(text) >= 8 && binary.LittleEndian.Uint64([]byte(text[len(text)-8:]))>>(64-8*sufLen) != suf {
		return false
	}
	return true
}

// run is match that also says how many steps it took to decide (maxSteps
// when it did not).
func (g glob) run(text string, maxSteps int) (bool, int) {
	p, t, sp, st := 0, 0, -1, 0
	at := func(i int) byte {
		if i < len(text) {
			return text[i]
		}
		return 0
	}
	step := 0
	for ; step < maxSteps; step++ {
		c := at(t)
		if p < len(g.toks) {
			typ, arg := g.toks[p][0], g.toks[p][1]
			if typ == tokStar {
				sp, st = p, t
				p++
				continue
			}
			if c != 0 {
				ok := false
				switch typ {
				case tokLit:
					ok = c == arg
				case tokAny:
					ok = c != '/'
				case tokClass:
					ok = c != '/' && g.classes[arg][c>>3]>>(c&7)&1 == 1
				case tokNClass:
					ok = c != '/' && g.classes[arg][c>>3]>>(c&7)&1 == 0
				}
				if ok {
					if c == '/' {
						sp = -1
					}
					p++
					t++
					continue
				}
			}
		} else if c == 0 {
			return true, step + 1
		}
		if sp >= 0 {
			if sc := at(st); sc != 0 && sc != '/' && st < pathLen-1 {
				st++
				t = st
				p = sp + 1
				continue
			}
		}
		return false, step + 1
	}
	return false, step
}

// Candidate lists of the pattern index (enum pattern_sel, generated).
const (
	patternSelAny    = uint8(enforcerPatternSelPSEL_ANY)
	patternSelLast   = uint8(enforcerPatternSelPSEL_LAST)
	patternSelSecond = uint8(enforcerPatternSelPSEL_SECOND)
)

// indexSlot is the candidate list a pattern belongs in: by the last byte
// every match ends with, else the second byte every match starts with,
// else the list every path checks.
func (g glob) indexSlot() (sel, b uint8) {
	pre, preLen, suf, sufLen := g.literalEnds()
	switch {
	case sufLen > 0:
		return patternSelLast, uint8(suf >> (8 * (sufLen - 1)))
	case preLen >= 2:
		return patternSelSecond, uint8(pre >> 8)
	}
	return patternSelAny, 0
}

// literalDir is the deepest directory every match of the glob is in: its
// literal start up to the last '/' ("/a/keys/*.key" -> "/a/keys"), or, for a
// glob without wildcards, the directory of the path it names.
func (g glob) literalDir() string {
	var lit []byte
	for _, t := range g.toks {
		if t[0] != tokLit {
			break
		}
		lit = append(lit, t[1])
	}
	i := bytes.LastIndexByte(lit, '/')
	if i <= 0 {
		return "/"
	}
	return string(lit[:i])
}
