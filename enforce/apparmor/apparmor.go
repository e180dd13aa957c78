package apparmor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/decide"
)

// Name is the Enforcer string of the tier and its verdicts.
const Name = "AppArmor"

// DefaultDir is where profiles are written: /run is a tmpfs, so nothing of
// ours is there after a reboot, and AppArmor's boot loader never reads it.
const DefaultDir = "/run/kubearmor/apparmor"

const securityfs = "/sys/kernel/security/apparmor"

// Options configure the tier.
type Options struct {
	Dir    string // profile files; DefaultDir when empty
	Parser string // apparmor_parser; found on PATH, /sbin or /usr/sbin when empty
	// Version is the agent's build, written into every profile as a
	// comment: the text in the kernel (and in Dir) names the build that
	// loaded it, and an upgrade replaces every profile in place.
	Version string
	Log     *slog.Logger
}

// Enforcer loads profiles and reports AppArmor's verdicts on them.
type Enforcer struct {
	opts   Options
	audit  auditSource
	mu     sync.Mutex
	loaded map[string]string // profile name -> text in the kernel
	// helpers are the programs kept unconfined: profile name -> path
	helpers map[string]string
	closed  bool
	// unpinned: Unpin removed everything of ours; the serial file is not
	// written again (Run's goroutine may still be finishing: the agent
	// unpins before its parts have all returned)
	unpinned bool
	// adopted is what New found loaded (lifecycle.go); nil when nothing.
	adopted *adoption
	state   atomic.Pointer[state]
	// started bounds the gap's records replayed from the kernel log: later
	// ones come from the audit socket (gap.go)
	started time.Time
	// lastSerial is the serial of the last audit record read; savedSerial
	// what serialFile holds (written by Run's goroutine only)
	lastSerial  atomic.Uint64
	savedSerial uint64
}

// state is what verdicts are attributed with: the rules and which program
// each fromSource profile is for.
type state struct {
	rs      *hostpolicy.RuleSet
	table   *decide.Table
	sources map[string]string
}

// Supported says why AppArmor cannot be the enforcer here, or nil.
func Supported() error {
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(b)) != "Y" {
		return errors.New("AppArmor is disabled in the kernel")
	}
	if _, err := os.Stat(securityfs); err != nil {
		return fmt.Errorf("AppArmor is not enabled in the kernel (%s: %w)", securityfs, err)
	}
	if lsm, err := os.ReadFile("/sys/kernel/security/lsm"); err == nil && !strings.Contains(","+strings.TrimSpace(string(lsm))+",", ",apparmor,") {
		return errors.New("apparmor is not an active LSM (/sys/kernel/security/lsm)")
	}
	if _, err := findParser(""); err != nil {
		return err
	}
	return nil
}

func findParser(p string) (string, error) {
	if p != "" {
		return p, nil
	}
	for _, c := range []string{"apparmor_parser", "/sbin/apparmor_parser", "/usr/sbin/apparmor_parser"} {
		if path, err := exec.LookPath(c); err == nil {
			return path, nil
		}
	}
	return "", errors.New("apparmor_parser not found (install the apparmor package)")
}

// New adopts the profiles a previous agent left loaded (lifecycle.go: the
// first Apply replaces in place those that differ) and opens the kernel's
// audit records. Nothing is loaded until Apply.
func New(opts Options) (*Enforcer, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var err error
	if opts.Parser, err = findParser(opts.Parser); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("apparmor: %w", err)
	}
	e := &Enforcer{opts: opts, loaded: map[string]string{}, helpers: map[string]string{ParserProfile: resolved(opts.Parser)}}
	if exe, err := os.Executable(); err == nil {
		e.helpers[AgentProfile] = resolved(exe)
	}
	e.state.Store(&state{rs: &hostpolicy.RuleSet{}, table: decide.New(nil, nil), sources: map[string]string{}})
	e.adopt()
	e.started = time.Now()
	e.audit, err = openAudit()
	if err != nil {
		opts.Log.Warn("apparmor: no kernel audit records, so no alerts for AppArmor's verdicts", "err", err)
	}
	return e, nil
}

