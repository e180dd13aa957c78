// Package ruleobj opens the file a rule's path names, for the tiers that
// also know protected files by identity (BPF-LSM's inode tags, the fanotify
// tier's protected inodes). Only a file the path names directly counts: a
// path that passes through a symbolic link is not the file's name (the
// kernel reports opens under the resolved one), and whoever may change
// that link (a user's own directory in the rule's path) could otherwise
// point it at any file of that name, or at any file at all, and have the
// rule refuse it for everyone.
package ruleobj

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrIndirect: the path reaches its file through a symbolic link.
var ErrIndirect = errors.New("the path passes through a symbolic link")

// Open opens path with O_PATH (no open of the file itself: no permission
// event, no access time), following no symbolic link on the way: the
// descriptor's own name must be path itself. A symbolic link as the last
// component is opened as itself (O_NOFOLLOW), which no caller takes for a
// regular file. The caller closes fd.
func Open(path string) (fd int, err error) {
	fd, err = unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || name != path {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("%s is %s: %w", path, name, ErrIndirect)
		}
		return -1, err
	}
	return fd, nil
}
