package policystore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// ErrRejected: the request was refused and nothing was written (for example
// its name is already defined in another file, or its YAML is too large);
// the last good version stays.
var ErrRejected = errors.New("policy rejected")

// maxNameBytes is the longest file name Linux file systems take.
const maxNameBytes = 255

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
//
// What is written is the request rendered as YAML (aliases expanded), so it
// must fit the bound on a policy file. It is parsed and checked against the
// other files before anything is written, then written to a hidden
// temporary file and renamed into place: a rejected request leaves no file
// behind, and the watcher never sees half of one.
func (s *Store) Apply(ev *hostpolicy.Event) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := ev.Policy.Metadata.Name
	owner, alone := s.owner(name)
	if isSourceEntry(owner) {
		return 0, fmt.Errorf("%w: policy %s comes from %s; change or delete it there", ErrRejected, name, s.shown(owner))
	}
	if owner != "" && !alone {
		return 0, fmt.Errorf("policy %s shares %s with other policies; edit that file instead", name, s.shown(owner))
	}
	if ev.Type == "DELETED" {
		if owner == "" {
			return NotExist, nil
		}
		if err := os.Remove(filepath.Join(s.dir, owner)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("delete policy %s: %w", name, err)
		}
		s.apply(owner, readResult{missing: true}, time.Now())
		s.commit("deleted by PolicyService: " + name)
		return Deleted, nil
	}
	file := owner
	if file == "" {
		file = name + ".yaml"
		if len(file) > maxNameBytes {
			return 0, fmt.Errorf("%w: policy name %s is %d bytes: its file name %s.yaml would be longer than the %d bytes a file name may have; not written",
				ErrRejected, name, len(name), name, maxNameBytes)
		}
		if st, taken := s.files[file]; taken && len(st.good) > 0 {
			return 0, fmt.Errorf("%s already holds other policies", s.shown(file))
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
	if n := len(header) + len(ev.YAML); n > maxFileBytes {
		return 0, fmt.Errorf("%w: policy %s is %d bytes once written as YAML (aliases expanded), more than the %d bytes a policy file may have; not written",
			ErrRejected, name, n, maxFileBytes)
	}
	data := append([]byte(header), ev.YAML...)

	// Check first, as the file would be read; write only what is accepted.
	policies, diags := hostpolicy.Parse(s.shown(file), data)
	errs, _, moreErrs, _ := split(diags)
	if len(errs) == 0 {
		if len(policies) != 1 || policies[0].Metadata.Name != name {
			errs = []string{fmt.Sprintf("%s: the written YAML does not read back as policy %s", s.shown(file), name)}
		} else {
			errs = s.others(file, policies)
		}
	}
	if len(errs) > 0 {
		return 0, fmt.Errorf("%w: policy %s: %s; not written", ErrRejected, name, strings.Join(bounded(errs, "errors", moreErrs), "; "))
	}

	if err := writeAtomic(s.dir, file, data); err != nil {
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return 0, fmt.Errorf("%w: write policy %s to %s: the file name is too long for this file system; not written", ErrRejected, name, s.shown(file))
		}
		if _, statErr := os.Stat(s.dir); errors.Is(statErr, fs.ErrNotExist) {
			return 0, fmt.Errorf("write policy %s: the policy directory %s does not exist", name, s.shown(""))
		}
		return 0, fmt.Errorf("write policy %s to %s: %w", name, s.shown(file), err)
	}
	// What was checked is what was written: take it as read. The watcher's
	// read of the same content finds nothing new.
	s.apply(file, readResult{data: data}, time.Now())
	if st := s.files[file]; len(st.errors) > 0 {
		// Not reachable while the check above matches apply's; kept so a
		// divergence is an error, never a silent rejection.
		return 0, fmt.Errorf("%w: policy %s was written to %s: %s", ErrRejected, name, s.shown(file), strings.Join(st.errors, "; "))
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

// writeAtomic writes data to dir/name with mode 0600 through a hidden
// temporary file (a short name, so a long policy name fails on the rename
// with a clear error rather than on the temporary file) and a rename, so
// the watcher never reads half a policy. On any failure nothing is left.
func writeAtomic(dir, name string, data []byte) (err error) {
	tmp, err := os.CreateTemp(dir, ".kubearmor-write-*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
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
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
