package bpflsm

// Keeping the enforcer in the kernel while no agent runs (issue 21).
//
// With Options.PinRoot set, every map and every LSM link of the enforcer is
// pinned in bpffs under one directory per object version:
//
//	<PinRoot>/<version>/maps/<map>     rule maps, counters, ring buffer, ...
//	<PinRoot>/<version>/links/<prog>   one LSM link per program
//
// A pinned link keeps its program attached after the process that made it
// has gone (kill -9, OOM, restart, upgrade): the kernel goes on enforcing the
// last rule set written into the pinned maps, and its verdicts wait in the
// pinned ring buffer. A starting agent adopts what it finds:
//
//   - same version, every link pinned: it opens the pinned maps and links
//     and loads no program at all; the next Apply swaps the rule set in
//     place, as between two Applies of one process;
//   - another version: it loads its own objects beside the old ones, applies
//     the first rule set into its own maps, attaches its programs, and only
//     then detaches the old links (BPF LSM links have no link update, so the
//     old and the new programs both run for that instant; both refuse what
//     the rules refuse) and removes the old version's directory.
//
// Pins do not survive a reboot, and nothing loads them at boot: the way out
// is Detach (kubearmor detach), removing the directory, or a reboot.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DefaultPinRoot is where the agent pins the enforcer.
const DefaultPinRoot = "/sys/fs/bpf/kubearmor"

// ObjectVersion names the embedded BPF object: the first 16 hex digits of
// its SHA-256. Two agent builds with the same object share pinned state.
func ObjectVersion() string {
	sum := sha256.Sum256(_EnforcerBytes)
	return hex.EncodeToString(sum[:8])
}

// previous is the pinned state of another object version, replaced after
// the first Apply.
type previous struct {
	dir    string
	links  []link.Link
	events *ebpf.Map // its ring buffer, drained and counted once detached
}

// Adoption says what New found pinned and took over, or "" when it pinned
// fresh state (or PinRoot is not set). It is shown in status and logged.
func (e *Enforcer) Adoption() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.adoption
}

// Detach removes everything pinned under root: once no process holds them,
// the links detach and the maps are freed. It refuses a root that is not on
// a BPF filesystem, so a wrong path never deletes files.
func Detach(root string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("bpflsm: detach %s: %w", root, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("bpflsm: detach %s: not on a BPF filesystem", root)
	}
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("bpflsm: detach: %w", err)
	}
	return nil
}

// DetachWait is Detach for the `kubearmor detach` command: it returns once
// the kernel has detached every program whose link was pinned under root,
// or says which are still attached after wait. Removing the last pin of a
// link does not detach it at once: since Linux 6.4 the link is released
// from a workqueue (bpf_link_put), and its ID stops resolving before that
// work runs, so the link ID cannot tell. Its program can: the link holds a
// reference to it and drops it only after detaching, so a program ID that
// no longer resolves means detached. An admin who runs the command, and a
// package removal after it, can then rely on "detached" meaning detached.
// A program still there after wait is held by a process: a running agent.
func DetachWait(root string, wait time.Duration) error {
	progs := pinnedLinkPrograms(root)
	if err := Detach(root); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		var left []string
		for _, id := range progs {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue // freed: detached
			}
			p.Close()
			left = append(left, fmt.Sprint(id))
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bpflsm: detach: unpinned, but programs %s are still loaded after %s: a running agent holds them (stop it, or they detach when it exits): %w", strings.Join(left, ","), wait, errStillAttached)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errStillAttached = errors.New("still attached")

// IsStillAttached reports whether DetachWait removed the pins but a process
// still holds some of the programs.
func IsStillAttached(err error) bool { return errors.Is(err, errStillAttached) }

// pinnedLinkPrograms lists the IDs of the programs of the links pinned
// anywhere below root.
func pinnedLinkPrograms(root string) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return nil // a map, or not a link
		}
		if info, err := l.Info(); err == nil {
			ids = append(ids, info.Program)
		}
		l.Close()
		return nil
	})
	return ids
}

