package event

import (
	"strings"

	"golang.org/x/sys/unix"
)

// ResultText is upstream's Result for a syscall return value: "Passed" for
// success, otherwise the C library's text for the errno ("Permission
// denied", "Operation not permitted", "No such file or directory", ...).
func ResultText(retval int64) string {
	if retval >= 0 {
		return "Passed"
	}
	if retval < -4095 {
		return "Unknown error"
	}
	errno := unix.Errno(-retval)
	if unix.ErrnoName(errno) == "" {
		return "Unknown error"
	}
	text := errno.Error()
	if text == "" {
		return "Unknown error"
	}
	return strings.ToUpper(text[:1]) + text[1:]
}
