package runtimetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Paths dockerd and containerd create outside their configured roots.
var leftoverPaths = []string{"/run/docker", "/run/containerd", "/etc/docker/key.json"}

// hostState is what dockerd may change on the host, as it was before.
type hostState struct {
	ipForward     string
	forwardPolicy string
	docker0       bool
	rules         map[string]map[string]bool // table -> "-A ..." lines
	chains        map[string]map[string]bool // table -> chain names
	paths         map[string]bool            // leftoverPaths that existed
}

var tables = []string{"filter", "nat"}

func captureHost() hostState {
	h := hostState{rules: map[string]map[string]bool{}, chains: map[string]map[string]bool{}, paths: map[string]bool{}}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		h.ipForward = strings.TrimSpace(string(b))
	}
	h.forwardPolicy = forwardPolicy()
	_, err := os.Stat("/sys/class/net/docker0")
	h.docker0 = err == nil
	for _, t := range tables {
		h.rules[t], h.chains[t] = iptablesState(t)
	}
	for _, p := range leftoverPaths {
		_, err := os.Lstat(p)
		h.paths[p] = err == nil
	}
	return h
}

func forwardPolicy() string {
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "-P" {
			return f[2]
		}
	}
	return ""
}

func iptablesState(table string) (rules, chains map[string]bool) {
	rules, chains = map[string]bool{}, map[string]bool{}
	out, err := exec.Command("iptables", "-t", table, "-S").Output()
	if err != nil {
		return rules, chains
	}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "-A "):
			rules[l] = true
		case strings.HasPrefix(l, "-N "):
			chains[strings.TrimPrefix(l, "-N ")] = true
		}
	}
	return rules, chains
}

// restore undoes what dockerd added since captureHost, and only that.
func (h hostState) restore() []error {
	var errs []error
	for _, t := range tables {
		rules, chains := iptablesState(t)
		for r := range rules {
			if !h.rules[t][r] && (strings.Contains(r, "DOCKER") || strings.Contains(r, "docker0")) {
				args := append([]string{"-t", t, "-D"}, strings.Fields(strings.TrimPrefix(r, "-A "))...)
				if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("iptables %v: %v: %s", args, err, out))
				}
			}
		}
		var added []string
		for c := range chains {
			if !h.chains[t][c] && strings.HasPrefix(c, "DOCKER") {
				added = append(added, c)
			}
		}
		slices.Sort(added)
		for _, c := range added {
			exec.Command("iptables", "-t", t, "-F", c).Run()
		}
		for _, c := range added {
			if out, err := exec.Command("iptables", "-t", t, "-X", c).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -t %s -X %s: %v: %s", t, c, err, out))
			}
		}
	}
	if p := forwardPolicy(); h.forwardPolicy != "" && p != h.forwardPolicy {
		if out, err := exec.Command("iptables", "-P", "FORWARD", h.forwardPolicy).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("restore FORWARD policy: %v: %s", err, out))
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && h.ipForward != "" && strings.TrimSpace(string(b)) != h.ipForward {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(h.ipForward), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore ip_forward: %w", err))
		}
	}
	if _, err := os.Stat("/sys/class/net/docker0"); err == nil && !h.docker0 {
		if out, err := exec.Command("ip", "link", "delete", "docker0").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete docker0: %v: %s", err, out))
		}
	}
	for _, p := range leftoverPaths {
		if h.paths[p] {
			continue
		}
		unmountUnder(p)
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// killShims kills containerd shims serving the lab's containerd (their
// command line names its socket, which lives under dir).
func killShims(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.Contains(filepath.Base(args[0]), "containerd-shim") && strings.Contains(string(cmdline), dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
