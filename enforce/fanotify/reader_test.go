package fanotify

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/event/eventtest"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// The agent at its descriptor limit (a local user holding idle connections
// open, in the field): opens and execs on a marked filesystem must complete,
// the Block rule must hold again once descriptors are free, and the reader
// must still be running. Both ways the kernel reports an event it could not
// open a descriptor for are covered: FAN_REPORT_FD_ERROR (6.13 on) and the
// failed read of older kernels.
func TestReaderSurvivesFDExhaustion(t *testing.T) {
	needRoot(t)
	for _, c := range []struct {
		name   string
		legacy bool
	}{{"FAN_REPORT_FD_ERROR", false}, {"read error", true}} {
		t.Run(c.name, func(t *testing.T) {
			fs := scratchFS(t)
			secret := writeFile(t, fs+"/secret", "s")
			other := writeFile(t, fs+"/other", "o")
			prog := copyFile(t, "/bin/true", fs+"/bin/true")
			rs := compile(t, hostpolicy.Postures{}, policy("fd", `  file:
    matchPaths:
    - path: `+secret+`
  action: Block`))
			e, events, _ := start(t, Options{NoNetwork: true, legacyFDErrors: c.legacy}, rs)
			if h := e.Health(); h.Reserve != reserveFDs {
				t.Fatalf("reserve at start: %d, want %d", h.Reserve, reserveFDs)
			}

			// The child is started before the descriptors run out: it waits
			// for a line, then opens and execs on the marked filesystem.
			const rounds = 6
			child := exec.Command("/bin/sh", "-c", `read go
for i in $(seq `+strconv.Itoa(rounds)+`); do
	cat "$1" >/dev/null 2>&1; echo "other $?"
	cat "$2" >/dev/null 2>&1; echo "secret $?"
	"$3"; echo "exec $?"
done`, "sh", other, secret, prog)
			stdin, _ := child.StdinPipe()
			stdout, _ := child.StdoutPipe()
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			release := exhaustFDs(t)
			if _, err := stdin.Write([]byte("go\n")); err != nil {
				release()
				t.Fatal(err)
			}
			lines := make(chan []string, 1)
			go func() {
				var got []string
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					got = append(got, sc.Text())
				}
				lines <- got
			}()
			var out []string
			select {
			case out = <-lines:
			case <-time.After(20 * time.Second):
				release()
				_ = child.Process.Kill()
				t.Fatal("opens and execs on the marked filesystem hung while the agent was out of descriptors")
			}
			_ = child.Wait()
			h := e.Health()
			release()
			t.Logf("at the limit: %q; %+v", out, h)

			if len(out) != 3*rounds {
				t.Fatalf("child output: %q", out)
			}
			// The first event found no descriptor and was denied by the
			// kernel; the reserve made room for the following ones, so the
			// last round was decided as usual.
			if last := out[len(out)-3:]; last[0] != "other 0" || last[1] != "secret 1" || last[2] != "exec 0" {
				t.Errorf("last round at the descriptor limit: %q (all: %q)", last, out)
			}
			denied := h.KernelDenied["EMFILE"]
			if c.legacy {
				denied = h.ReadErrors["EMFILE"]
			}
			if denied == 0 {
				t.Errorf("no EMFILE denial counted: %+v", h)
			}
			if w := strings.Join(e.Warnings(), "\n"); !strings.Contains(w, "EMFILE") {
				t.Errorf("status warnings do not name EMFILE: %q", w)
			}

			// Descriptors are free again: the Block holds, the rest works,
			// and the reserve is taken back.
			if denied, out := run(t, "/bin/cat", secret); !denied {
				t.Fatalf("open of the blocked file after the limit: %s", out)
			}
			ev := events.Wait(t, "block after recovery", eventWait, func(ev event.Event) bool {
				return ev.Resource == secret && ev.Verdict == event.VerdictBlock
			})
			if ev.RuleID != ruleID(t, rs, secret) {
				t.Errorf("verdict: %+v", ev)
			}
			if denied, out := run(t, prog); denied {
				t.Fatalf("exec on the marked filesystem after the limit: %s", out)
			}
			deadline := time.Now().Add(10 * time.Second)
			for e.Health().Reserve != reserveFDs {
				if time.Now().After(deadline) {
					t.Fatalf("reserve not refilled: %+v", e.Health())
				}
				// An open a rule concerns: the allow cache answers the
				// others without an event, and the reader refills on events.
				run(t, "/bin/cat", secret)
				time.Sleep(50 * time.Millisecond)
			}
			if h := e.Health(); h.Dead != nil {
				t.Fatalf("reader dead: %v", h.Dead)
			}
		})
	}
}

// exhaustFDs lowers this process's RLIMIT_NOFILE to a little above the
// descriptors in use and opens descriptors until none is left. release
// closes them and restores the limit (also at cleanup).
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	lim := old
	lim.Cur = uint64(top) + 64
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var fds []int
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(release)
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			return release
		}
		if err != nil {
			release()
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
}

// A reader that stops for good closes the tier: what it blocked runs again
// at once (nothing hangs on marked filesystems), Run returns the reason so
// that the agent exits non-zero, and status says so.
func TestReaderDeathReleasesTheTier(t *testing.T) {
	needRoot(t)
	fs := scratchFS(t)
	blocked := copyFile(t, "/bin/true", fs+"/bin/blocked")
	rs := compile(t, hostpolicy.Postures{}, policy("exec", `  process:
    matchPaths:
    - path: `+blocked+`
  action: Block`))
	e, err := New(Options{NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(rs); err != nil {
		_ = e.Close()
		t.Fatal(err)
	}
	c := eventtest.New(nil)
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(context.Background(), c.Add) }()
	if denied, out := run(t, blocked); !denied {
		t.Fatalf("exec before the reader stopped: %s", out)
	}

	// What the reader does after EBADF/EINVAL/EFAULT fatalTries times.
	e.die(errors.New("fanotify: read: bad file descriptor (3 times in a row)"))

	select {
	case err := <-runErr:
		if err == nil || !strings.Contains(err.Error(), "bad file descriptor") {
			t.Errorf("Run after the reader stopped: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the reader stopped")
	}
	done := make(chan error, 1)
	go func() { done <- exec.Command(blocked).Run() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exec after the tier closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec on a marked filesystem hangs after the reader stopped")
	}
	if _, err := e.Apply(rs); err == nil || !strings.Contains(err.Error(), "reader has stopped") {
		t.Errorf("Apply after the reader stopped: %v", err)
	}
	if w := strings.Join(e.Warnings(), "\n"); !strings.Contains(w, "stopped for good") {
		t.Errorf("status warnings: %q", w)
	}
	if err := e.Close(); err != nil {
		t.Errorf("Close after the reader stopped: %v", err)
	}
}
