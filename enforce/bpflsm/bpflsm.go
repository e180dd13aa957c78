// Package bpflsm is the BPF-LSM enforcer: it loads the LSM programs of
// enforcer.bpf.c, writes a hostpolicy.RuleSet into their maps, and turns the
// kernel's verdicts into event.Events. Every decision is made in the kernel.
package bpflsm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/kernelfs"
)

// Options configure an Enforcer.
type Options struct {
	// PinRoot, when set, keeps the enforcer in the kernel beyond this
	// process: its maps and links are pinned under PinRoot/<object
	// version>/, New adopts what an earlier process pinned there, and
	// Close leaves the pins (Unpin first to detach). See pin.go.
	PinRoot string
	// ObjectVersion overrides ObjectVersion() as the name of the pinned
	// state (kubearmor's documented --bpf-object-version, for testing the
	// upgrade path with one build). "" means ObjectVersion().
	ObjectVersion string
	// RateBurst is how many identical events (same rule, process, hook and
	// verdict) the kernel reports per second; the rest are counted. 0 means
	// 10; negative means no limit.
	RateBurst int
	// Log, when set, takes the warnings of New (nil: none are written).
	Log *slog.Logger
}

// Stats are the kernel's counters.
type Stats struct {
	Events       uint64 // events written to the ring buffer
	Suppressed   uint64 // identical events the rate limit dropped
	RingbufFull  uint64 // events lost because the ring buffer was full
	PathTooLong  uint64 // operations on paths longer than 255 bytes (no rule can match them)
	NameMemos    uint64 // name gate answers remembered for the next open of the same object (the name memo)
	LoadTime     time.Duration
	AttachTime   time.Duration
	InodeTags    int               // objects the last Apply tagged with a rule's name (inodes.go)
	InodeTagFail int               // objects it found but could not tag
	InodeTagErr  error             // why the first of them could not
	TagWalkCut   bool              // its walk of directory rules stopped at maxTagWalk entries
	MapMemoryKiB uint64            // memory the kernel accounts to the enforcer's maps
	MapMemory    map[string]uint64 // the same in bytes, by map
}

// Enforcer is the BPF-LSM enforcer. It satisfies agent.Enforcer.
type Enforcer struct {
	opts   Options
	objs   enforcerObjects
	links  []link.Link
	reader *ringbuf.Reader

	// Pinned state (PinRoot set): pin.go.
	version, pinDir string
	adoption        string     // what New found pinned and took over
	inherited       bool       // the active generation's keys were written by an earlier process
	old             []previous // other versions' links, replaced after the first Apply
	carried         uint64     // events left in their ring buffers: counted
	// records left in their ring buffers with this version's layout:
	// decoded and handed on by Run before its own (pin.go)
	inheritedRecords [][]byte
	decodedOld       uint64
	eventType        *btf.Struct // this object's record, to compare layouts

	loadTime, attachTime time.Duration
	clock                event.BootClock

	mu         sync.Mutex
	gen        uint32 // active generation
	applied    bool
	written    *written // keys of the active generation
	rules      *hostpolicy.RuleSet
	containers []hostpolicy.Container
	epoch      uint32              // of the last Apply (inodes.go)
	cfgEpoch   uint32              // in its configs: 0 when it tagged nothing
	tags       tagResult           // what it tagged
	walked     map[string][]string // names directory walks found (tagNames)
}

// written lists the keys Apply wrote for one generation, so the next Apply
// can delete them.
type written struct {
	paths     []enforcerPathKey
	nets      []enforcerNetKey
	sources   []enforcerSrcKey
	patterns  []enforcerPatternKey
	patIndex  []enforcerPatternIndexKey
	scopeKeys []enforcerScopeKey
	configs   []uint32 // container scopes' config indexes
}

