package fanotify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// The allow cache never loosens enforcement: after a file's "allowed" is
// cached in the kernel, a rename or hard link to a protected name, a
// directory moved under a protected one, a bind mount over a protected
// directory and a policy change each make the next open through the
// protected name a real, refused, reported open; rules that depend on the
// program or the owner are never cached; a write clears the cached answer.
func TestCacheNeverLoosens(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	for _, d := range []string{filepath.Dir(fs), fs} { // for the non-owner
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := fs + "/secret"                // exact path rule; not yet a file
	blocked := fs + "/blocked/"             // directory rule
	rdir := fs + "/rdir/"                   // recursive directory rule
	srcFile := writeFile(t, fs+"/src", "s") // fromSource rule: head may not read it
	owned := writeFile(t, fs+"/owned", "o") // ownerOnly rule: only root (the owner) may
	blockedExec := fs + "/bin/blocked"
	writeFile(t, blocked+"keep", "k")
	writeFile(t, rdir+"keep", "k")
	head, err := exec.LookPath("head")
	if err != nil {
		t.Skip("no head")
	}
	if head, err = filepath.EvalSymlinks(head); err != nil {
		t.Fatal(err)
	}
	rs := compile(t, hostpolicy.Postures{}, policy("cache", `  file:
    matchPaths:
    - path: `+secret+`
    - path: `+owned+`
      ownerOnly: true
    - path: `+srcFile+`
      fromSource:
      - path: `+head+`
    matchDirectories:
    - dir: `+blocked+`
    - dir: `+rdir+`
      recursive: true
  action: Block`), policy("exec", `  process:
    matchPaths:
    - path: `+blockedExec+`
  action: Block`))
	e, events, unenforced := start(t, Options{NoNetwork: true}, rs)
	if len(unenforced) != 0 {
		t.Fatalf("unenforced: %v", unenforced)
	}
	if off := e.CacheStats().Off; off != "" {
		t.Fatalf("cache off: %s", off)
	}
	denied := func(t *testing.T, path string, id uint32) {
		t.Helper()
		if d, out := run(t, "/bin/cat", path); !d {
			t.Fatalf("open of %s through the cache: %s", path, out)
		}
		ev := events.Wait(t, "block of "+path, eventWait, func(ev event.Event) bool { return ev.Resource == path })
		if ev.Verdict != event.VerdictBlock || ev.RuleID != id {
			t.Fatalf("event: %+v, want rule %d", ev, id)
		}
	}

	t.Run("rename into a blocked directory", func(t *testing.T) {
		f := writeFile(t, fs+"/a", "a")
		cacheIt(t, e, f)
		u := e.CacheStats().Unmarked
		if err := os.Rename(f, blocked+"a"); err != nil {
			t.Fatal(err)
		}
		waitStats(t, e, "the watcher's removal", func(s CacheStats) bool { return s.Unmarked > u })
		denied(t, blocked+"a", ruleID(t, rs, blocked))
	})
	t.Run("hard link to a blocked name", func(t *testing.T) {
		f := writeFile(t, fs+"/b", "b")
		cacheIt(t, e, f)
		u := e.CacheStats().Unmarked
		if err := os.Link(f, secret); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(secret) })
		waitStats(t, e, "the watcher's removal", func(s CacheStats) bool { return s.Unmarked > u })
		denied(t, secret, ruleID(t, rs, secret))
		if marked(t, e, f) {
			t.Fatalf("%s: still marked after the watcher's removal", f)
		}
		// The old name, now one of two, is allowed but not cached again.
		s := settled(t, e)
		if d, out := run(t, "/bin/cat", f); d {
			t.Fatalf("old name: %s", out)
		}
		if s2 := settled(t, e); s2.Misses == s.Misses || s2.Inserted != s.Inserted || marked(t, e, f) {
			t.Errorf("a file with two names was cached: %+v -> %+v", s, s2)
		}
	})
	t.Run("directory moved under a recursive rule", func(t *testing.T) {
		f := writeFile(t, fs+"/d/sub/c", "c")
		cacheIt(t, e, f)
		n := e.CacheStats().Flushes[flushName]
		if err := os.Rename(fs+"/d", rdir+"d"); err != nil {
			t.Fatal(err)
		}
		waitStats(t, e, "the flush", func(s CacheStats) bool { return s.Flushes[flushName] > n })
		denied(t, rdir+"d/sub/c", ruleID(t, rs, rdir))
	})
	t.Run("bind mount over a blocked directory", func(t *testing.T) {
		f := writeFile(t, fs+"/m/x", "x")
		cacheIt(t, e, f)
		n := e.CacheStats().Flushes[flushMount]
		if err := unix.Mount(fs+"/m", blocked, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		waitStats(t, e, "the flush", func(s CacheStats) bool { return s.Flushes[flushMount] > n })
		denied(t, blocked+"x", ruleID(t, rs, blocked))
		// The later subtests cache on this filesystem again: it must be
		// mounted once, and the agent must have seen it.
		n = e.CacheStats().Flushes[flushMount]
		if err := unix.Unmount(blocked, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		waitStats(t, e, "the flush", func(s CacheStats) bool { return s.Flushes[flushMount] > n })
	})
	t.Run("exec renamed to a blocked program", func(t *testing.T) {
		prog := copyFile(t, "/bin/true", fs+"/bin/ok")
		for range 2 {
			if d, out := run(t, prog); d {
				t.Fatalf("exec: %s", out)
			}
		}
		expectHit(t, e, func() { run(t, prog) })
		u := e.CacheStats().Unmarked
		if err := os.Rename(prog, blockedExec); err != nil {
			t.Fatal(err)
		}
		waitStats(t, e, "the watcher's removal", func(s CacheStats) bool { return s.Unmarked > u })
		if d, out := run(t, blockedExec); !d {
			t.Fatalf("exec of %s through the cache: %s", blockedExec, out)
		}
		events.Wait(t, "exec block", eventWait, func(ev event.Event) bool {
			return ev.Resource == blockedExec && ev.Verdict == event.VerdictBlock
		})
	})
	t.Run("fromSource and ownerOnly are never cached", func(t *testing.T) {
		s := settled(t, e)
		for range 2 {
			if d, out := run(t, "/bin/cat", srcFile); d {
				t.Fatalf("cat of the fromSource file: %s", out)
			}
			if d, out := run(t, "/bin/cat", owned); d {
				t.Fatalf("the owner's read: %s", out)
			}
		}
		if s2 := settled(t, e); s2.Inserted != s.Inserted || s2.Misses != s.Misses {
			t.Errorf("a file a rule concerns went through the cache: %+v -> %+v", s, s2)
		}
		if d, out := run(t, head, srcFile); !d {
			t.Fatalf("head read the file its fromSource rule blocks: %s", out)
		}
		if d, out := runAs(t, 65534, "/bin/cat", owned); !d {
			t.Fatalf("a non-owner read the ownerOnly file: %s", out)
		}
	})
	t.Run("policy change", func(t *testing.T) {
		f := writeFile(t, fs+"/p", "p")
		cacheIt(t, e, f)
		rs2 := compile(t, hostpolicy.Postures{}, policy("cache2", `  file:
    matchPaths:
    - path: `+f+`
  action: Block`))
		if _, err := e.Apply(rs2); err != nil {
			t.Fatal(err)
		}
		// No wait: Apply flushed before it returned.
		denied(t, f, ruleID(t, rs2, f))
		if _, err := e.Apply(rs); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a write clears", func(t *testing.T) {
		f := writeFile(t, fs+"/w", "w")
		cacheIt(t, e, f)
		if d, out := run(t, "/bin/sh", "-c", "echo more >> "+f); d {
			t.Fatal(out)
		}
		s := e.CacheStats()
		run(t, "/bin/cat", f)
		if s2 := e.CacheStats(); s2.Misses == s.Misses {
			t.Errorf("the open after a write was answered from the cache: %+v -> %+v", s, s2)
		}
	})

	settled(t, e)
	st := e.Stages()
	for _, s := range st[1:] {
		if s.Received != s.Passed+s.Filtered+s.Dropped+s.Pending {
			t.Errorf("stage does not balance: %+v", s)
		}
	}
	t.Logf("stages: %+v", st[1:])
}

// A hard link or rename made while the agent caches a file's "allowed",
// between the decision (one name, not protected) and the ignore mark, never
// leaves the new, protected name answered by the kernel: with the name
// watcher held back (as a loaded machine may hold it), the open through the
// new name is still asked and refused, and the inode carries no mark.
func TestCacheNameDuringInsert(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		move func(from, to string) error
	}{
		{"hard link", os.Link},
		{"rename", os.Rename},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := scratchFS(t)
			secret := fs + "/secret"
			f := writeFile(t, fs+"/f", "f")
			var fst unix.Stat_t
			if err := unix.Stat(f, &fst); err != nil {
				t.Fatal(err)
			}
			var moved atomic.Bool
			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			hooks := cacheHooks{
				beforeMark: func(fd int32) {
					var st unix.Stat_t
					if unix.Fstat(int(fd), &st) != nil || st.Dev != fst.Dev || st.Ino != fst.Ino || moved.Load() {
						return
					}
					if err := tc.move(f, secret); err != nil {
						t.Errorf("%s: %v", tc.name, err)
						return
					}
					moved.Store(true)
				},
				beforeLanded: func(name string) {
					if name == filepath.Base(secret) {
						<-release
					}
				},
			}
			rs := compile(t, hostpolicy.Postures{}, policy("name", `  file:
    matchPaths:
    - path: `+secret+`
  action: Block`))
			e, events, _ := start(t, Options{NoNetwork: true, cacheHooks: hooks}, rs)
			t.Cleanup(free) // before start's cleanup: Close waits for the watcher
			if off := e.CacheStats().Off; off != "" {
				t.Fatalf("cache off: %s", off)
			}

			s := settled(t, e)
			if d, out := run(t, "/bin/cat", f); d {
				t.Fatalf("cat %s: %s", f, out)
			}
			s2 := settled(t, e)
			if !moved.Load() {
				t.Fatalf("no insertion of %s to race: %+v -> %+v", f, s, s2)
			}
			if s2.Inserted != s.Inserted || s2.NotCached != s.NotCached+1 || marked(t, e, secret) {
				t.Fatalf("an inode given a protected name during its insertion was cached: %+v -> %+v", s, s2)
			}
			// The watcher has not handled the new name yet.
			if d, out := run(t, "/bin/cat", secret); !d {
				t.Fatalf("open of %s answered by the kernel: %s", secret, out)
			}
			ev := events.Wait(t, "block of "+secret, eventWait, func(ev event.Event) bool { return ev.Resource == secret })
			if ev.Verdict != event.VerdictBlock || ev.RuleID != ruleID(t, rs, secret) {
				t.Fatalf("event: %+v", ev)
			}
			free()
			waitStats(t, e, "the watcher's removal", func(s CacheStats) bool { return s.Unmarked > s2.Unmarked })
		})
	}
}

