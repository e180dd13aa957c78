// Package policystore keeps the policies in force: every *.yaml and *.yml file
// of the policy directory, watched live, plus the policies PolicyService
// writes there. Each change is parsed, checked and compiled into a new
// RuleSet. A file that fails keeps its last good version in force, so nothing
// already enforced is lost to a typo.
package policystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// settle is how long the watcher waits after a change before reading, so an
// editor's write-then-rename or a burst of writes is read once.
const settle = 50 * time.Millisecond

// Snapshot is what the store publishes after every change.
type Snapshot struct {
	Generation uint64
	RuleSet    *hostpolicy.RuleSet
	Files      []FileStatus // sorted by name
	Change     string       // what caused this snapshot, for the log
}

// FileStatus is the state of one policy file.
type FileStatus struct {
	Name     string   // base name in the policy directory
	Policies []string // names of the policies in force from this file
	Errors   []string // why the current content was rejected ("" when it is in force)
	Warnings []string
}

type fileState struct {
	good     []*hostpolicy.Policy // last good version, in force
	sum      [32]byte             // hash of the content last read, good or bad
	errors   []string
	warnings []string
	dup      bool // rejected only for a name another file holds: retried when files change
}

// Store owns the policy directory.
type Store struct {
	dir     string
	log     *slog.Logger
	publish func(Snapshot)

	mu    sync.Mutex
	opts  hostpolicy.Options
	files map[string]*fileState
	gen   uint64
	last  Snapshot
}

// Open creates the directory if needed (mode 0700), loads every policy file
// in it, and publishes the first snapshot before returning.
func Open(dir string, opts hostpolicy.Options, log *slog.Logger, publish func(Snapshot)) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	s := &Store{dir: dir, log: log, publish: publish, opts: opts, files: map[string]*fileState{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := s.listFiles()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		s.load(name)
	}
	s.commit("initial load")
	return s, nil
}

// Dir is the watched directory.
func (s *Store) Dir() string { return s.dir }

// Snapshot returns the last published snapshot.
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Policies returns the policies in force, sorted by name.
func (s *Store) Policies() []*hostpolicy.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inForce()
}

// SetOptions recompiles with new options (a config reload changed postures).
func (s *Store) SetOptions(opts hostpolicy.Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = opts
	s.commit("configuration changed")
}

// Rescan re-reads every file (SIGHUP), in case the watcher missed something.
func (s *Store) Rescan() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := s.listFiles()
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	for n := range s.files {
		if !present[n] {
			names = append(names, n)
		}
	}
	if s.reload(names) {
		s.commit("rescan")
	}
	return nil
}

// Run watches the directory until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	// A change between Open's read and the watch start would be missed.
	if err := s.Rescan(); err != nil {
		s.log.Error("policy rescan failed", "dir", s.dir, "err", err)
	}
	pending := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policy watcher closed")
			}
			name := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != filepath.Clean(s.dir) || !isPolicyFile(name) {
				continue
			}
			if len(pending) == 0 {
				timer.Reset(settle)
			}
			pending[name] = true
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("policy watcher closed")
			}
			// An overflow means lost events: read everything again.
			s.log.Warn("policy watcher error; rescanning", "dir", s.dir, "err", err)
			if err := s.Rescan(); err != nil {
				s.log.Error("policy rescan failed", "dir", s.dir, "err", err)
			}
		case <-timer.C:
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			sort.Strings(names)
			pending = map[string]bool{}
			s.mu.Lock()
			if s.reload(names) {
				s.commit("changed: " + strings.Join(names, ", "))
			}
			s.mu.Unlock()
		}
	}
}

// isPolicyFile: *.yaml and *.yml, not hidden (editor swap files, our own temp files).
func isPolicyFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

func (s *Store) listFiles() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && isPolicyFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// reload re-reads the named files and reports whether anything changed.
func (s *Store) reload(names []string) bool {
	changed := false
	for _, n := range names {
		if s.load(n) {
			changed = true
		}
	}
	if changed {
		for n, st := range s.files {
			if st.dup && s.load(n) && len(st.errors) == 0 {
				s.log.Info("policy file accepted after a conflicting file changed", "file", n)
			}
		}
	}
	return changed
}