// New loads and attaches the enforcer. With no rules applied yet it
// decides nothing: every hook returns at its first map lookup.
func New(opts Options) (*Enforcer, error) {
	if opts.RateBurst == 0 {
		opts.RateBurst = 10
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("bpflsm: remove memlock limit: %w", err)
	}
	e := &Enforcer{opts: opts, clock: event.NewBootClock(), epoch: newEpoch()}
	spec, err := loadEnforcer()
	if err != nil {
		return nil, fmt.Errorf("bpflsm: load spec: %w", err)
	}
	memoOff, err := setMemoAddresses(spec, "/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("bpflsm: %w", err)
	}
	if opts.PinRoot != "" {
		err = e.openPinned(spec)
	} else if err = e.load(spec, &ebpf.CollectionOptions{}); err == nil {
		err = e.attach()
	}
	if err != nil {
		e.Close()
		return nil, err
	}

	if memoOff != "" && opts.Log != nil {
		if why := nameMemoOff(kernelfs.Sysctl("kernel/kptr_restrict")); why != "" {
			memoOff = why
		}
		opts.Log.Warn("bpflsm: the open and exec hooks cannot remember that no rule concerns a file: " + memoOff)
	}
	e.reader, err = ringbuf.NewReader(e.objs.Events)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("bpflsm: ring buffer: %w", err)
	}
	return e, nil
}

// nameMemoOff says why the open and exec hooks cannot remember the name
// gate's answers (the name memo, c/enforcer.bpf.c), given the value of
// kernel.kptr_restrict, or "" when they can: the memo reads two kernel
// sequence counters at addresses resolved from /proc/kallsyms at load,
// which show as 0 to everyone when kptr_restrict is 2 (to root without
// CAP_SYSLOG when it is 1; the packaged unit keeps CAP_SYSLOG).
func nameMemoOff(kptrRestrict string) string {
	if strings.TrimSpace(kptrRestrict) != "2" {
		return ""
	}
	return "kernel.kptr_restrict is 2, so kernel symbol addresses are hidden: every open and exec walks its path " +
		"again (the same decisions, at the cost docs/benchmarks.md gives for the walk). kptr_restrict 1 hides " +
		"them from others but not from the agent."
}

// load loads the object's maps and programs.
func (e *Enforcer) load(spec *ebpf.CollectionSpec, collOpts *ebpf.CollectionOptions) error {
	start := time.Now()
	if err := spec.LoadAndAssign(&e.objs, collOpts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The last lines say why; the whole log (megabytes when the
			// verifier gives up) would end up in status and every log line.
			return fmt.Errorf("bpflsm: load: %-20v", ve)
		}
		return fmt.Errorf("bpflsm: load: %w", err)
	}
	e.loadTime = time.Since(start)
	return nil
}

// attach attaches every program; with PinRoot set it pins each link,
// replacing a link of the same name pinned earlier (new link first, so the
// hook is never without its program).
func (e *Enforcer) attach() error {
	start := time.Now()
	names, progs := e.programs()
	for i, p := range progs {
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return fmt.Errorf("bpflsm: attach %s: %w", names[i], err)
		}
		e.links = append(e.links, l)
		if e.pinDir == "" {
			continue
		}
		pin := filepath.Join(e.pinDir, "links", names[i])
		stale, _ := link.LoadPinnedLink(pin, nil)
		if stale != nil {
			_ = os.Remove(pin)
		}
		err = l.Pin(pin)
		if stale != nil {
			_ = stale.Close()
		}
		if err != nil {
			return fmt.Errorf("bpflsm: pin link %s: %w", names[i], err)
		}
	}
	e.attachTime = time.Since(start)
	return nil
}

// Name is the Enforcer string of alerts.
func (e *Enforcer) Name() string { return "BPFLSM" }

// Apply writes rs into the inactive generation of every map, makes it the
// active one with a single map write, then deletes the previous
// generation. Hooks see either the old rules or the new ones, never a mix
// and never none. On error the previous rules stay in force.
//
// The host rules of rs apply to every task outside the containers last
// given to SetContainers; container policies' rules apply inside the
// containers they select (containers.go).
func (e *Enforcer) Apply(rs *hostpolicy.RuleSet) (map[uint32]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	un, err := e.commit(rs, e.containers)
	if err != nil {
		return nil, err
	}
	e.rules = rs
	if len(e.old) > 0 {
		// An older version still enforces: now that this one's maps hold
		// the rules, attach and only then detach the old links.
		if err := e.attach(); err != nil {
			return nil, err
		}
		e.replacePrevious()
	}
	return un, nil
}

