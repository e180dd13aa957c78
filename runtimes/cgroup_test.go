package runtimes

import (
	"strings"
	"testing"
)

const dockerID = "3f4e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f"

func TestParseCgroupPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want CgroupContainer
	}{
		{"docker cgroupfs", "/docker/" + dockerID, CgroupContainer{Kind: PathDocker, ID: dockerID}},
		{"docker cgroupfs trailing slash", "/docker/" + dockerID + "/", CgroupContainer{Kind: PathDocker, ID: dockerID}},
		{"docker systemd", "/system.slice/docker-" + dockerID + ".scope", CgroupContainer{Kind: PathDocker, ID: dockerID}},
		{"docker systemd nested init.scope", "/system.slice/docker-" + dockerID + ".scope/init.scope", CgroupContainer{Kind: PathDocker, ID: dockerID}},
		{"docker custom parent", "/mygroup/sub/" + dockerID, CgroupContainer{Kind: PathHexID, ID: dockerID}},
		{"cri-containerd systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + dockerID + ".scope",
			CgroupContainer{Kind: PathContainerdSystemd, ID: dockerID}},
		{"cri-containerd systemd short id", "/system.slice/cri-containerd-c1.scope", CgroupContainer{Kind: PathContainerdSystemd, ID: "c1"}},
		{"containerd cgroupfs", "/default/c1", CgroupContainer{Kind: PathContainerdCgroupfs, ID: "c1", Namespace: "default"}},
		{"containerd cgroupfs k8s.io hex", "/k8s.io/" + dockerID, CgroupContainer{Kind: PathContainerdCgroupfs, ID: dockerID, Namespace: "k8s.io"}},
		{"kubepods cgroupfs", "/kubepods/burstable/pod1234/" + dockerID, CgroupContainer{Kind: PathHexID, ID: dockerID}},
		{"crio", "/kubepods.slice/crio-" + dockerID + ".scope", CgroupContainer{Kind: PathOther, ID: dockerID}},
		{"crio conmon is not a container", "/system.slice/crio-conmon-" + dockerID + ".scope", CgroupContainer{}},
		{"podman", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + dockerID + ".scope", CgroupContainer{Kind: PathOther, ID: dockerID}},
		{"root", "/", CgroupContainer{}},
		{"empty", "", CgroupContainer{}},
		{"host service", "/system.slice/cron.service", CgroupContainer{}},
		{"host user session", "/user.slice/user-0.slice", CgroupContainer{}},
		{"host session scope", "/user.slice/user-0.slice/session-1.scope", CgroupContainer{}},
		{"docker slice unit itself", "/system.slice/docker.service", CgroupContainer{}},
		{"one component", "/process_api", CgroupContainer{}},
		{"three components no id", "/a/b/c", CgroupContainer{}},
		{"uppercase hex is not docker", "/docker/" + strings.ToUpper(dockerID), CgroupContainer{Kind: PathContainerdCgroupfs, ID: strings.ToUpper(dockerID), Namespace: "docker"}},
		{"empty scope id", "/system.slice/docker-.scope", CgroupContainer{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCgroupPath(tt.path); got != tt.want {
				t.Errorf("ParseCgroupPath(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestUnifiedAndV1Path(t *testing.T) {
	hybrid := "9:name=systemd:/docker/" + dockerID + "\n4:memory:/docker/" + dockerID + "\n2:cpu,cpuacct:/docker/" + dockerID + "\n0::/docker/" + dockerID + "\n"
	v1only := "4:memory:/default/c1\n3:cpu,cpuacct:/default/c1\n"
	v2only := "0::/system.slice/docker-" + dockerID + ".scope\n"
	tests := []struct {
		name, in, ctrl string
		unified        string
		unifiedOK      bool
		v1             string
		v1OK           bool
	}{
		{"hybrid", hybrid, "memory", "/docker/" + dockerID, true, "/docker/" + dockerID, true},
		{"hybrid comounted", hybrid, "cpuacct", "/docker/" + dockerID, true, "/docker/" + dockerID, true},
		{"hybrid named", hybrid, "name=systemd", "/docker/" + dockerID, true, "/docker/" + dockerID, true},
		{"v1 only", v1only, "memory", "", false, "/default/c1", true},
		{"v2 only", v2only, "memory", "/system.slice/docker-" + dockerID + ".scope", true, "", false},
		{"empty", "", "memory", "", false, "", false},
		{"garbage", "nonsense\n::\n1:", "memory", "", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok := UnifiedPath(tt.in)
			if u != tt.unified || ok != tt.unifiedOK {
				t.Errorf("UnifiedPath = %q, %v; want %q, %v", u, ok, tt.unified, tt.unifiedOK)
			}
			v, ok := V1Path(tt.in, tt.ctrl)
			if v != tt.v1 || ok != tt.v1OK {
				t.Errorf("V1Path(%q) = %q, %v; want %q, %v", tt.ctrl, v, ok, tt.v1, tt.v1OK)
			}
		})
	}
}

func TestSpecCgroupPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/default/c1", "/default/c1"},
		{"default/c1", "/default/c1"},
		{"system.slice:cri-containerd:abc", "/system.slice/cri-containerd-abc.scope"},
		{"kubepods-burstable-pod12.slice:cri-containerd:abc", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-abc.scope"},
		{":cri-containerd:abc", "/system.slice/cri-containerd-abc.scope"},
		{"system.slice::abc", "/system.slice/abc.scope"},
		{"system.slice:docker:x.slice", "/system.slice/x.slice"},
		{"-.slice:docker:abc", "/docker-abc.scope"},
	}
	for _, tt := range tests {
		if got := SpecCgroupPath(tt.in); got != tt.want {
			t.Errorf("SpecCgroupPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDockerCgroupPath(t *testing.T) {
	tests := []struct{ driver, parent, want string }{
		{"cgroupfs", "", "/docker/" + dockerID},
		{"", "", "/docker/" + dockerID},
		{"cgroupfs", "/mygroup/", "/mygroup/" + dockerID},
		{"systemd", "", "/system.slice/docker-" + dockerID + ".scope"},
		{"systemd", "my-app.slice", "/my.slice/my-app.slice/docker-" + dockerID + ".scope"},
	}
	for _, tt := range tests {
		if got := DockerCgroupPath(tt.driver, tt.parent, dockerID); got != tt.want {
			t.Errorf("DockerCgroupPath(%q, %q) = %q, want %q", tt.driver, tt.parent, got, tt.want)
		}
		// What we compute must parse back to the same container.
		if got := ParseCgroupPath(DockerCgroupPath(tt.driver, tt.parent, dockerID)); got.ID != dockerID {
			t.Errorf("ParseCgroupPath(DockerCgroupPath(%q, %q)).ID = %q", tt.driver, tt.parent, got.ID)
		}
	}
}

func TestCgroup2Mount(t *testing.T) {
	hybrid := `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	unified := "29 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	v1 := "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	bind := "50 22 0:26 /sub /mnt/x rw - cgroup2 cgroup2 rw\n" + `51 22 0:26 / /mnt/with\040space rw - cgroup2 cgroup2 rw` + "\n"
	tests := []struct{ name, in, want string }{
		{"hybrid", hybrid, "/sys/fs/cgroup/unified"},
		{"unified", unified, "/sys/fs/cgroup"},
		{"v1 only", v1, ""},
		{"bind of a subtree is skipped, escapes undone", bind, "/mnt/with space"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		if got := Cgroup2Mount(tt.in); got != tt.want {
			t.Errorf("%s: Cgroup2Mount = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzParseCgroupPath(f *testing.F) {
	for _, s := range []string{"/docker/" + dockerID, "/default/c1", "/system.slice/cri-containerd-x.scope", "", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got := ParseCgroupPath(path)
		if (got.Kind == PathNone) != (got.ID == "") {
			t.Fatalf("ParseCgroupPath(%q) = %+v: kind and id disagree", path, got)
		}
		if got.ID != "" && !strings.Contains(path, got.ID) {
			t.Fatalf("ParseCgroupPath(%q) invented id %q", path, got.ID)
		}
	})
}