// Name is the tier's Enforcer string.
func (e *Enforcer) Name() string { return Name }

// Apply validates every profile of rs with apparmor_parser, then loads the
// changed ones (replacing a profile is atomic in the kernel), then removes
// profiles rs no longer has. The host profile is loaded last so that the
// fromSource profiles it hands programs to exist first.
func (e *Enforcer) Apply(rs *hostpolicy.RuleSet) (map[uint32]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("apparmor: enforcer is closed")
	}
	if rs == nil {
		rs = &hostpolicy.RuleSet{Postures: hostpolicy.DefaultPostures}
	}
	unenforced := map[uint32]string{}
	for i := range rs.Rules {
		if why := Unenforced(&rs.Rules[i]); why != "" {
			unenforced[rs.Rules[i].ID] = why
		}
	}
	profiles, sources := render(rs)
	for name, program := range e.helpers {
		profiles[name] = unconfinedProfile(name, program)
	}
	if e.opts.Version != "" {
		for name, text := range profiles {
			profiles[name] = "# kubearmor " + e.opts.Version + "\n" + text
		}
	}
	e.forgetRemoved()
	var changed []string
	for name, text := range profiles {
		if e.loaded[name] != text {
			changed = append(changed, name)
		}
	}
	sortByLoadOrder(changed)
	if len(changed) > 0 {
		staging, err := os.MkdirTemp(e.opts.Dir, ".staging-")
		if err != nil {
			return nil, fmt.Errorf("apparmor: %w", err)
		}
		defer os.RemoveAll(staging)
		var files []string
		for _, name := range changed {
			f := filepath.Join(staging, name)
			if err := os.WriteFile(f, []byte(profiles[name]), 0o600); err != nil {
				return nil, fmt.Errorf("apparmor: %w", err)
			}
			files = append(files, f)
		}
		if err := e.parse(append([]string{"-Q", "-K"}, files...)); err != nil {
			return nil, fmt.Errorf("apparmor: profiles do not validate, previous rules stay: %w", err)
		}
		if err := e.parse(append([]string{"-r", "-K"}, files...)); err != nil {
			// Profiles that did load stay replaced: the kernel has no
			// transaction across profiles. Say which state we are in, and
			// forget what these hold, so that the next Apply (or the next
			// agent, which reads Dir) loads them again.
			for _, name := range changed {
				_ = os.Remove(filepath.Join(e.opts.Dir, name))
				if _, ok := e.loaded[name]; ok {
					e.loaded[name] = ""
				}
			}
			return nil, fmt.Errorf("apparmor: load failed, some profiles may hold the new rules: %w", err)
		}
		for i, name := range changed {
			if err := os.Rename(files[i], filepath.Join(e.opts.Dir, name)); err != nil {
				e.opts.Log.Warn("apparmor: cannot keep the loaded profile's text", "profile", name, "err", err)
			}
			e.loaded[name] = profiles[name]
		}
	}
	e.adopted.applied(profiles, changed)
	for name := range e.loaded {
		if _, keep := profiles[name]; keep {
			continue
		}
		if err := removeProfile(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.opts.Log.Warn("apparmor: cannot remove a profile", "profile", name, "err", err)
			continue
		}
		_ = os.Remove(filepath.Join(e.opts.Dir, name))
		delete(e.loaded, name)
	}
	skip := func(r *hostpolicy.Rule) bool { return Unenforced(r) != "" }
	e.state.Store(&state{rs: rs, table: decide.New(rs, skip), sources: sources})
	return unenforced, nil
}

// loadOrder: the helpers first (so that the parser loading the rest is
// already kept out of them), then fromSource profiles, then the host
// profile that hands programs to them. Close removes in the reverse order,
// and the agent's own profile must go last: an agent started while a
// previous agent's profiles were loaded runs under it, and once it is gone
// the kernel can refuse this agent further removals (seen as EACCES on
// .remove for the parser profile).
func loadOrder(name string) int {
	switch name {
	case AgentProfile:
		return 0
	case ParserProfile:
		return 1
	case HostProfile:
		return 3
	}
	return 2
}