// commit writes the rules and containers as the next generation and makes
// it the active one. The caller holds e.mu.
func (e *Enforcer) commit(rs *hostpolicy.RuleSet, cs []hostpolicy.Container) (map[uint32]string, error) {
	g := build(rs, cs)
	next := uint32(0)
	if e.applied {
		next = 1 - e.gen
	}
	if e.inherited {
		// An earlier process may have left a half-written generation.
		e.purge(next)
	}
	if e.epoch++; e.epoch == 0 {
		e.epoch = 1
	}
	// Tags first: with none, the configs carry epoch 0 and the open and
	// exec hooks skip the inode storage lookup (it costs open/close about
	// 7 % in the benchmark's guest, docs/benchmarks.md).
	e.tags = e.tagInodes(g.host, next, e.epoch)
	e.cfgEpoch = 0
	if e.tags.tagged > 0 {
		e.cfgEpoch = e.epoch
	}
	w, err := e.write(g, next)
	if err != nil {
		e.remove(w)
		return nil, err
	}
	// The capability hooks trust caps_any to hold every capability the
	// rules in force may decide: it takes the new generation's before the
	// switch (old and new, while either may be read) and only the new
	// one's after it.
	one := uint32(0)
	caps := g.capsAny()
	var was uint64
	if err := e.objs.CapsAny.Lookup(one, &was); err != nil {
		e.remove(w)
		return nil, fmt.Errorf("bpflsm: read capability summary: %w", err)
	}
	if err := e.objs.CapsAny.Put(one, was|caps); err != nil {
		e.remove(w)
		return nil, fmt.Errorf("bpflsm: widen capability summary: %w", err)
	}
	if err := e.objs.Active.Put(one, next+1); err != nil {
		e.remove(w)
		return nil, fmt.Errorf("bpflsm: activate rules: %w", err)
	}
	if err := e.objs.CapsAny.Put(one, caps); err != nil {
		// Left wider than needed: the hooks only look further.
		if e.opts.Log != nil {
			e.opts.Log.Warn("bpflsm: narrow capability summary", "error", err)
		}
	}
	old, prev := e.written, e.gen
	e.gen, e.applied, e.written = next, true, w
	if old != nil {
		e.remove(old)
	} else if e.inherited {
		e.purge(prev)
		e.inherited = false
	}
	return g.unenforced, nil
}

// write puts a whole generation into the maps: the host scope, each
// container scope, then which containers are in which scope.
func (e *Enforcer) write(g *generation, gen uint32) (*written, error) {
	w := &written{}
	if err := e.writeNameFilters(g, gen, e.tags.inos); err != nil {
		return w, err
	}
	if err := e.writeScope(w, g.host, gen, 0, g.scoped); err != nil {
		return w, err
	}
	for i, ent := range g.scopes {
		if err := e.writeScope(w, ent, gen, uint32(i+1), 0); err != nil {
			return w, err
		}
	}
	for k, scope := range g.keys {
		key := enforcerScopeKey{Gen: gen, By: k.by, Id: k.id}
		if err := e.objs.Scopes.Put(&key, scope); err != nil {
			return w, fmt.Errorf("bpflsm: write container scope: %w", err)
		}
		w.scopeKeys = append(w.scopeKeys, key)
	}
	return w, nil
}