// cacheIt opens path (by cat) until its answer is cached, then checks that
// the next open is answered by the kernel. The writer's own open may have
// cached it already (the reader caches after it answers, so the mark can
// come after the write that would have cleared it).
func cacheIt(t *testing.T, e *Enforcer, path string) {
	t.Helper()
	for range 5 {
		s := settled(t, e)
		if d, out := run(t, "/bin/cat", path); d {
			t.Fatalf("cat %s: %s", path, out)
		}
		if s2 := settled(t, e); s2.Misses == s.Misses || s2.Inserted > s.Inserted {
			expectHit(t, e, func() { run(t, "/bin/cat", path) })
			return
		}
	}
	t.Fatalf("%s was never cached: %+v", path, e.CacheStats())
}

// settled waits until every miss counted so far has been inserted or not
// (the reader answers the opener first and caches after), and returns the
// counters then.
func settled(t *testing.T, e *Enforcer) CacheStats {
	t.Helper()
	waitStats(t, e, "settled cache counters", func(s CacheStats) bool { return s.Misses == s.Inserted+s.NotCached })
	return e.CacheStats()
}

// marked reports whether the permission group holds an ignore mark on the
// inode of path, as the kernel lists its marks in fdinfo.
func marked(t *testing.T, e *Enforcer, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", e.fanFD))
	if err != nil {
		t.Fatal(err)
	}
	// sdev is the kernel's dev_t: major << 20 | minor.
	key := fmt.Sprintf("fanotify ino:%x sdev:%x ", st.Ino, unix.Major(st.Dev)<<20|unix.Minor(st.Dev))
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, key) && !strings.Contains(line, " ignored_mask:0 ") {
			return true
		}
	}
	return false
}