// load reads one file into its state and reports whether the state changed.
func (s *Store) load(name string) bool {
	path := filepath.Join(s.dir, name)
	data, err := os.ReadFile(path)
	st := s.files[name]
	if errors.Is(err, fs.ErrNotExist) {
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
	if err != nil {
		st.errors = []string{fmt.Sprintf("%s: %v", path, err)}
		s.logRejected(path, st)
		return true
	}
	sum := sha256.Sum256(data)
	if sum == st.sum && (st.good != nil || st.errors != nil) {
		return false
	}
	st.sum = sum
	policies, diags := hostpolicy.Parse(path, data)
	st.warnings = nil
	for _, d := range diags.Warnings() {
		st.warnings = append(st.warnings, d.String())
	}
	st.errors, st.dup = nil, false
	if diags.HasErrors() {
		for _, d := range diags {
			if !d.Warning {
				st.errors = append(st.errors, d.String())
			}
		}
	} else if dup := s.duplicates(name, policies); dup != nil {
		st.errors = dup
		st.dup = true
		st.sum = [32]byte{} // read again on the next change: the other file may go away
	}
	if st.errors != nil {
		s.logRejected(path, st)
		return true
	}
	st.good = policies
	if st.good == nil {
		st.good = []*hostpolicy.Policy{}
	}
	for _, w := range st.warnings {
		s.log.Warn("policy warning", "detail", w)
	}
	s.log.Info("policy file loaded", "file", path, "policies", policyNames(policies))
	return true
}

func (s *Store) logRejected(path string, st *fileState) {
	kept := "none"
	if len(st.good) > 0 {
		kept = strings.Join(policyNames(st.good), ",")
	}
	for _, e := range st.errors {
		s.log.Error("policy rejected", "detail", e)
	}
	s.log.Error("policy file rejected; its last good version stays in force", "file", path, "errors", len(st.errors), "kept", kept)
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
						filepath.Join(s.dir, name), p.Origin.LineOf("metadata.name"), p.Metadata.Name, filepath.Join(s.dir, other)))
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

// commit compiles the policies in force and publishes the result.
func (s *Store) commit(change string) {
	s.gen++
	snap := Snapshot{
		Generation: s.gen,
		RuleSet:    hostpolicy.Compile(s.inForce(), s.opts),
		Change:     change,
	}
	names := make([]string, 0, len(s.files))
	for n := range s.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st := s.files[n]
		snap.Files = append(snap.Files, FileStatus{Name: n, Policies: policyNames(st.good), Errors: st.errors, Warnings: st.warnings})
	}
	s.last = snap
	s.publish(snap)
}

// ErrRejected: the policy was written but its file was rejected (for example
// its name is already defined in another file); the last good version stays.
var ErrRejected = errors.New("policy rejected")

// Result is the outcome of a PolicyService request.
type Result int

const (
	Applied  Result = iota + 1 // a new policy, or identical to the one in force
	Modified                   // replaced a policy in force
	Deleted
	NotExist // delete of a policy that is not in force
)

func (r Result) String() string {
	return [...]string{"", "Applied", "Modified", "Deleted", "NotExist"}[r]
}

// Apply carries out a PolicyService request through the directory, so files
// stay the one source of truth: the policy is written to <name>.yaml (or to
// the file that already holds it alone) and loaded at once; a delete removes
// that file. A policy that shares its file with others is not touched.
func (s *Store) Apply(ev *hostpolicy.Event) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := ev.Policy.Metadata.Name
	owner, alone := s.owner(name)
	if owner != "" && !alone {
		return 0, fmt.Errorf("policy %s shares %s with other policies; edit that file instead", name, filepath.Join(s.dir, owner))
	}
	if ev.Type == "DELETED" {
		if owner == "" {
			return NotExist, nil
		}
		if err := os.Remove(filepath.Join(s.dir, owner)); err != nil {
			return 0, fmt.Errorf("delete policy %s: %w", name, err)
		}
		s.load(owner)
		s.commit("deleted by PolicyService: " + name)
		return Deleted, nil
	}
	file := owner
	if file == "" {
		file = name + ".yaml"
		if st, taken := s.files[file]; taken && len(st.good) > 0 {
			return 0, fmt.Errorf("%s already holds other policies", filepath.Join(s.dir, file))
		}
	}
	result := Applied
	if owner != "" {
		old, _ := hostpolicy.Render(s.files[owner].good[0])
		newText, _ := hostpolicy.Render(ev.Policy)
		if bytes.Equal(old, newText) {
			return Applied, nil // identical re-add: nothing to do, as upstream
		}
		result = Modified
	}
	header := fmt.Sprintf("# Written by kubearmor from a PolicyService request at %s.\n# Edit freely: this file is the policy.\n", time.Now().UTC().Format(time.RFC3339))
	if err := writeAtomic(filepath.Join(s.dir, file), append([]byte(header), ev.YAML...)); err != nil {
		return 0, fmt.Errorf("write policy %s: %w", name, err)
	}
	s.load(file)
	if st := s.files[file]; len(st.errors) > 0 {
		return 0, fmt.Errorf("%w: policy %s was written to %s: %s", ErrRejected, name, file, strings.Join(st.errors, "; "))
	}
	s.commit(strings.ToLower(result.String()) + " by PolicyService: " + name)
	return result, nil
}

// owner finds the file holding a policy and whether it holds only that one.
func (s *Store) owner(name string) (file string, alone bool) {
	for n, st := range s.files {
		for _, p := range st.good {
			if p.Metadata.Name == name {
				return n, len(st.good) == 1
			}
		}
	}
	return "", false
}

// writeAtomic writes data to path with mode 0600 through a hidden temporary
// file and a rename, so the watcher never reads half a policy.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