// Unpin removes every pin under PinRoot, so that Close detaches the
// programs (the graceful stop, `kubearmor --detach-on-exit`).
func (e *Enforcer) Unpin() error {
	if e.opts.PinRoot == "" {
		return nil
	}
	return Detach(e.opts.PinRoot)
}

// programs lists the object's programs by name, from the bpf2go struct, so
// that a hook added to the C side is attached (and pinned) without a list
// to keep in step here.
func (e *Enforcer) programs() (names []string, progs []*ebpf.Program) {
	v := reflect.ValueOf(&e.objs.enforcerPrograms).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if p, ok := v.Field(i).Interface().(*ebpf.Program); ok && name != "" {
			names, progs = append(names, name), append(progs, p)
		}
	}
	return names, progs
}

// openPinned loads the enforcer with its state pinned under PinRoot,
// adopting what an earlier agent left there (see the top of this file).
func (e *Enforcer) openPinned(spec *ebpf.CollectionSpec) error {
	root := e.opts.PinRoot
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("bpflsm: pin root: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("bpflsm: pin root %s is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)", root)
	}
	e.version = e.opts.ObjectVersion
	if e.version == "" {
		e.version = ObjectVersion()
	}
	e.pinDir = filepath.Join(root, e.version)
	for _, d := range []string{"maps", "links"} {
		if err := os.MkdirAll(filepath.Join(e.pinDir, d), 0o700); err != nil {
			return fmt.Errorf("bpflsm: pin dir: %w", err)
		}
	}
	for name, ms := range spec.Maps {
		if name != "" && name[0] != '.' { // .rodata and the like: the programs hold them
			ms.Pinning = ebpf.PinByName
		}
	}
	collOpts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: filepath.Join(e.pinDir, "maps")}}
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)

	// Same version, every link pinned: adopt without loading a program.
	if links := openLinks(filepath.Join(e.pinDir, "links"), names); len(links) == len(names) {
		start := time.Now()
		if err := spec.LoadAndAssign(&e.objs.enforcerMaps, collOpts); err != nil {
			closeLinks(links)
			return fmt.Errorf("bpflsm: adopt the maps pinned in %s: %w (kubearmor detach removes them)", e.pinDir, err)
		}
		e.loadTime = time.Since(start)
		e.links = links
		gen, err := e.inherit()
		if err != nil {
			return err
		}
		e.adoption = fmt.Sprintf("adopted the enforcer pinned in %s (object version %s, %d links, %s)", e.pinDir, e.version, len(links), gen)
		return nil
	} else {
		closeLinks(links) // some missing: attach below replaces them all
	}

	if err := e.load(spec, collOpts); err != nil {
		return err
	}
	gen, err := e.inherit()
	if err != nil {
		return err
	}
	e.old, err = openPrevious(root, e.version)
	if err != nil {
		return err
	}
	if len(e.old) == 0 {
		// Nothing else enforces: attach now (links this version pinned
		// but not all of them are replaced one by one by attach).
		if err := e.attach(); err != nil {
			return err
		}
		if e.applied {
			e.adoption = fmt.Sprintf("adopted the maps pinned in %s (object version %s, %s) and attached the programs again", e.pinDir, e.version, gen)
		}
		return nil
	}
	var dirs []string
	for _, o := range e.old {
		dirs = append(dirs, filepath.Base(o.dir))
	}
	e.adoption = fmt.Sprintf("object version %s replaces the pinned version %v after the first rule set is applied", e.version, dirs)
	return nil
}

// inherit reads which generation an earlier process made active in the
// pinned maps: the next commit writes the other one and, not knowing the
// earlier process's keys, scans for them.
func (e *Enforcer) inherit() (string, error) {
	var active uint32
	if err := e.objs.Active.Lookup(uint32(0), &active); err != nil {
		return "", fmt.Errorf("bpflsm: read the active generation: %w", err)
	}
	if active == 0 {
		return "no rules applied", nil
	}
	e.gen, e.applied, e.inherited = active-1, true, true
	return fmt.Sprintf("rule generation %d in force", active-1), nil
}

