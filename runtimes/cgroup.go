package runtimes

import (
	"strings"
)

// Pure functions over cgroup paths. A cgroup path here is the path inside a
// cgroup hierarchy as /proc/PID/cgroup shows it, always with a leading "/".

// UnifiedPath returns the cgroup2 path ("0::" line) of a /proc/PID/cgroup
// file, and whether there was one. Hybrid hosts list v1 hierarchies too;
// only the cgroup2 line names the cgroup whose id the BPF side sees.
func UnifiedPath(procCgroup string) (string, bool) {
	for line := range strings.SplitSeq(procCgroup, "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, true
		}
	}
	return "", false
}

// V1Path returns the path of the v1 hierarchy that carries controller
// (e.g. "memory", "name=systemd") in a /proc/PID/cgroup file.
func V1Path(procCgroup, controller string) (string, bool) {
	for line := range strings.SplitSeq(procCgroup, "\n") {
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || ctrls == "" {
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c == controller {
				return path, true
			}
		}
	}
	return "", false
}

// PathKind says which runtime layout a container cgroup path follows.
type PathKind uint8

const (
	PathNone               PathKind = iota // not a container cgroup
	PathDocker                             // /docker/<id>, /system.slice/docker-<id>.scope
	PathContainerdSystemd                  // .../cri-containerd-<id>.scope
	PathContainerdCgroupfs                 // /<namespace>/<id> (needs the namespace to be known)
	PathHexID                              // <parent>/<64 hex>: some runtime's container
	PathOther                              // crio-, libpod-, ... : a container of a runtime not followed
)

// CgroupContainer is what a cgroup path says about a container.
type CgroupContainer struct {
	Kind      PathKind
	ID        string
	Namespace string // containerd namespace, PathContainerdCgroupfs only
}

// systemd scope prefixes of the runtimes: "<prefix><id>.scope".
var scopePrefixes = []struct {
	prefix string
	kind   PathKind
}{
	{"docker-", PathDocker},
	{"cri-containerd-", PathContainerdSystemd},
	{"crio-", PathOther},
	{"libpod-", PathOther},
}

// ParseCgroupPath finds the container a cgroup path belongs to. The deepest
// component that names a container wins, so a sub-cgroup a container made
// for itself (systemd in a container: .../docker-<id>.scope/init.scope)
// still resolves to the container. The two-component containerd cgroupfs
// form /<namespace>/<id> is ambiguous with host cgroups such as
// /system.slice/cron.service, so it is returned only for path components
// that look like neither a systemd unit nor the root, and the caller must
// check the namespace against containerd's.
func ParseCgroupPath(path string) CgroupContainer {
	path = strings.TrimSuffix(path, "/")
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if name, ok := strings.CutSuffix(p, ".scope"); ok {
			for _, sp := range scopePrefixes {
				if id, ok := strings.CutPrefix(name, sp.prefix); ok && id != "" && !strings.HasPrefix(id, "conmon-") {
					return CgroupContainer{Kind: sp.kind, ID: id}
				}
			}
			continue
		}
		if isHexID(p) {
			switch {
			case i == 1 && parts[0] == "docker":
				return CgroupContainer{Kind: PathDocker, ID: p}
			case i == 1 && !isUnit(parts[0]):
				return CgroupContainer{Kind: PathContainerdCgroupfs, ID: p, Namespace: parts[0]}
			}
			// A 64-hex leaf under a custom parent (docker --cgroup-parent,
			// kubepods cgroupfs): a container of some runtime.
			return CgroupContainer{Kind: PathHexID, ID: p}
		}
	}
	if len(parts) == 2 && parts[0] != "" && parts[1] != "" && !isUnit(parts[0]) && !isUnit(parts[1]) {
		return CgroupContainer{Kind: PathContainerdCgroupfs, ID: parts[1], Namespace: parts[0]}
	}
	return CgroupContainer{}
}

// isUnit: a systemd unit name, which no runtime uses as a container id or
// containerd namespace in a cgroupfs path.
func isUnit(s string) bool {
	for _, suf := range []string{".slice", ".service", ".scope", ".mount", ".socket"} {
		if strings.HasSuffix(s, suf) {
			return true
		}
	}
	return false
}

// isHexID: a 64-character lowercase hex string (docker, CRI ids).
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SpecCgroupPath turns an OCI spec's linux.cgroupsPath into the cgroup path
// runc creates. Two forms exist: a plain path (cgroupfs driver, e.g.
// "/default/c1"; relative paths are under the root) and systemd's
// "slice:prefix:name" (e.g. "system.slice:cri-containerd:<id>" becomes
// "/system.slice/cri-containerd-<id>.scope"). A slice name expands into its
// parents: "kubepods-burstable-pod1.slice" lives in
// /kubepods.slice/kubepods-burstable.slice/.
func SpecCgroupPath(cgroupsPath string) string {
	if cgroupsPath == "" {
		return ""
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 || strings.HasPrefix(cgroupsPath, "/") {
		if !strings.HasPrefix(cgroupsPath, "/") {
			return "/" + cgroupsPath
		}
		return cgroupsPath
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name + ".scope"
		} else {
			unit = name + ".scope"
		}
	}
	return ExpandSlice(slice) + "/" + unit
}

// ExpandSlice turns a systemd slice name into its cgroup path:
// "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root.
func ExpandSlice(slice string) string {
	if slice == "-.slice" || slice == "" {
		return ""
	}
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok {
		return "/" + slice
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '-' {
			b.WriteString("/" + name[:i] + ".slice")
		}
	}
	b.WriteString("/" + slice)
	return b.String()
}

// DockerCgroupPath is the cgroup path dockerd gives a container, from its
// cgroup driver ("cgroupfs" or "systemd") and HostConfig.CgroupParent.
func DockerCgroupPath(driver, parent, id string) string {
	if driver == "systemd" {
		if parent == "" {
			parent = "system.slice"
		}
		return ExpandSlice(parent) + "/docker-" + id + ".scope"
	}
	if parent == "" {
		parent = "/docker"
	}
	return "/" + strings.Trim(parent, "/") + "/" + id
}

// Cgroup2Mount finds the cgroup2 mount point in a /proc/self/mountinfo
// text: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid
// ones, "" on cgroup v1-only hosts.
func Cgroup2Mount(mountinfo string) string {
	for line := range strings.SplitSeq(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if fstype, _, _ := strings.Cut(post, " "); fstype != "cgroup2" {
			continue
		}
		f := strings.Fields(pre)
		if len(f) >= 5 && f[3] == "/" {
			return unescapeMountinfo(f[4])
		}
	}
	return ""
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
