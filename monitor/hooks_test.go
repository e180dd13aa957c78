package monitor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/armorhost/kubearmor/event"
	"github.com/cilium/ebpf/btf"
)

// TestHooks: the monitor says which syscall path it uses, and it is the
// one asked for (MONITOR_TEST_HOOKS).
func TestHooks(t *testing.T) {
	m, _ := sharedMonitor(t)
	hooks, note := m.Hooks()
	t.Logf("hooks: %s; %s", hooks, note)
	if want := testHooks(); want != HooksAuto && hooks != want {
		t.Fatalf("hooks %q, want %q", hooks, want)
	}
	if hooks != HooksFexit && hooks != HooksTracepoints {
		t.Fatalf("hooks %q with every scope visible", hooks)
	}
	if hooks == HooksTracepoints && testHooks() == HooksAuto && note == "" {
		t.Error("tracepoints chosen without saying why fexit was not used")
	}
	if s := m.Stats(); s.Hooks != hooks || s.HooksNote != note {
		t.Errorf("Stats hooks %q %q, want %q %q", s.Hooks, s.HooksNote, hooks, note)
	}
}

// TestCompat32: syscalls made through the 32-bit entry (int 0x80,
// socketcall, 16-bit ids) are reported like their 64-bit forms, with
// x86-64 names.
// The helper is MONITOR_TEST_COMPAT32 (the VM test builds it) or built
// here with GOARCH=386.
func TestCompat32(t *testing.T) {
	m, c := sharedMonitor(t)
	if hooks, _ := m.Hooks(); hooks != HooksFexit {
		t.Skipf("hooks %q: syscall tracepoints do not see 32-bit syscalls (only the fexit path attaches the ia32 entry points)", hooks)
	}
	bin := os.Getenv("MONITOR_TEST_COMPAT32")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "compat32")
		out, err := goBuild386(bin).CombinedOutput()
		if err != nil {
			t.Skipf("cannot build the 32-bit helper: %v %s", err, out)
		}
	}
	file := filepath.Join(t.TempDir(), "compat32-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln := acceptingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(bin, file, fmt.Sprint(port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(err.Error(), "exec format error") {
			t.Skipf("this kernel runs no 32-bit programs (no IA32 emulation): %v", err)
		}
		t.Fatalf("compat32: %v %s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	settle(t, c)

	evs := c.All(func(e event.Event) bool { return e.HostPID == pid })
	has := func(what string, f func(e event.Event) bool) {
		t.Helper()
		if !slices.ContainsFunc(evs, f) {
			t.Errorf("no %s event among the helper's %d:", what, len(evs))
			for _, e := range evs {
				t.Logf("  %s %s %q %q %d", e.Operation, e.Syscall, e.Resource, e.Data, e.Retval)
			}
		}
	}
	has("open", func(e event.Event) bool { return e.Operation == event.OpFile && e.Resource == file })
	addr := fmt.Sprintf("sa_family=AF_INET sin_port=%d sin_addr=127.0.0.1", port)
	n := 0
	for _, e := range evs {
		if e.Syscall == "SYS_CONNECT" && e.Resource == addr && e.Retval == 0 {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d connects to %s, want 2 (socketcall and connect)", n, addr)
	}
	has("accept by socketcall", func(e event.Event) bool {
		return e.Syscall == "SYS_ACCEPT" && e.Retval >= 0 && strings.HasSuffix(e.Resource, "sin_addr=127.0.0.1")
	})
	has("setuid", func(e event.Event) bool { return e.Syscall == "SYS_SETUID" && e.Data == "syscall=SYS_SETUID userid=0" })
	has("DNS query", func(e event.Event) bool {
		return e.Syscall == "SYS_SENDTO" && strings.Contains(e.Data, "domain=compat32.example.test,")
	})
	has("failed execve", func(e event.Event) bool {
		return e.Syscall == "SYS_EXECVE" && e.Retval < 0 && strings.Contains(e.Resource, "/nonexistent/compat32-exec")
	})
}

func goBuild386(out string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-o", out, "./testdata/compat32")
	cmd.Env = append(os.Environ(), "GOARCH=386", "CGO_ENABLED=0")
	return cmd
}

// TestFexitTargets: where each syscall is hooked, from a kernel BTF: the
// inner function once for accept and accept4, a kretprobe (and execveat's
// kprobe) for an entry point named twice, and no fexit path when an inner
// function is missing or named twice.
func TestFexitTargets(t *testing.T) {
	proto := &btf.FuncProto{Return: &btf.Int{Name: "long", Size: 8, Encoding: btf.Signed}}
	kernel := func(names ...string) *btf.Spec {
		t.Helper()
		var types []btf.Type
		for _, n := range names {
			types = append(types, &btf.Func{Name: n, Type: proto, Linkage: btf.StaticFunc})
		}
		b, err := btf.NewBuilder(types, nil)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := b.Spec()
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	var all []string
	for _, tr := range tracedSyscalls {
		if tr.inner != "" {
			if !slices.Contains(all, tr.inner) { // accept and accept4 share one
				all = append(all, tr.inner)
			}
			continue
		}
		all = append(all, "__x64_sys_"+tr.kernelName())
		all = append(all, tr.ia32...)
	}
	find := func(targets []fexitTarget, fn string) []fexitTarget {
		var out []fexitTarget
		for _, tg := range targets {
			if tg.fn == fn {
				out = append(out, tg)
			}
		}
		return out
	}

	// Debian 6.1: the sys_ni.c stubs beside two entry points.
	targets, missing, probed, err := fexitTargets(kernel(append(all, "__x64_sys_execveat", "__ia32_sys_chown16")...), ScopeAll, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("missing %v", missing)
	}
	if want := []string{"__x64_sys_execveat", "__ia32_sys_chown16"}; !slices.Equal(probed, want) {
		t.Errorf("probed %v, want %v", probed, want)
	}
	if got := find(targets, "__x64_sys_execveat"); len(got) != 2 || got[0].kind != attachKretprobe || got[1].kind != attachKprobe ||
		got[0].cookie != uint64(sysExecveat)|abiX64<<32 {
		t.Errorf("execveat targets %+v", got)
	}
	if got := find(targets, "__sys_accept4"); len(got) != 1 || got[0].prog != "fexit_func_net" || got[0].cookie>>32 != abiFuncAccept {
		t.Errorf("__sys_accept4 targets %+v", got)
	}
	if got := find(targets, "__sys_setuid"); len(got) != 1 || got[0].cookie != uint64(sysSetuid)|abiFunc<<32 || got[0].kind != attachFexit {
		t.Errorf("__sys_setuid targets %+v", got)
	}
	if got := find(targets, "__x64_sys_setuid"); len(got) != 0 {
		t.Errorf("setuid's entry point hooked too: %+v", got)
	}
	if got := find(targets, "__ia32_compat_sys_openat"); len(got) != 1 || got[0].cookie != uint64(sysOpenat)|abiIA32<<32 {
		t.Errorf("32-bit openat targets %+v", got)
	}

	for _, tc := range []struct {
		name  string
		names []string
		want  string
	}{
		{"inner twice", append(all, "__sys_connect"), "__sys_connect is named twice"},
		{"inner missing", slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == "__sys_setuid" }), "no __sys_setuid"},
	} {
		_, _, _, err := fexitTargets(kernel(tc.names...), ScopeAll, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// Scopes that are off hook nothing.
	if targets, _, _, err := fexitTargets(kernel(all...), ScopeFile, false); err != nil || len(find(targets, "__sys_connect")) != 0 || len(find(targets, "__x64_sys_execve")) != 0 {
		t.Errorf("file scope only: %v %+v", err, targets)
	}
}
