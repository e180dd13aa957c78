// Package policystore keeps the policies in force: every *.yaml and *.yml file
// of the policy directory, watched live, plus the policies PolicyService
// writes there. Each change is parsed, checked and compiled into a new
// RuleSet. A file that fails keeps its last good version in force, so nothing
// already enforced is lost to a typo.
package policystore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

const (
	// settle is how long the watcher gathers events before reading, so a
	// burst of closes and renames is read once.
	settle = 50 * time.Millisecond
	// emptySettle is how long a file that held policies must stay empty
	// before it counts as "no policies": a truncate followed by a write
	// (an editor, `cat >`) must not drop enforcement in between.
	emptySettle = 2 * time.Second
	// maxReported bounds the errors and the warnings reported per file, in
	// the log, on WatchMessages and in status; the rest are counted.
	maxReported = 20
	// maxMessageBytes bounds one reported message (an unknown field's name
	// is user input of any length).
	maxMessageBytes = 1024
)

// Snapshot is what the store publishes after every change.
type Snapshot struct {
	Generation uint64
	RuleSet    *hostpolicy.RuleSet
	Files      []FileStatus // sorted by name
	Warnings   []string     // the directory's: missing, writable by others
	Change     string       // what caused this snapshot, for the log

	policies []*hostpolicy.Policy // in force, sorted by name
}

// FileStatus is the state of one policy file. Every string is valid UTF-8
// (event.ValidText) and the lists are bounded, so a status always encodes.
type FileStatus struct {
	Name     string   // base name in the policy directory
	Policies []string // names of the policies in force from this file
	Errors   []string // why the current content was rejected ("" when it is in force)
	Warnings []string
}

type fileState struct {
	good       []*hostpolicy.Policy // last good version, in force
	sum        [32]byte             // hash of the content last read, good or bad
	errors     []string             // bounded, valid UTF-8
	warnings   []string             // the parser's, bounded, valid UTF-8
	perm       []string             // who besides root can change the file
	rules      int                  // rules good compiles to (hostpolicy.CountRules), for the host's cap
	retry      bool                 // rejected only because of other files (a name they hold, the host's rule cap): retried when files change
	emptySince time.Time            // found empty while it held policies; not yet taken as "no policies"
	goodDoc    []byte               // a source document's content that good came from (sources.go)
}

// Store owns the policy directory.
//
// Locking: mu serializes every change (reads of the directory, PolicyService
// writes, compile, publish). Readers (Snapshot, Policies, hence `kubearmor
// status`) never take it: they load the last published snapshot atomically,
// so a slow compile, a slow enforcer or a slow disk never delays status.
type Store struct {
	dir     string
	log     *slog.Logger
	publish func(Snapshot)
	kick    chan struct{} // wakes Run when a file starts its empty settle

	mu         sync.Mutex
	opts       hostpolicy.Options
	files      map[string]*fileState
	gen        uint64
	dirMissing bool
	dirPerm    []string
	docs       map[string][]byte // documents of other sources, by entry name (sources.go)

	last atomic.Pointer[Snapshot]
}

// Open creates the directory if needed (mode 0700), loads every policy file
// in it, and publishes the first snapshot before returning.
func Open(dir string, opts hostpolicy.Options, log *slog.Logger, publish func(Snapshot)) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	s := &Store{dir: filepath.Clean(dir), log: log, publish: publish, opts: opts,
		files: map[string]*fileState{}, docs: map[string][]byte{}, kick: make(chan struct{}, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := s.listFiles()
	if err != nil {
		return nil, err
	}
	s.checkDir()
	now := time.Now()
	for _, name := range names {
		s.load(name, now)
	}
	s.commit("initial load")
	return s, nil
}

// Dir is the watched directory.
func (s *Store) Dir() string { return s.dir }

// Snapshot returns the last published snapshot. It never waits for the
// store's work in progress.
func (s *Store) Snapshot() Snapshot {
	if p := s.last.Load(); p != nil {
		return *p
	}
	return Snapshot{}
}

// Policies returns the policies in force, sorted by name.
func (s *Store) Policies() []*hostpolicy.Policy {
	return s.Snapshot().policies
}

// SetOptions recompiles with new options (a config reload changed postures).
func (s *Store) SetOptions(opts hostpolicy.Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = opts
	for _, st := range s.files {
		st.rules = hostpolicy.CountRules(st.good, opts) // the host may select other policies
	}
	s.commit("configuration changed")
}

// Rescan re-reads every file (SIGHUP), in case the watcher missed something.
// A directory that no longer exists is not an error: its policies are
// removed, with a warning in the log and in status.
func (s *Store) Rescan() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rescan() {
		s.commit("rescan")
	}
	return nil
}