// expectHit runs op and checks that no permission event reached the agent
// for it. A flush in between (a mount elsewhere on the host) re-caches and
// tries again.
func expectHit(t *testing.T, e *Enforcer, op func()) {
	t.Helper()
	for range 5 {
		s := e.CacheStats()
		op()
		s2 := e.CacheStats()
		if s2.Misses == s.Misses {
			return
		}
		if flushes(s2) == flushes(s) {
			t.Fatalf("not answered from the cache: %+v -> %+v", s, s2)
		}
		op()
	}
	t.Fatal("the cache kept being flushed")
}

func flushes(s CacheStats) (n uint64) {
	for _, v := range s.Flushes {
		n += v
	}
	return n + s.Unmarked
}

func waitStats(t *testing.T, e *Enforcer, what string, ok func(CacheStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(e.CacheStats()) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s: %+v", what, e.CacheStats())
		}
		time.Sleep(time.Millisecond)
	}
}

func runAs(t *testing.T, uid uint32, argv ...string) (bool, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	b, err := cmd.CombinedOutput()
	out := string(b)
	d := strings.Contains(out, "not permitted")
	if err != nil && !d {
		t.Fatalf("%v: %v %q", argv, err, out)
	}
	return d, out
}

// A file that has a second path through the mount table before the agent
// starts (a bind mount over or inside a protected directory, a filesystem
// mounted twice) is never cached: after an open through its unprotected
// name, the open through the protected name is still asked, refused and
// reported. The mount watch cannot see these mounts (they are no change),
// so the cache must not trust any filesystem mounted more than once or in
// part. Once the second mount goes, the file is cached again; when it comes
// back, it is not.
func TestCacheMountedTwice(t *testing.T) {
	needRoot(t)
	type paths struct{ open, protected, rule, from, to string }
	for _, tc := range []struct {
		name   string
		policy func(p paths) string
		setup  func(t *testing.T, fs string) paths
	}{
		{
			name: "bind mount over a protected directory",
			setup: func(t *testing.T, fs string) paths {
				writeFile(t, fs+"/blocked/keep", "k")
				return paths{open: writeFile(t, fs+"/open/x", "x"), protected: fs + "/blocked/x", rule: fs + "/blocked/", from: fs + "/open", to: fs + "/blocked"}
			},
			policy: func(p paths) string { return "    matchDirectories:\n    - dir: " + p.rule + "\n" },
		},
		{
			name: "bind mount inside a protected directory",
			setup: func(t *testing.T, fs string) paths {
				writeFile(t, fs+"/rdir/sub/keep", "k")
				return paths{open: writeFile(t, fs+"/open/x", "x"), protected: fs + "/rdir/sub/x", rule: fs + "/rdir/", from: fs + "/open", to: fs + "/rdir/sub"}
			},
			policy: func(p paths) string {
				return "    matchDirectories:\n    - dir: " + p.rule + "\n      recursive: true\n"
			},
		},
		{
			name: "second mount of the filesystem",
			setup: func(t *testing.T, fs string) paths {
				second := t.TempDir()
				// A directory rule: an exact path's file is known by its
				// identity under any name (TestProtectedInodes).
				return paths{open: writeFile(t, fs+"/x", "x"), protected: second + "/x", rule: second + "/", from: fs, to: second}
			},
			policy: func(p paths) string { return "    matchDirectories:\n    - dir: " + p.rule + "\n" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := scratchFS(t)
			p := tc.setup(t, fs)
			mount := func() {
				t.Helper()
				if err := unix.Mount(p.from, p.to, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
			}
			mount()
			t.Cleanup(func() { _ = unix.Unmount(p.to, unix.MNT_DETACH) })
			rs := compile(t, hostpolicy.Postures{}, policy("twice", "  file:\n"+tc.policy(p)+"  action: Block"))
			e, events, unenforced := start(t, Options{NoNetwork: true}, rs)
			if len(unenforced) != 0 {
				t.Fatalf("unenforced: %v", unenforced)
			}
			if off := e.CacheStats().Off; off != "" {
				t.Fatalf("cache off: %s", off)
			}
			notCachedThenRefused := func(t *testing.T) {
				t.Helper()
				s := settled(t, e)
				for range 2 {
					if d, out := run(t, "/bin/cat", p.open); d {
						t.Fatalf("cat %s: %s", p.open, out)
					}
				}
				s2 := settled(t, e)
				if s2.Inserted != s.Inserted || s2.MultiMount < s.MultiMount+2 || marked(t, e, p.open) {
					t.Fatalf("a file with a second path through the mount table was cached: %+v -> %+v", s, s2)
				}
				if d, out := run(t, "/bin/cat", p.protected); !d {
					t.Fatalf("open of %s answered by the kernel: %s", p.protected, out)
				}
				ev := events.Wait(t, "block of "+p.protected, eventWait, func(ev event.Event) bool { return ev.Resource == p.protected })
				if ev.Verdict != event.VerdictBlock || ev.RuleID != ruleID(t, rs, p.rule) {
					t.Fatalf("event: %+v", ev)
				}
			}
			notCachedThenRefused(t)

			// One mount again: the change is seen, the file cached.
			n := e.CacheStats().Flushes[flushMount]
			if err := unix.Unmount(p.to, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			waitStats(t, e, "the flush", func(s CacheStats) bool { return s.Flushes[flushMount] > n })
			cacheIt(t, e, p.open)

			// Mounted twice while running: flushed, and not cached again.
			n = e.CacheStats().Flushes[flushMount]
			mount()
			waitStats(t, e, "the flush", func(s CacheStats) bool { return s.Flushes[flushMount] > n })
			notCachedThenRefused(t)
		})
	}
}

// A mount the agent's table does not show (a bind mount made in another
// mount namespace: any user may make one in a user namespace of their own)
// gives a protected file a second name that no link count, name event or
// mount change reports. An open through that name is decided by it (the
// tier decides names), but its answer is never cached: it would answer,
// for every process, the opens through the protected name.
func TestCacheOtherMountNamespace(t *testing.T) {
	needRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	fs := scratchFS(t)
	protected := writeFile(t, fs+"/blocked/x", "x")
	if err := os.MkdirAll(fs+"/open", 0o755); err != nil {
		t.Fatal(err)
	}
	rs := compile(t, hostpolicy.Postures{}, policy("otherns", "  file:\n    matchDirectories:\n    - dir: "+fs+"/blocked/\n  action: Block"))
	e, events, unenforced := start(t, Options{NoNetwork: true}, rs)
	if len(unenforced) != 0 {
		t.Fatalf("unenforced: %v", unenforced)
	}
	if off := e.CacheStats().Off; off != "" {
		t.Fatalf("cache off: %s", off)
	}
	s := settled(t, e)
	script := "mount --bind " + fs + "/blocked " + fs + "/open && cat " + fs + "/open/x && cat " + fs + "/open/x"
	if d, out := run(t, unshare, "-m", "--propagation", "private", "/bin/sh", "-c", script); d {
		t.Logf("the open through the other namespace's name was refused: %s", out)
	}
	s2 := settled(t, e)
	if s2.Inserted != s.Inserted || marked(t, e, protected) {
		t.Fatalf("an answer through a mount of another namespace was cached: %+v -> %+v", s, s2)
	}
	if d, out := run(t, "/bin/cat", protected); !d {
		t.Fatalf("open of %s answered by the kernel: %s", protected, out)
	}
	ev := events.Wait(t, "block of "+protected, eventWait, func(ev event.Event) bool { return ev.Resource == protected })
	if ev.Verdict != event.VerdictBlock || ev.RuleID != ruleID(t, rs, fs+"/blocked/") {
		t.Fatalf("event: %+v", ev)
	}
}