func (e *Enforcer) writeScope(w *written, ent *entries, gen, scope, scoped uint32) error {
	g := gen<<genShift | scope<<scopeShift
	// Keys hold a path's hash (enforcer.h); two paths of one kind whose
	// hashes collide could not both have rules, so that is refused.
	seen, seenSources := map[enforcerPathKey]string{}, map[uint64]string{}
	for _, paths := range []map[pathEntry]ruleValue{ent.paths, ent.ancestors} {
		for k, v := range paths {
			key := enforcerPathKey{Kind: g | k.kind, Src: k.src, Hash: pathHash(k.path)}
			if other, ok := seen[key]; ok {
				return fmt.Errorf("bpflsm: paths %q and %q have the same hash: one of them cannot have a rule", other, k.path)
			}
			seen[key] = k.path
			val := enforcerPathVal{Rules: *ruleVal(v), Len: uint32(len(k.path))}
			putString(val.Path[:], k.path)
			if err := e.objs.PathRules.Put(&key, &val); err != nil {
				return fmt.Errorf("bpflsm: write path rule %q: %w", k.path, err)
			}
			w.paths = append(w.paths, key)
		}
	}
	for k, v := range ent.nets {
		key := enforcerNetKey{Kind: g | k.kind, Src: k.src, Value: k.value}
		if err := e.objs.NetRules.Put(&key, ruleVal(v)); err != nil {
			return fmt.Errorf("bpflsm: write network rule: %w", err)
		}
		w.nets = append(w.nets, key)
	}
	for path, v := range ent.sources {
		key := enforcerSrcKey{Gen: g, Hash: pathHash(path)}
		if other, ok := seenSources[key.Hash]; ok {
			return fmt.Errorf("bpflsm: sources %q and %q have the same hash: one of them cannot have a rule", other, path)
		}
		seenSources[key.Hash] = path
		val := enforcerSrcVal{Id: v.id, Allowlist: v.allowlist, Len: uint32(len(path))}
		putString(val.Path[:], path)
		if err := e.objs.Sources.Put(&key, &val); err != nil {
			return fmt.Errorf("bpflsm: write source %q: %w", path, err)
		}
		w.sources = append(w.sources, key)
	}
	for i, p := range ent.patterns {
		key := enforcerPatternKey{Gen: g, Idx: uint32(i)}
		val := enforcerPattern{Id: p.id, Category: p.category, Slot: p.slot, Flags: p.flags, Ntok: uint8(len(p.glob.toks))}
		val.Pre, val.PreLen, val.Suf, val.SufLen = p.glob.literalEnds()
		copy(val.Tok[:], p.glob.toks)
		copy(val.Classes[:], p.glob.classes)
		if err := e.objs.Patterns.Put(&key, &val); err != nil {
			return fmt.Errorf("bpflsm: write pattern: %w", err)
		}
		w.patterns = append(w.patterns, key)
	}
	for key, val := range patternIndex(g, ent.patterns) {
		if err := e.objs.PatternIndex.Put(&key, val); err != nil {
			return fmt.Errorf("bpflsm: write pattern index: %w", err)
		}
		w.patIndex = append(w.patIndex, key)
	}
	burst := uint32(0)
	if e.opts.RateBurst > 0 {
		burst = uint32(e.opts.RateBurst)
	}
	cfg := enforcerConfig{
		Allowlist:    ent.cfg.allowlist,
		PostureBlock: ent.cfg.postureBlock,
		Kinds:        ent.cfg.kinds,
		HasSources:   ent.cfg.hasSources,
		Npatterns:    uint32(len(ent.patterns)),
		PatternCats:  ent.cfg.patternCats,
		Caps:         ent.cfg.caps,
		RateBurst:    burst,
		Scoped:       scoped,
		Epoch:        e.cfgEpoch,
		NameGate:     ent.cfg.nameGate(),
		GlobalKinds:  ent.cfg.globalKinds,
		Apply:        e.epoch,
	}
	idx := gen*maxScopes + scope
	if err := e.objs.Configs.Put(idx, &cfg); err != nil {
		return fmt.Errorf("bpflsm: write config: %w", err)
	}
	if scope != 0 {
		w.configs = append(w.configs, idx)
	}
	return nil
}

