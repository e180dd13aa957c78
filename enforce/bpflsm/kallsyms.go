package bpflsm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/cilium/ebpf"
)

// The name memo (c/enforcer.bpf.c) reads two kernel sequence counters,
// rename_lock's and mount_lock's, at addresses the loader writes into the
// object as constants. They are read here rather than declared __ksym: a
// loader that resolves ksyms refuses the whole object when
// kernel.kptr_restrict is 2 (every address reads 0, and cilium/ebpf fails
// the load even for weak ksyms), where the enforcer must still load and
// only the memo be off.
var memoSymbols = [...]struct{ symbol, constant string }{
	{"rename_lock", "rename_lock_addr"},
	{"mount_lock", "mount_lock_addr"},
}

// kallsyms returns the addresses of the named data symbols of the kernel
// image (not of modules) listed in r, in /proc/kallsyms's format
// ("ffffffff82a0c0c0 D rename_lock"); a name not found is absent, and
// one listed as 0 (hidden by kptr_restrict) is 0.
func kallsyms(r io.Reader, names ...string) (map[string]uint64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() && len(out) < len(want) {
		f := bytes.Fields(sc.Bytes())
		// address, type, name, and "[module]" for a module's symbol
		if len(f) != 3 || !want[string(f[2])] {
			continue
		}
		addr, err := strconv.ParseUint(string(f[0]), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms: %s: address %q: %w", f[2], f[0], err)
		}
		out[string(f[2])] = addr
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kallsyms: %w", err)
	}
	return out, nil
}

// setMemoAddresses writes the sequence counters' addresses from
// /proc/kallsyms into spec. It returns why the memo is off, or "" when
// both addresses are known; the enforcer loads either way.
func setMemoAddresses(spec *ebpf.CollectionSpec, kallsymsPath string) (string, error) {
	var names []string
	for _, s := range memoSymbols {
		names = append(names, s.symbol)
	}
	var addrs map[string]uint64
	f, err := os.Open(kallsymsPath)
	if err == nil {
		addrs, err = kallsyms(f, names...)
		f.Close()
	}
	why := ""
	if err != nil {
		why = err.Error()
	}
	for _, s := range memoSymbols {
		v, ok := spec.Variables[s.constant]
		if !ok {
			return "", fmt.Errorf("the enforcer object has no constant %s", s.constant)
		}
		addr := addrs[s.symbol]
		if err := v.Set(addr); err != nil {
			return "", fmt.Errorf("set %s: %w", s.constant, err)
		}
		if addr == 0 && why == "" {
			why = fmt.Sprintf("%s has no address for %s", kallsymsPath, s.symbol)
		}
	}
	return why, nil
}
