package ruleobj

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpen(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir+"/real", 0o755))
	must(os.WriteFile(dir+"/real/f", []byte("f"), 0o644))
	must(os.Symlink(dir+"/real/f", dir+"/real/link"))
	must(os.Symlink("real", dir+"/dirlink"))
	for _, tc := range []struct {
		name, path string
		err        error // nil: opened
		errno      unix.Errno
		link       bool // opened, and it is the link
	}{
		{name: "the file itself", path: dir + "/real/f"},
		{name: "a directory", path: dir + "/real"},
		{name: "a symbolic link as the last component, opened as itself", path: dir + "/real/link", link: true},
		{name: "through a linked directory", path: dir + "/dirlink/f", err: ErrIndirect},
		{name: "missing", path: dir + "/real/none", errno: unix.ENOENT},
		{name: "not clean", path: dir + "/real/../real/f", err: ErrIndirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := Open(tc.path)
			switch {
			case tc.err == nil && tc.errno == 0:
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				var st unix.Stat_t
				must(unix.Fstat(fd, &st))
				if isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK; isLink != tc.link {
					t.Fatalf("Open(%s): mode %o", tc.path, st.Mode)
				}
			case tc.err != nil && !errors.Is(err, tc.err), tc.errno != 0 && !errors.Is(err, tc.errno):
				t.Fatalf("Open(%s): %v, want %v%v", tc.path, err, tc.err, tc.errno)
			case fd != -1:
				t.Fatalf("Open(%s): fd %d with error %v", tc.path, fd, err)
			}
		})
	}
}
