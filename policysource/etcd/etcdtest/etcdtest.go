// Package etcdtest runs a real etcd server (Debian's etcd-server package,
// /usr/bin/etcd, installed by scripts/install-deps) on loopback ports for
// tests.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Server is one etcd member with its data directory; Stop and Start keep
// its data and ports.
type Server struct {
	t          testing.TB
	Bin        string
	Dir        string
	ClientURL  string
	peerURL    string
	cmd        *exec.Cmd
	exited     chan struct{}
	ExtraFlags []string
}

// Binary finds etcd; without it the test is skipped, except in CI, where
// scripts/install-deps must have installed it.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd not installed (scripts/install-deps installs etcd-server)")
		}
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	return bin
}

// Start runs a fresh etcd and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, Bin: Binary(t), Dir: t.TempDir(),
		ClientURL: "http://" + freePort(t), peerURL: "http://" + freePort(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start (re)starts the server on its data and ports and waits until it
// answers (a hang guard of 30 s).
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{
		"--name", "default", "--data-dir", filepath.Join(s.Dir, "data"),
		"--listen-client-urls", s.ClientURL, "--advertise-client-urls", s.ClientURL,
		"--listen-peer-urls", s.peerURL, "--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "default=" + s.peerURL, "--log-level", "error", "--logger", "zap",
	}, s.ExtraFlags...)
	s.cmd = exec.Command(s.Bin, args...)
	log, err := os.OpenFile(filepath.Join(s.Dir, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); log.Close(); close(done) }(s.cmd, s.exited)
	cli := s.Client()
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "/")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			data, _ := os.ReadFile(filepath.Join(s.Dir, "etcd.log"))
			s.t.Fatalf("etcd exited: %s", data)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("etcd at %s never answered: %v", s.ClientURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: as a crash) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pid is the server's process id (for CPU and memory figures).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Client makes a client of the server.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.t.Fatal(err)
	}
	return cli
}

// Put writes a key (a hang guard of 10 s).
func (s *Server) Put(cli *clientv3.Client, key, value string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Put(ctx, key, value)
	if err != nil {
		s.t.Fatalf("put %s: %v", key, err)
	}
	return r.Header.Revision
}

// Delete removes a key.
func (s *Server) Delete(cli *clientv3.Client, key string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Delete(ctx, key)
	if err != nil {
		s.t.Fatalf("delete %s: %v", key, err)
	}
	return r.Header.Revision
}

// String names the server.
func (s *Server) String() string { return fmt.Sprintf("etcd %s", s.ClientURL) }
