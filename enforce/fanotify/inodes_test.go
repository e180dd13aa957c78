package fanotify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/kernelfs"
)

// A file or program an exact-path rule names cannot be reached under
// another name: a hard link made before the rules, one made after, the
// file renamed, a bind mount in a mount namespace of the opener's own. Each
// open or exec is refused (or audited) by the rule, with the name used as
// the resource, and never answered from the allow cache.
func TestProtectedInodes(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	secret := writeFile(t, fs+"/secret", "s")
	nsSecret := writeFile(t, fs+"/ns/secret", "n")
	audited := writeFile(t, fs+"/audited", "a")
	prog := copyFile(t, "/bin/true", fs+"/bin/blocked")
	// Links made before the rules.
	for old, alias := range map[string]string{secret: fs + "/alias", prog: fs + "/bin/alias", audited: fs + "/audlink"} {
		if err := os.Link(old, alias); err != nil {
			t.Fatal(err)
		}
	}
	rs := compile(t, hostpolicy.Postures{}, policy("files", `  file:
    matchPaths:
    - path: `+secret+`
    - path: `+nsSecret+`
  action: Block`), policy("audit", `  file:
    matchPaths:
    - path: `+audited+`
  action: Audit`), policy("exec", `  process:
    matchPaths:
    - path: `+prog+`
  action: Block`))
	e, events, unenforced := start(t, Options{NoNetwork: true}, rs)
	if len(unenforced) != 0 {
		t.Fatalf("unenforced: %v", unenforced)
	}
	refused := func(t *testing.T, rule string, argv ...string) {
		t.Helper()
		name := argv[len(argv)-1]
		if d, out := run(t, argv...); !d {
			t.Fatalf("%v through another name: %s", argv, out)
		}
		ev := events.Wait(t, "block of "+name, eventWait, func(ev event.Event) bool { return ev.Resource == name || ev.Path == name })
		if ev.Verdict != event.VerdictBlock || ev.RuleID != ruleID(t, rs, rule) {
			t.Fatalf("event: %+v, want rule %s", ev, rule)
		}
	}

	t.Run("hard link made before the rules", func(t *testing.T) {
		refused(t, secret, "/bin/cat", fs+"/alias")
	})
	t.Run("program through a hard link made before the rules", func(t *testing.T) {
		refused(t, prog, fs+"/bin/alias")
	})
	t.Run("hard link made after", func(t *testing.T) {
		if err := os.Link(secret, fs+"/later"); err != nil {
			t.Fatal(err)
		}
		refused(t, secret, "/bin/cat", fs+"/later")
	})
	t.Run("program renamed", func(t *testing.T) {
		moved := fs + "/bin/renamed"
		if err := os.Rename(fs+"/bin/alias", moved); err != nil {
			t.Fatal(err)
		}
		refused(t, prog, moved)
	})
	t.Run("bind mount in another mount namespace", func(t *testing.T) {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare")
		}
		if err := os.MkdirAll(fs+"/view", 0o755); err != nil {
			t.Fatal(err)
		}
		script := "mount --bind " + fs + "/ns " + fs + "/view && exec /bin/cat " + fs + "/view/secret"
		if d, out := run(t, unshare, "-m", "--propagation", "private", "/bin/sh", "-c", script); !d {
			t.Fatalf("read through a bind mount of another namespace: %s", out)
		}
		events.Wait(t, "block through the bind mount", eventWait, func(ev event.Event) bool {
			return ev.Verdict == event.VerdictBlock && ev.RuleID == ruleID(t, rs, nsSecret)
		})
	})
	t.Run("program through an overlayfs mounted later, in another namespace", func(t *testing.T) {
		// The overlay is no marked filesystem; from 6.12 on the kernel
		// reports the open of its layer's file, by the layer's name
		// ("/blocked"), and the identity decides it. 6.1 does not report
		// it (docs/ARCHITECTURE.md).
		if !kernelfs.ReleaseAtLeast(kernelfs.Release(), 6, 12) {
			t.Skip("this kernel does not report an overlay's opens at its layers (6.1 does not, 6.12 does)")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare")
		}
		for _, d := range []string{"/ovl/upper", "/ovl/work", "/ovl/merged"} {
			if err := os.MkdirAll(fs+d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		opts := "lowerdir=" + fs + "/bin,upperdir=" + fs + "/ovl/upper,workdir=" + fs + "/ovl/work"
		script := "mount -t overlay overlay -o " + opts + " " + fs + "/ovl/merged && exec " + fs + "/ovl/merged/blocked"
		d, out := run(t, unshare, "-m", "--propagation", "private", "/bin/sh", "-c", script)
		if !d && strings.Contains(out, "mount") {
			t.Skipf("no overlayfs: %s", out)
		}
		if !d {
			t.Fatalf("a blocked program ran through an overlay: %s", out)
		}
		events.Wait(t, "block through the overlay", eventWait, func(ev event.Event) bool {
			return ev.Verdict == event.VerdictBlock && ev.RuleID == ruleID(t, rs, prog)
		})
	})
	t.Run("audited under another name, never cached", func(t *testing.T) {
		for range 3 {
			s := settled(t, e)
			if d, out := run(t, "/bin/cat", fs+"/audlink"); d {
				t.Fatalf("audited file refused: %s", out)
			}
			events.Wait(t, "audit of the link", eventWait, func(ev event.Event) bool {
				return ev.Resource == fs+"/audlink" && ev.Verdict == event.VerdictAudit && ev.RuleID == ruleID(t, rs, audited)
			})
			if s2 := settled(t, e); s2.Inserted != s.Inserted {
				t.Fatalf("a file a rule names was cached: %+v -> %+v", s, s2)
			}
		}
	})
	t.Run("a file the rules do not name stays cacheable", func(t *testing.T) {
		cacheIt(t, e, writeFile(t, fs+"/plain", "p"))
	})
}

// A rule's path that passes through a symbolic link protects no file by
// identity: whoever may change the link (a user's own directory in the
// rule's path) could aim it at any file, as the last component, or at any
// file of that name, as a directory, and have the rule refuse it for
// everyone. Such a rule still decides by name.
func TestProtectedInodesNotThroughLinks(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	victim := writeFile(t, fs+"/etc/victim", "v")
	for link, target := range map[string]string{fs + "/home/a/x": victim, fs + "/home/b/etc": fs + "/etc"} {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	rs := compile(t, hostpolicy.Postures{}, policy("links", `  file:
    matchPaths:
    - path: `+fs+`/home/a/x
    - path: `+fs+`/home/b/etc/victim
  action: Block`))
	e, events, _ := start(t, Options{NoNetwork: true}, rs)
	if n := len(*e.inodes.Load()); n != 0 {
		t.Fatalf("%d files protected by identity through symbolic links", n)
	}
	if d, out := run(t, "/bin/cat", victim); d {
		t.Fatalf("%s refused by a rule on a symbolic link to it: %s", victim, out)
	}
	if ev, ok := events.WaitFor(200*time.Millisecond, nil); ok {
		t.Fatalf("event for the victim: %+v", ev)
	}
}
