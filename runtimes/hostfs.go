package runtimes

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostFS reads what the kernel says about a process's cgroup and
// namespaces, the keys kernel events carry.
type hostFS struct {
	procRoot string
	cg2      string // cgroup2 mount point; "" on v1-only hosts
	cg2FD    int    // open cgroup2 mount, for open_by_handle_at; -1 if none
}

func newHostFS(procRoot, cgroup2 string) (*hostFS, error) {
	h := &hostFS{procRoot: procRoot, cg2: cgroup2, cg2FD: -1}
	if h.cg2 == "" {
		mi, err := os.ReadFile(filepath.Join(procRoot, "self/mountinfo"))
		if err != nil {
			return nil, fmt.Errorf("runtimes: find the cgroup2 mount: %w", err)
		}
		h.cg2 = Cgroup2Mount(string(mi))
	}
	if h.cg2 != "" {
		fd, err := unix.Open(h.cg2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("runtimes: open cgroup2 mount %s: %w", h.cg2, err)
		}
		h.cg2FD = fd
	}
	return h, nil
}

func (h *hostFS) close() {
	if h.cg2FD >= 0 {
		unix.Close(h.cg2FD)
		h.cg2FD = -1
	}
}

// nsInode is the inode of /proc/PID/ns/<kind>, the id BPF programs read
// from task->nsproxy.
func (h *hostFS) nsInode(pid uint32, kind string) uint32 {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(h.procRoot, strconv.FormatUint(uint64(pid), 10), "ns", kind), &st); err != nil {
		return 0
	}
	return uint32(st.Ino)
}

// cgroupID is the cgroup2 id of a cgroup path: the inode of its directory.
func (h *hostFS) cgroupID(path string) uint64 {
	if h.cg2 == "" || path == "" {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(h.cg2, path), &st); err != nil {
		return 0
	}
	return st.Ino
}

// fill sets the attribution keys of c from its init process pid, falling
// back to hint (the cgroup path the runtime's metadata implies) when the
// process is gone already.
func (h *hostFS) fill(c *Container, pid uint32, hint string) {
	c.HostPID = pid
	path := ""
	if pid != 0 {
		if b, err := os.ReadFile(filepath.Join(h.procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup")); err == nil {
			if h.cg2 != "" {
				path, _ = UnifiedPath(string(b))
			} else {
				path, _ = V1Path(string(b), "memory")
			}
		}
		c.PidNS = h.nsInode(pid, "pid")
		c.MntNS = h.nsInode(pid, "mnt")
	}
	if path == "" {
		path = hint
	}
	c.CgroupPath = path
	c.CgroupID = h.cgroupID(path)
}

// fileidKernfs is the file handle type of kernfs (cgroupfs): 8 bytes, the
// node id, which is the cgroup id.
const fileidKernfs = 0xfe

// cgroupPath finds the path of a cgroup2 id by opening it by handle (needs
// CAP_DAC_READ_SEARCH). It fails for removed cgroups.
func (h *hostFS) cgroupPath(id uint64) (string, error) {
	if h.cg2FD < 0 {
		return "", fmt.Errorf("runtimes: no cgroup2 mount")
	}
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	fd, err := unix.OpenByHandleAt(h.cg2FD, unix.NewFileHandle(fileidKernfs, b[:]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("runtimes: open cgroup %d by handle: %w", id, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink(filepath.Join(h.procRoot, "self/fd", strconv.Itoa(fd)))
	if err != nil {
		return "", fmt.Errorf("runtimes: path of cgroup %d: %w", id, err)
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(h.cg2, "/"))
	if !ok {
		return "", fmt.Errorf("runtimes: cgroup %d resolved outside %s: %s", id, h.cg2, p)
	}
	if rel == "" {
		rel = "/"
	}
	return rel, nil
}
