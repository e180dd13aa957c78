// Package peertest runs part of a test as another user: it re-executes the
// test binary with other credentials, and the package's TestMain hands the
// child to a function chosen by an environment variable.
package peertest

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Env is the variable that names what the child does.
const Env = "KUBEARMOR_PEERTEST_CHILD"

// Nobody is the unprivileged user the tests act as.
const Nobody = 65534

// Command returns a command running the current test binary as uid:gid
// with groups, with Env=role and args in KUBEARMOR_PEERTEST_ARGS. The
// binary is copied where that user may execute it.
func Command(t testing.TB, uid, gid uint32, groups []uint32, role string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "peertest-") // t.TempDir's parent is private
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), Env+"="+role)
	for i, a := range args {
		cmd.Env = append(cmd.Env, "KUBEARMOR_PEERTEST_ARG"+string(rune('0'+i))+"="+a)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	cmd.Stderr = os.Stderr
	return cmd
}

// Arg is the i-th argument given to Command, in the child.
func Arg(i int) string { return os.Getenv("KUBEARMOR_PEERTEST_ARG" + string(rune('0'+i))) }

// Role is what the child was started for ("" in the parent).
func Role() string { return os.Getenv(Env) }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
