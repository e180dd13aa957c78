package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdProc is the one etcd member the watchers share, on loopback ports.
// (policysource/etcd/etcdtest does the same for tests; it needs a
// testing.TB, which a program has not.)
type etcdProc struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
	log    string
}

func startEtcd(bin, dir string) (*etcdProc, error) {
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &etcdProc{url: "http://" + cport, exited: make(chan struct{}), log: filepath.Join(dir, "etcd.log")}
	peer := "http://" + pport
	p.cmd = exec.Command(bin, "--name", "bench", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", p.url, "--advertise-client-urls", p.url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--log-level", "error", "--logger", "zap")
	return p, p.launch()
}

// startProxy runs etcd's gRPC proxy in front of upstream: it coalesces
// watchers of the same range into one watch on etcd.
func startProxy(bin, upstream, dir string) (*etcdProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &etcdProc{url: "http://" + port, exited: make(chan struct{}), log: filepath.Join(dir, "grpc-proxy.log")}
	p.cmd = exec.Command(bin, "grpc-proxy", "start", "--endpoints", strings.TrimPrefix(upstream, "http://"),
		"--listen-addr", port, "--advertise-client-url", port, "--data-dir", filepath.Join(dir, "proxy"))
	return p, p.launch()
}

func (p *etcdProc) launch() error {
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", p.cmd.Path, err)
	}
	go func() { p.cmd.Wait(); lf.Close(); close(p.exited) }()
	cli, err := dial(p.url)
	if err != nil {
		p.stop()
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "/")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			data, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s exited: %s", p.cmd.Path, data)
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s at %s never answered: %w", p.cmd.Path, p.url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *etcdProc) stop() {
	p.cmd.Process.Kill()
	<-p.exited
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func dial(url string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// usage is a process's CPU time so far and its resident memory now.
type usage struct {
	cpu time.Duration
	rss int64 // bytes
	hwm int64 // peak resident bytes
}

// procUsage reads /proc/PID/stat (utime+stime, in clock ticks of 1/100 s
// on Linux) and /proc/PID/status (VmRSS, VmHWM).
func procUsage(pid int) (usage, error) {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	sf, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	defer sf.Close()
	sc := bufio.NewScanner(sf)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			u.rss = kb << 10
		case "VmHWM":
			u.hwm = kb << 10
		}
	}
	return u, sc.Err()
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
