package apparmor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Profiles are kernel state that outlives the agent: a loaded profile stays
// in force until something removes it (docs/ARCHITECTURE.md, "Life cycle of
// kernel objects, and the way out").
//
//   - New adopts what an earlier agent left loaded (a restart, an upgrade, a
//     crash): each profile of ours in the kernel is taken to hold the text
//     that agent kept in Options.Dir, which it writes only once the kernel
//     has accepted the profile. No file, or a mode that is not the one we
//     load (a profile switched to complain), counts as unknown.
//   - The first Apply then replaces in place (apparmor_parser -r: the kernel
//     swaps a profile atomically, and the tasks it confines move to the new
//     one) every profile whose text differs, removes the ones the rules no
//     longer need and leaves the rest as they are: no program is ever
//     without its profile, and an unchanged profile is not touched at all.
//   - Close leaves the profiles loaded. Unpin (the agent's --detach-on-exit)
//     and Detach (kubearmor detach: systemctl stop, package removal) unload
//     them; a reboot does too (nothing of ours is loaded at boot).

// adoption is what New found loaded and what the first Apply did with it.
type adoption struct {
	found                   []string
	done                    bool
	kept, replaced, removed int
	// the verdicts of the gap replayed from the kernel log, and what its
	// rate limit suppressed (gap.go)
	replayed, suppressed int
}

// adopt takes over the profiles an earlier agent left loaded.
func (e *Enforcer) adopt() {
	inKernel, err := ourProfiles()
	if err != nil || len(inKernel) == 0 {
		return
	}
	a := &adoption{}
	for name, mode := range inKernel {
		want := "enforce"
		if _, helper := e.helpers[name]; helper {
			want = "unconfined"
		}
		text, err := os.ReadFile(filepath.Join(e.opts.Dir, name))
		if err != nil || mode != want {
			text = nil // unknown: the first Apply replaces it
		}
		e.loaded[name] = string(text)
		a.found = append(a.found, name)
	}
	sortByLoadOrder(a.found)
	e.adopted = a
	e.opts.Log.Info("apparmor: adopted the profiles an earlier agent left loaded; they enforce until the first rule set replaces those that differ in place",
		"profiles", strings.Join(a.found, ","))
}

// applied records what an Apply did to the adopted profiles; only the
// first Apply after New counts.
func (a *adoption) applied(profiles map[string]string, changed []string) {
	if a == nil || a.done {
		return
	}
	a.done = true
	for _, name := range a.found {
		switch {
		case slices.Contains(changed, name):
			a.replaced++
		case profiles[name] != "":
			a.kept++
		default:
			a.removed++
		}
	}
}

// Adoption says what New found loaded and what became of it, or "" when no
// profile of ours was loaded. It is shown in status and logged.
func (e *Enforcer) Adoption() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.adopted
	if a == nil {
		return ""
	}
	if !a.done {
		return fmt.Sprintf("adopted %d AppArmor profiles an earlier agent left loaded; the first rule set replaces those that differ in place", len(a.found))
	}
	s := fmt.Sprintf("adopted %d AppArmor profiles an earlier agent left loaded: %d unchanged, %d replaced in place, %d removed",
		len(a.found), a.kept, a.replaced, a.removed)
	if a.replayed > 0 || a.suppressed > 0 {
		s += fmt.Sprintf("; %d verdicts of the time no agent ran replayed from the kernel log, %d kernel log records suppressed by its rate limit", a.replayed, a.suppressed)
	}
	return s
}

// forgetRemoved drops from e.loaded the profiles that are no longer in the
// kernel (removed by root, or by kubearmor detach while this agent ran), so
// that Apply loads them again.
func (e *Enforcer) forgetRemoved() {
	inKernel, err := ourProfiles()
	if err != nil {
		return
	}
	for name := range e.loaded {
		if _, ok := inKernel[name]; !ok {
			e.opts.Log.Warn("apparmor: a profile of ours was removed behind the agent's back; loading it again", "profile", name)
			delete(e.loaded, name)
		}
	}
}

// Detach unloads every profile of ours the kernel holds and removes their
// files from dir: what `kubearmor detach` does for this tier. It returns the
// profiles it removed; none, and no error, where AppArmor is not enabled.
func Detach(dir string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inKernel, err := ourProfiles()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("apparmor: detach: %w", err)
	}
	names := make([]string, 0, len(inKernel))
	for name := range inKernel {
		names = append(names, name)
	}
	if err := removeAll(names, dir, log); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(dir, serialFile))
	sortByLoadOrder(names)
	_ = os.Remove(dir) // only once empty: nothing else of anyone's goes
	return names, nil
}

// removeAll unloads the profiles in the reverse of the load order (the
// profile keeping the agent unconfined goes last: an agent started while an
// earlier agent's profiles were loaded runs under it, and once it is gone
// the kernel can refuse it further removals, seen as EACCES on .remove) and
// removes their files from dir. A profile already gone is not an error.
func removeAll(names []string, dir string, log *slog.Logger) error {
	names = slices.Clone(names)
	sortByLoadOrder(names)
	slices.Reverse(names)
	var errs []error
	for _, name := range names {
		log.Debug("apparmor: removing profile", "profile", name)
		if err := removeProfile(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("apparmor: remove profile %s: %w", name, err))
		}
		_ = os.Remove(filepath.Join(dir, name))
	}
	return errors.Join(errs...)
}