// rescan reads the whole directory; the caller holds mu.
func (s *Store) rescan() bool {
	names, err := s.listFiles()
	if errors.Is(err, fs.ErrNotExist) {
		return s.dirGone()
	}
	changed := s.checkDir()
	if err != nil {
		s.log.Error("policy directory unreadable; the policies in force stay", "dir", event.ValidText(s.dir), "err", event.ValidText(err.Error()))
		return changed
	}
	if s.dirMissing {
		s.dirMissing = false
		changed = true
		s.log.Warn("policy directory is back; loading its files", "dir", event.ValidText(s.dir))
	}
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	for n := range s.files {
		if !present[n] && !isSourceEntry(n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return s.reload(names, time.Now()) || changed
}

// dirGone removes the policies of a directory that no longer exists, as if
// each of its files had been deleted: the directory is the one source of
// truth, and `rm -r` of it deletes every file first anyway. The caller
// holds mu.
func (s *Store) dirGone() bool {
	if s.dirMissing {
		return false
	}
	s.dirMissing = true
	var removed []string
	for n, st := range s.files {
		if !isSourceEntry(n) { // other sources' documents stay
			removed = append(removed, policyNames(st.good)...)
			delete(s.files, n)
		}
	}
	sort.Strings(removed)
	s.dirPerm = nil
	s.log.Warn("policy directory removed: its policies are no longer enforced; it is watched and will be loaded again when it is re-created",
		"dir", event.ValidText(s.dir), "removed", strings.Join(removed, ","))
	return true
}

// checkDir warns when someone other than root can change the directory,
// and reports whether that changed. The caller holds mu.
func (s *Store) checkDir() bool {
	var perm []string
	if fi, err := os.Stat(s.dir); err == nil {
		perm = writableBy("policy directory", s.dir, fi)
	}
	perm = bounded(perm, "warnings")
	if slices.Equal(perm, s.dirPerm) {
		return false
	}
	s.dirPerm = perm
	for _, w := range perm {
		s.log.Warn("policy directory permissions", "detail", w)
	}
	if perm == nil {
		s.log.Info("policy directory is writable by root only", "dir", event.ValidText(s.dir))
	}
	return true
}

// isPolicyFile: *.yaml and *.yml, not hidden (editor swap files, our own temp files).
func isPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// listFiles names every policy entry, whatever its type: readPolicyFile
// decides what is read, so that a symlink is treated the same at start as
// live, and a FIFO is reported rather than skipped in silence.
func (s *Store) listFiles() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if isPolicyFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// reload re-reads the named files and reports whether anything changed.
func (s *Store) reload(names []string, now time.Time) bool {
	changed := false
	for _, n := range names {
		if s.load(n, now) {
			changed = true
		}
	}
	if changed {
		for n, st := range s.files {
			if st.retry && s.load(n, now) && len(st.errors) == 0 {
				s.log.Info("policy file accepted after a conflicting file changed", "file", s.shown(n))
			}
		}
	}
	return changed
}

// shown is a file's path as it may appear in the log and in status.
func (s *Store) shown(name string) string {
	if isSourceEntry(name) {
		return event.ValidText(name)
	}
	return event.ValidText(filepath.Join(s.dir, name))
}

// load reads one file into its state and reports whether the state changed.
func (s *Store) load(name string, now time.Time) bool {
	if isSourceEntry(name) {
		return s.apply(name, s.readDoc(name), now)
	}
	return s.apply(name, readPolicyFile(filepath.Join(s.dir, name)), now)
}

// apply takes what reading a file found and reports whether its state
// changed. The caller holds mu.
func (s *Store) apply(name string, r readResult, now time.Time) bool {
	path := s.shown(name)
	st := s.files[name]
	if r.missing {
		if st == nil {
			return false
		}
		delete(s.files, name)
		s.log.Info("policy file removed", "file", path, "policies", policyNames(st.good))
		return true
	}
	if st == nil {
		st = &fileState{}
		s.files[name] = st
	}
	changed := s.setPerm(name, st, bounded(r.perm, "warnings"))
	if r.err != nil {
		errs := bounded([]string{r.err.Error()}, "errors")
		if st.sum == [32]byte{} && slices.Equal(errs, st.errors) {
			return changed // the same refusal: reported already
		}
		st.errors, st.warnings, st.retry = errs, nil, false
		st.sum, st.emptySince = [32]byte{}, time.Time{}
		s.logRejected(path, st)
		return true
	}
	empty := len(r.data) == 0
	// Every empty file settles, a new one too: editors and scripts create
	// a file and write it in a second step, and a file that is gone or
	// filled again within the settle time was never "empty".
	if empty && !r.whole {
		if st.emptySince.IsZero() {
			st.emptySince = now
			if len(st.good) > 0 {
				s.log.Warn("policy file is empty; its last good version stays in force unless it stays empty",
					"file", path, "settle", emptySettle.String(), "kept", strings.Join(policyNames(st.good), ","))
			}
			select {
			case s.kick <- struct{}{}:
			default:
			}
			return true
		}
		if now.Sub(st.emptySince) < emptySettle {
			return changed
		}
	}
	wasPending := !st.emptySince.IsZero()
	st.emptySince = time.Time{}
	sum := sha256.Sum256(r.data)
	if sum == st.sum && (st.good != nil || st.errors != nil) {
		return changed || wasPending
	}
	st.sum = sum
	policies, diags := hostpolicy.Parse(path, r.data)
	errs, warns, moreErrs, moreWarns := split(diags)
	st.warnings = bounded(warns, "warnings", moreWarns)
	st.errors, st.retry = nil, false
	rules := 0
	if len(errs) > 0 {
		st.errors = bounded(errs, "errors", moreErrs)
	} else if others := s.others(name, policies); others != nil {
		st.errors = bounded(others, "errors")
		st.retry = true
		st.sum = [32]byte{} // read again on the next change: the other file may go away
	} else {
		rules = hostpolicy.CountRules(policies, s.opts)
	}
	if st.errors != nil {
		s.logRejected(path, st)
		return true
	}
	st.good, st.rules = policies, rules
	if r.whole {
		st.goodDoc = r.data
	}
	if st.good == nil {
		st.good = []*hostpolicy.Policy{}
	}
	for _, w := range st.warnings {
		s.log.Warn("policy warning", "detail", w)
	}
	if empty {
		s.log.Warn("policy file is empty: no policies from it", "file", path)
	} else {
		s.log.Info("policy file loaded", "file", path, "policies", policyNames(policies))
	}
	return true
}

// setPerm records who besides root can change a file, warning when that
// changes for the worse.
func (s *Store) setPerm(name string, st *fileState, perm []string) bool {
	if slices.Equal(perm, st.perm) {
		return false
	}
	st.perm = perm
	for _, w := range perm {
		s.log.Warn("policy file permissions", "detail", w)
	}
	if perm == nil {
		s.log.Info("policy file is writable by root only", "file", s.shown(name))
	}
	return true
}

// refreshPerm re-checks a file's owner and mode after a chmod or chown,
// without reading it (it may be half-written).
func (s *Store) refreshPerm(name string) bool {
	st := s.files[name]
	if st == nil {
		return false
	}
	return s.setPerm(name, st, bounded(filePerm(filepath.Join(s.dir, name)), "warnings"))
}

// checkEmpty settles a file found empty while it held policies: still
// empty after emptySettle, it now holds no policies. Found with content,
// a write is under way (or just ended, and its close is queued): the close
// loads it, never this half-written read. The caller holds mu.
func (s *Store) checkEmpty(name string, now time.Time) bool {
	st := s.files[name]
	if st == nil || st.emptySince.IsZero() || now.Sub(st.emptySince) < emptySettle {
		return false
	}
	r := readPolicyFile(filepath.Join(s.dir, name))
	if r.missing || r.err != nil || len(r.data) == 0 {
		return s.apply(name, r, now)
	}
	st.emptySince = time.Time{}
	return true
}

// nextEmptyCheck is when the earliest empty settle ends (zero: none).
func (s *Store) nextEmptyCheck() (time.Time, []string) {
	var first time.Time
	var names []string
	for n, st := range s.files {
		if st.emptySince.IsZero() {
			continue
		}
		names = append(names, n)
		if at := st.emptySince.Add(emptySettle); first.IsZero() || at.Before(first) {
			first = at
		}
	}
	sort.Strings(names)
	return first, names
}

func (s *Store) logRejected(path string, st *fileState) {
	kept := "none"
	if len(st.good) > 0 {
		kept = strings.Join(policyNames(st.good), ",")
	}
	for _, e := range st.errors {
		s.log.Error("policy rejected", "detail", e)
	}
	s.log.Error("policy file rejected; its last good version stays in force", "file", path, "kept", kept)
}

// split sorts the parser's findings into errors and warnings. The parser
// reports at most hostpolicy.MaxDiagnostics findings and then one counting
// the rest; those counts are returned apart, so the store's own, shorter
// list counts every finding it does not show.
func split(diags hostpolicy.Diagnostics) (errs, warns []string, moreErrs, moreWarns int) {
	if n := len(diags); n > hostpolicy.MaxDiagnostics {
		var e, w int
		if _, err := fmt.Sscanf(diags[n-1].Msg, "and %d more errors and %d more warnings", &e, &w); err == nil {
			diags, moreErrs, moreWarns = diags[:n-1], e, w
		}
	}
	for _, d := range diags {
		if d.Warning {
			warns = append(warns, d.String())
		} else {
			errs = append(errs, d.String())
		}
	}
	return errs, warns, moreErrs, moreWarns
}

// bounded makes messages fit for the log, WatchMessages and status: valid
// UTF-8, each at most maxMessageBytes, at most maxReported of them and then
// one line counting the rest (and the more not listed at all).
func bounded(msgs []string, what string, more ...int) []string {
	hidden := 0
	for _, m := range more {
		hidden += m
	}
	if len(msgs) == 0 && hidden == 0 {
		return nil
	}
	out := make([]string, 0, min(len(msgs), maxReported)+1)
	for i, m := range msgs {
		if i == maxReported {
			break
		}
		out = append(out, clip(event.ValidText(m)))
	}
	if hidden += len(msgs) - len(out); hidden > 0 {
		out = append(out, fmt.Sprintf("... and %d more %s", hidden, what))
	}
	return out
}

// clip cuts a valid UTF-8 string to about maxMessageBytes, at a character
// boundary.
func clip(s string) string {
	if len(s) <= maxMessageBytes {
		return s
	}
	n := maxMessageBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s... (%d more bytes)", s[:n], len(s)-n)
}

// others reports why name's new content cannot join the other files in
// force: a policy name one of them defines, or the host's rule cap.
func (s *Store) others(name string, policies []*hostpolicy.Policy) []string {
	if dup := s.duplicates(name, policies); dup != nil {
		return dup
	}
	n := 0
	for other, st := range s.files {
		if other != name {
			n += st.rules
		}
	}
	if _, diags := hostpolicy.FitHost(s.shown(name), policies, n, s.opts); diags.HasErrors() {
		var errs []string
		for _, d := range diags {
			errs = append(errs, d.String())
		}
		return errs
	}
	return nil
}

// duplicates reports policy names of name's new content that another file
// already defines, naming both files.
func (s *Store) duplicates(name string, policies []*hostpolicy.Policy) []string {
	var errs []string
	for _, p := range policies {
		for other, st := range s.files {
			if other == name {
				continue
			}
			for _, q := range st.good {
				if q.Metadata.Name == p.Metadata.Name {
					errs = append(errs, fmt.Sprintf("%s:%d: metadata.name: policy %s is already defined in %s",
						s.shown(name), p.Origin.LineOf("metadata.name"), p.Metadata.Name, s.shown(other)))
				}
			}
		}
	}
	return errs
}

func policyNames(ps []*hostpolicy.Policy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Metadata.Name
	}
	return out
}

func (s *Store) inForce() []*hostpolicy.Policy {
	var all []*hostpolicy.Policy
	for _, st := range s.files {
		all = append(all, st.good...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Metadata.Name < all[j].Metadata.Name })
	return all
}

// commit compiles the policies in force and publishes the result. The
// caller holds mu.
func (s *Store) commit(change string) {
	s.gen++
	inForce := s.inForce()
	snap := Snapshot{
		Generation: s.gen,
		RuleSet:    hostpolicy.Compile(inForce, s.opts),
		Change:     event.ValidText(change),
		policies:   inForce,
	}
	if s.dirMissing {
		snap.Warnings = append(snap.Warnings, fmt.Sprintf("policy directory %s does not exist: no policies are loaded from it until it is re-created", event.ValidText(s.dir)))
	}
	snap.Warnings = append(snap.Warnings, s.dirPerm...)
	names := make([]string, 0, len(s.files))
	for n := range s.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st := s.files[n]
		fs := FileStatus{Name: event.ValidText(n), Policies: policyNames(st.good), Errors: st.errors}
		fs.Warnings = append(fs.Warnings, st.perm...)
		fs.Warnings = append(fs.Warnings, st.warnings...)
		if !st.emptySince.IsZero() {
			fs.Warnings = append(fs.Warnings, fmt.Sprintf("empty since %s: its last good version stays in force unless it is still empty after %s",
				st.emptySince.UTC().Format(time.RFC3339), emptySettle))
		}
		snap.Files = append(snap.Files, fs)
	}
	s.last.Store(&snap)
	s.publish(snap)
}
