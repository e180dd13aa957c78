package policystore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// maxFileBytes bounds what is read of one policy file: the parser's own
// bound, so a file is refused before it is read rather than after.
const maxFileBytes = hostpolicy.MaxDocumentBytes

// readResult is what reading one directory entry found.
type readResult struct {
	data    []byte
	missing bool     // no such entry: the file was removed or renamed away
	err     error    // refused or unreadable; the message names the file
	perm    []string // who besides root can change this file
	whole   bool     // a document given whole (another source): never half-written, no empty settle
}

// readPolicyFile reads one entry of the policy directory, deciding from
// lstat before anything is opened: a regular file is read; a symlink is
// followed only when its target is a regular file; anything else (FIFO,
// socket, device, directory) is refused without being opened, since
// opening a FIFO blocks and reading a device never ends. The open itself is
// O_NONBLOCK|O_NOFOLLOW, the opened file is checked again with fstat (the
// entry may have been swapped since lstat), and at most maxFileBytes+1
// bytes are read, so no entry can block the store or grow its memory.
func readPolicyFile(path string) readResult {
	li, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return readResult{missing: true}
	}
	if err != nil {
		return readResult{err: err}
	}
	target := path
	switch {
	case li.Mode().IsRegular():
	case li.Mode()&fs.ModeSymlink != 0:
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			return readResult{err: fmt.Errorf("%s: symlink whose target cannot be resolved: %w", path, unwrapPath(err))}
		}
		ti, err := os.Lstat(resolved)
		if err != nil {
			return readResult{err: fmt.Errorf("%s: symlink to %s: %w", path, resolved, unwrapPath(err))}
		}
		if !ti.Mode().IsRegular() {
			return readResult{err: fmt.Errorf("%s: symlink to %s, which is a %s, not a regular file; not read", path, resolved, kindOf(ti.Mode()))}
		}
		target = resolved
	default:
		return readResult{err: fmt.Errorf("%s: is a %s, not a regular file; not read", path, kindOf(li.Mode()))}
	}

	f, err := os.OpenFile(target, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_NOCTTY, 0)
	if errors.Is(err, fs.ErrNotExist) && target == path {
		return readResult{missing: true}
	}
	if err != nil {
		return readResult{err: fmt.Errorf("%s: %w", path, unwrapPath(err))}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return readResult{err: fmt.Errorf("%s: %w", path, unwrapPath(err))}
	}
	if !fi.Mode().IsRegular() {
		return readResult{err: fmt.Errorf("%s: is a %s, not a regular file; not read", path, kindOf(fi.Mode()))}
	}
	r := readResult{perm: writableBy("policy file", target, fi)}
	if fi.Size() > maxFileBytes {
		r.err = fmt.Errorf("%s: file is %d bytes; the limit is %d", path, fi.Size(), maxFileBytes)
		return r
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		r.err = fmt.Errorf("%s: %w", path, unwrapPath(err))
		return r
	}
	if len(data) > maxFileBytes {
		// It grew between fstat and the read.
		r.err = fmt.Errorf("%s: file is more than %d bytes, the limit", path, maxFileBytes)
		return r
	}
	r.data = data
	return r
}

// filePerm reports who besides root can change an entry, without reading
// it: what a chmod or chown changes.
func filePerm(path string) []string {
	fi, err := os.Stat(path) // a symlink: its target, the file that is read
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	return writableBy("policy file", path, fi)
}

// writableBy describes how someone other than root can change the file or
// directory fi: it is owned by another user, or group or others may write
// it. Any of those users can change what is enforced.
func writableBy(what, path string, fi fs.FileInfo) []string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	var who []string
	if st.Uid != 0 {
		who = append(who, fmt.Sprintf("owned by uid %d", st.Uid))
	}
	if fi.Mode().Perm()&0o020 != 0 {
		who = append(who, fmt.Sprintf("writable by group %d", st.Gid))
	}
	if fi.Mode().Perm()&0o002 != 0 {
		who = append(who, "writable by everyone")
	}
	if who == nil {
		return nil
	}
	return []string{fmt.Sprintf("%s %s is %s (mode %04o): a user who can write it can change what is enforced; make it owned by root and not group- or world-writable",
		what, path, strings.Join(who, " and "), fi.Mode().Perm())}
}

// kindOf names a file type for an error message.
func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "special file"
	}
}

// unwrapPath drops the path os adds to its errors, where the message
// names the file already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