// sortByLoadOrder sorts profile names by loadOrder, then by name.
func sortByLoadOrder(names []string) {
	sort.Slice(names, func(i, j int) bool {
		if oi, oj := loadOrder(names[i]), loadOrder(names[j]); oi != oj {
			return oi < oj
		}
		return names[i] < names[j]
	})
}

// resolved is a program's path with symlinks resolved, as AppArmor sees it.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

func (e *Enforcer) parse(args []string) error {
	out, err := exec.Command(e.opts.Parser, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(e.opts.Parser), args[0], err, parserMessages(out))
	}
	return nil
}

// parserMessages drops the parser's cache notice, which it prints even
// when nothing is wrong.
func parserMessages(out []byte) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "Cache read/write disabled") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "; ")
}

// ourProfiles lists the loaded profiles whose names are ours, with their
// mode ("enforce", "unconfined", ...).
func ourProfiles() (map[string]string, error) {
	b, err := os.ReadFile(securityfs + "/profiles")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		name, mode, _ := strings.Cut(l, " (")
		if name == HostProfile || name == AgentProfile || name == ParserProfile || strings.HasPrefix(name, sourcePrefix+"-") {
			out[name] = strings.TrimSuffix(mode, ")")
		}
	}
	return out, nil
}

// removeProfile unloads a profile; tasks confined by it become unconfined.
func removeProfile(name string) error {
	return os.WriteFile(securityfs+"/.remove", []byte(name), 0)
}

// Run reports the verdicts of the time no agent ran (gap.go), then reads
// AppArmor's audit records until ctx ends.
func (e *Enforcer) Run(ctx context.Context, emit func(event.Event)) error {
	e.replayGap(emit)
	if e.audit == nil {
		<-ctx.Done()
		return nil
	}
	done := make(chan struct{})
	defer close(done)
	// advanced tells the saver that a record moved lastSerial on.
	advanced := make(chan struct{}, 1)
	go func() {
		// The serial of the last record read, for the next agent, at most
		// every serialEvery; the last write comes once reading has
		// stopped. The ticker is selected only while a serial waits to be
		// written: a quiet audit log does not wake the agent.
		t := time.NewTicker(serialEvery)
		defer t.Stop()
		asked := e.lastSerial.Load()
		for {
			var tick <-chan time.Time
			if e.lastSerial.Load() != asked {
				tick = t.C
			}
			select {
			case <-advanced:
			case <-tick:
				asked = e.lastSerial.Load()
				e.saveSerial(asked)
			case <-ctx.Done():
				e.audit.Close()
				<-done
				e.saveSerial(e.lastSerial.Load())
				return
			}
		}
	}()
	for {
		line, err := e.audit.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("apparmor: audit records: %w", err)
		}
		if _, serial, ok := stampOf(line); ok && serial > e.lastSerial.Load() {
			e.lastSerial.Store(serial)
			select {
			case advanced <- struct{}{}:
			default:
			}
		}
		if ev, ok := e.verdict(line); ok {
			emit(ev)
		}
	}
}

// Close stops reading verdicts and leaves the profiles loaded: they go on
// enforcing the last rule set until the next agent adopts them or Unpin,
// kubearmor detach (Detach) or a reboot removes them.
func (e *Enforcer) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.audit != nil {
		e.audit.Close()
	}
	return nil
}

// Unpin unloads every profile of ours and removes their files: the host is
// left as it was before the agent started (the agent's --detach-on-exit).
func (e *Enforcer) Unpin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.loaded))
	for name := range e.loaded {
		names = append(names, name)
	}
	e.loaded = map[string]string{}
	e.unpinned = true
	_ = os.Remove(filepath.Join(e.opts.Dir, serialFile))
	_ = os.Remove(filepath.Join(e.opts.Dir, serialFile+".new"))
	return removeAll(names, e.opts.Dir, e.opts.Log)
}

// Loaded lists the profiles this enforcer has in the kernel.
func (e *Enforcer) Loaded() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for name := range e.loaded {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