// openLinks opens the pinned links of names under dir; it stops at the
// first one missing.
func openLinks(dir string, names []string) []link.Link {
	var links []link.Link
	for _, n := range names {
		l, err := link.LoadPinnedLink(filepath.Join(dir, n), nil)
		if err != nil {
			break
		}
		links = append(links, l)
	}
	return links
}

func closeLinks(links []link.Link) {
	for _, l := range links {
		_ = l.Close()
	}
}

// openPrevious opens the links and ring buffer of every other version
// pinned under root.
func openPrevious(root, version string) ([]previous, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("bpflsm: read %s: %w", root, err)
	}
	var out []previous
	for _, ent := range ents {
		if !ent.IsDir() || ent.Name() == version {
			continue
		}
		p := previous{dir: filepath.Join(root, ent.Name())}
		files, _ := os.ReadDir(filepath.Join(p.dir, "links"))
		for _, f := range files {
			l, err := link.LoadPinnedLink(filepath.Join(p.dir, "links", f.Name()), nil)
			if err != nil {
				continue // not a link: removed with the directory
			}
			p.links = append(p.links, l)
		}
		if m, err := ebpf.LoadPinnedMap(filepath.Join(p.dir, "maps", "events"), nil); err == nil {
			p.events = m
		}
		out = append(out, p)
	}
	return out, nil
}

// replacePrevious detaches the other versions once this one's programs are
// attached with the rules applied, and counts what their ring buffers still
// held (their record layout may differ from this version's, so the records
// are counted, not decoded). The caller holds e.mu.
func (e *Enforcer) replacePrevious() {
	var dirs []string
	for _, p := range e.old {
		// Unpin first, then close: the close detaches.
		_ = os.RemoveAll(p.dir)
		closeLinks(p.links)
		if p.events != nil {
			if r, err := ringbuf.NewReader(p.events); err == nil {
				var rec ringbuf.Record
				r.SetDeadline(time.Now())
				for r.ReadInto(&rec) == nil {
					e.carried++
				}
				_ = r.Close()
			}
			_ = p.events.Close()
		}
		dirs = append(dirs, filepath.Base(p.dir))
	}
	e.old = nil
	e.adoption = fmt.Sprintf("object version %s replaced the pinned version %v with no gap (%d events left in its ring buffer counted, not decoded)", e.version, dirs, e.carried)
}

// purge deletes every key of generation gen: the keys an earlier process
// wrote, which this one never saw. The caller holds e.mu.
func (e *Enforcer) purge(gen uint32) {
	of := func(tag uint32) bool { return tag>>genShift == gen }
	var pk enforcerPathKey
	purgeKeys(e.objs.PathRules, &pk, func() bool { return of(pk.Kind) })
	var nk enforcerNetKey
	purgeKeys(e.objs.NetRules, &nk, func() bool { return of(nk.Kind) })
	var sk enforcerSrcKey
	purgeKeys(e.objs.Sources, &sk, func() bool { return of(sk.Gen) })
	var tk enforcerPatternKey
	purgeKeys(e.objs.Patterns, &tk, func() bool { return of(tk.Gen) })
	var ik enforcerPatternIndexKey
	purgeKeys(e.objs.PatternIndex, &ik, func() bool { return of(ik.Gen) })
	var ck enforcerScopeKey
	purgeKeys(e.objs.Scopes, &ck, func() bool { return ck.Gen == gen })
	for s := uint32(1); s < maxScopes; s++ {
		_ = e.objs.Configs.Put(gen*maxScopes+s, &enforcerConfig{})
	}
}

// purgeKeys deletes the keys of m for which match (reading *key) holds.
func purgeKeys[K any](m *ebpf.Map, key *K, match func() bool) {
	var doomed []K
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(key, &val) {
		if match() {
			doomed = append(doomed, *key)
		}
	}
	for i := range doomed {
		_ = m.Delete(&doomed[i])
	}
}
