package fanotify

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The mount table decides which filesystems the allow cache may trust: a
// filesystem counts only when it is mounted once and whole, and a line the
// parser cannot read is an error naming it, never a mount silently missed.
func TestMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		once        []uint64 // singleMounts
		err         string
	}{
		{
			name: "once, whole",
			table: "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n" +
				"44 26 0:39 / /tmp/a\\040b rw shared:4 master:1 - tmpfs tmpfs rw\n",
			once: []uint64{unix.Mkdev(254, 0), unix.Mkdev(0, 39)},
		},
		{
			name: "twice, and in part",
			table: "26 1 254:0 / / rw - ext4 /dev/vda rw\n" +
				"27 26 254:0 /srv /mnt rw - ext4 /dev/vda rw\n" +
				"28 26 0:40 / /a rw - tmpfs tmpfs rw\n" +
				"29 26 0:40 / /b rw - tmpfs tmpfs rw\n" +
				"30 26 0:41 /sub /c rw - tmpfs tmpfs rw\n" +
				"31 26 0:42 / /- rw - tmpfs - rw\n",
			once: []uint64{unix.Mkdev(0, 42)},
		},
		{name: "no separator", table: "26 1 254:0 / / rw ext4 /dev/vda rw\n", err: "line 1: not a mountinfo line"},
		{name: "no fstype", table: "26 1 254:0 / / rw,relatime -\n", err: "line 1: not a mountinfo line"},
		{name: "bad mount ID", table: "x 1 254:0 / / rw - ext4 a rw\n", err: "line 1: field 1 (mount ID) \"x\""},
		{name: "bad device", table: "26 1 254:0 / / rw - ext4 a rw\n26 1 x:0 / /b rw - ext4 a rw\n", err: "line 2: field 3 (major:minor) \"x:0\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mounts, err := parseMountinfo(strings.NewReader(tc.table), "mountinfo")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), "mountinfo "+tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(singleMounts(mounts)))
			for dev, id := range singleMounts(mounts) {
				if m := mounts[slices.IndexFunc(mounts, func(m mount) bool { return m.dev == dev })]; m.id != id {
					t.Errorf("dev %d: mount ID %d, want %d", dev, id, m.id)
				}
			}
			slices.Sort(tc.once)
			if !slices.Equal(got, tc.once) {
				t.Errorf("once %v, want %v (mounts %+v)", got, tc.once, mounts)
			}
		})
	}
	mounts, err := parseMountinfo(strings.NewReader("44 26 0:39 /r\\040s /tmp/a\\040b rw - tmpfs tmpfs rw\n"), "mountinfo")
	if err != nil || len(mounts) != 1 || mounts[0] != (mount{point: "/tmp/a b", fstype: "tmpfs", dev: unix.Mkdev(0, 39), root: "/r s", id: 44}) {
		t.Fatalf("%+v %v", mounts, err)
	}
}

func TestUnseenMounts(t *testing.T) {
	for _, tc := range []struct {
		release, clone, max string
		warn                bool
	}{
		{"6.1.0-28-cloud-amd64", "1", "63408", true},
		{"6.1.0-28-cloud-amd64", "", "63408", true},   // no Debian knob: upstream allows
		{"6.1.0-28-cloud-amd64", "0", "63408", false}, // Debian's knob off
		{"6.1.0-28-cloud-amd64", "", "0", false},      // no user namespaces at all
		{"5.14.0-427.el9.x86_64", "", "7000", true},
		{"6.12.12-amd64", "1", "63408", false},
		{"6.18.44-fc-v1272", "1", "63408", false},
		{"7.0.1", "1", "1", false},
		{"garbage", "1", "1", true},
	} {
		if got := unseenMounts(tc.release, tc.clone, tc.max); (got != "") != tc.warn {
			t.Errorf("unseenMounts(%q, %q, %q) = %q, want a warning: %v", tc.release, tc.clone, tc.max, got, tc.warn)
		}
	}
}