// remove deletes the keys of one generation; a key that is already gone is
// not an error.
func (e *Enforcer) remove(w *written) {
	for i := range w.paths {
		_ = e.objs.PathRules.Delete(&w.paths[i])
	}
	for i := range w.nets {
		_ = e.objs.NetRules.Delete(&w.nets[i])
	}
	for i := range w.sources {
		_ = e.objs.Sources.Delete(&w.sources[i])
	}
	for i := range w.patterns {
		_ = e.objs.Patterns.Delete(&w.patterns[i])
	}
	for i := range w.patIndex {
		_ = e.objs.PatternIndex.Delete(&w.patIndex[i])
	}
	for i := range w.scopeKeys {
		_ = e.objs.Scopes.Delete(&w.scopeKeys[i])
	}
	// Array entries cannot be deleted: an unused scope gets an empty config,
	// which decides nothing.
	for _, idx := range w.configs {
		_ = e.objs.Configs.Put(idx, &enforcerConfig{})
	}
}

func ruleVal(v ruleValue) *enforcerRuleVal {
	var out enforcerRuleVal
	for i, s := range v {
		out.Slot[i] = enforcerRuleSlot{Id: s.id, Flags: s.flags}
	}
	return &out
}

// pathHash is the 64-bit FNV-1a hash the kernel side computes (enforcer.h).
func pathHash(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64()
}

func putString(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

// Run reads verdicts until ctx ends and hands each to emit.
func (e *Enforcer) Run(ctx context.Context, emit func(event.Event)) error {
	e.mu.Lock()
	old := e.inheritedRecords
	e.inheritedRecords = nil
	e.mu.Unlock()
	for _, raw := range old {
		if ev, ok := decode(raw, e.clock); ok {
			emit(ev)
		}
	}
	// The reader blocks until the kernel wakes it (the programs submit
	// with adaptive wakeup: a record into an empty buffer wakes it); the
	// end of ctx flushes it rather than a deadline polling for it, so an
	// idle agent does not wake for this.
	stop := context.AfterFunc(ctx, func() { _ = e.reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		if err := e.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrFlushed) {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("bpflsm: read ring buffer: %w", err)
		}
		ev, ok := decode(rec.RawSample, e.clock)
		if ok {
			emit(ev)
		}
	}
}

// Stats reads the kernel's counters.
func (e *Enforcer) Stats() (Stats, error) {
	e.mu.Lock()
	s := Stats{LoadTime: e.loadTime, AttachTime: e.attachTime, InodeTags: e.tags.tagged, InodeTagFail: e.tags.failed, InodeTagErr: e.tags.err, TagWalkCut: e.tags.walkCut}
	e.mu.Unlock()
	for i, dst := range []*uint64{&s.Events, &s.Suppressed, &s.RingbufFull, &s.PathTooLong, &s.NameMemos} {
		var perCPU []uint64
		if err := e.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return s, fmt.Errorf("bpflsm: read counters: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	mem, err := e.mapMemory()
	if err != nil {
		return s, err
	}
	s.MapMemory = mem
	for _, n := range mem {
		s.MapMemoryKiB += n / 1024
	}
	return s, nil
}

// Close closes every link and map: the programs detach, unless PinRoot
// keeps them pinned (Unpin first to detach them too).
func (e *Enforcer) Close() error {
	var errs []error
	if e.reader != nil {
		errs = append(errs, e.reader.Close())
	}
	for _, l := range e.links {
		errs = append(errs, l.Close())
	}
	e.links = nil
	errs = append(errs, e.objs.Close())
	for _, p := range e.old {
		closeLinks(p.links)
		if p.events != nil {
			_ = p.events.Close()
		}
	}
	e.old = nil
	return errors.Join(errs...)
}

// patternIndex builds the candidate lists of one scope's patterns.
func patternIndex(tag uint32, patterns []patternEntry) map[enforcerPatternIndexKey]*enforcerPatternIndexVal {
	index := map[enforcerPatternIndexKey]*enforcerPatternIndexVal{}
	for i, p := range patterns {
		sel, b := p.glob.indexSlot()
		key := enforcerPatternIndexKey{Gen: tag, Category: p.category, Sel: sel, Byte: b}
		val := index[key]
		if val == nil {
			val = &enforcerPatternIndexVal{}
			index[key] = val
		}
		val.Idx[val.N] = uint8(i) // i < maxPatterns = len(Idx)
		val.N++
	}
	return index
}
