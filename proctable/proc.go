package proctable

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SeedFromProc adds every process currently in /proc. Processes that vanish
// while being read are skipped. It returns how many were added.
func (t *Table) SeedFromProc() (int, error) {
	dir, err := os.Open(t.opts.ProcRoot)
	if err != nil {
		return 0, fmt.Errorf("seed process table: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return 0, fmt.Errorf("seed process table: list %s: %w", t.opts.ProcRoot, err)
	}
	var procs []Process
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue
		}
		p, err := readProc(t.opts.ProcRoot, uint32(pid))
		if err != nil {
			continue
		}
		procs = append(procs, p)
	}
	exeOf := make(map[uint32]string, len(procs))
	for _, p := range procs {
		exeOf[p.HostPID] = p.Exe
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	added := 0
	for _, p := range procs {
		if t.procs.get(p.HostPID) != nil { // an event was faster
			continue
		}
		p.ParentExe = exeOf[p.HostPPID]
		t.addLocked(p)
		added++
	}
	return added, nil
}

// readProc reads one process from procfs. Kernel threads have no exe; they
// are returned with an empty Exe.
func readProc(root string, pid uint32) (Process, error) {
	base := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
	status, err := os.ReadFile(filepath.Join(base, "status"))
	if err != nil {
		return Process{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	p, err := parseStatus(status)
	if err != nil {
		return Process{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	p.HostPID = pid
	if p.PID == 0 { // a kernel without NStgid has no nested pid namespaces
		p.PID = pid
	}
	p.Exe, _ = os.Readlink(filepath.Join(base, "exe"))
	p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
	p.Cwd, _ = os.Readlink(filepath.Join(base, "cwd"))
	if cmdline, err := os.ReadFile(filepath.Join(base, "cmdline")); err == nil {
		p.Args = parseCmdline(cmdline)
	}
	if stat, err := os.ReadFile(filepath.Join(base, "stat")); err == nil {
		if nr, ok := parseTTYNr(stat); ok {
			p.TTY = TTYName(nr)
		}
	}
	p.fill()
	return p, nil
}

// parseStatus takes PPid, the real Uid and the innermost NStgid/NSpid
// values from /proc/<pid>/status. HostPID is left to the caller.
func parseStatus(b []byte) (Process, error) {
	var p Process
	var sawPPid bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		fields := strings.Fields(string(val))
		if len(fields) == 0 {
			continue
		}
		switch string(key) {
		case "PPid":
			n, err := strconv.ParseUint(fields[0], 10, 32)
			if err != nil {
				return p, fmt.Errorf("status PPid %q: %w", fields[0], err)
			}
			p.HostPPID, sawPPid = uint32(n), true
		case "Uid":
			n, err := strconv.ParseUint(fields[0], 10, 32)
			if err != nil {
				return p, fmt.Errorf("status Uid %q: %w", fields[0], err)
			}
			p.UID = uint32(n)
		case "NStgid":
			if n, err := strconv.ParseUint(fields[len(fields)-1], 10, 32); err == nil {
				p.PID = uint32(n)
			}
		}
	}
	if !sawPPid {
		return p, fmt.Errorf("status has no PPid line")
	}
	// The namespace-local PPID is the parent's NStgid, which status does not
	// give; in the host namespace it equals HostPPID, and for a container's
	// processes the exec/fork events carry the kernel's value.
	p.PPID = p.HostPPID
	return p, nil
}

// parseCmdline splits /proc/<pid>/cmdline into argv[1:].
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	if len(parts) <= 1 {
		return nil
	}
	args := make([]string, len(parts)-1)
	for i, a := range parts[1:] {
		args[i] = string(a)
	}
	return args
}

// parseTTYNr returns field 7 (tty_nr) of /proc/<pid>/stat. The command name
// in field 2 may contain spaces and parentheses, so parsing starts after the
// last ')'.
func parseTTYNr(stat []byte) (uint32, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is state (field 3); tty_nr is field 7.
	if len(fields) < 5 {
		return 0, false
	}
	n, err := strconv.ParseInt(fields[4], 10, 64)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// TTYName turns a tty device number (as in /proc/<pid>/stat) into the name
// the kernel gives the tty ("pts0", "tty1", "ttyS0"); "" for none or an
// unknown driver.
func TTYName(nr uint32) string {
	if nr == 0 {
		return ""
	}
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case major >= 136 && major <= 143:
		return "pts" + strconv.FormatUint(uint64((major-136)*256+minor), 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(uint64(minor), 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(uint64(minor-64), 10)
	case major == 5 && minor == 1:
		return "console"
	}
	return ""
}
