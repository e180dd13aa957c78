package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDNSQueryLog: a DNS query sent over UDP on this host's kernel becomes
// upstream's DNS visibility HostLog (network visibility): Operation
// Network, Resource "sa_family=AF_INET sin_port=53", Data
// "kfunc=UDP_SENDMSG,domain=...,daddr=...,qtype=A", the sender's
// ProcessName and command line; with network visibility off, none.
func TestDNSQueryLog(t *testing.T) {
	query := func(t *testing.T, name string) {
		t.Helper()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		msg := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		for _, l := range []string{name, "example", "test"} {
			msg = append(append(msg, byte(len(l))), l...)
		}
		msg = append(msg, 0, 0, 1, 0, 1)
		if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Port: 53, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		visibility string
		logged     bool
	}{{"process,file,network", true}, {"process,file", false}} {
		t.Run(tc.visibility, func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "events.jsonl")
			startMonitored(t, dir, filepath.Join(dir, "watched"), logPath, "--hostVisibility", tc.visibility)
			query(t, "dnslog")
			tail := &recordTail{path: logPath}
			if tc.logged {
				waitForRecord(t, tail, map[string]any{"Type": "HostLog", "Operation": "Network",
					"Resource": "sa_family=AF_INET sin_port=53", "Data": "kfunc=UDP_SENDMSG,domain=dnslog.example.test,daddr=127.0.0.1,qtype=A",
					"ProcessName": self, "HostPID": float64(os.Getpid()), "Result": "Passed"})
				return
			}
			// A later event that is logged proves the query had its chance.
			f := filepath.Join(dir, "watched", "f")
			os.MkdirAll(filepath.Dir(f), 0o700)
			os.WriteFile(f, nil, 0o600)
			waitForRecord(t, tail, map[string]any{"Operation": "File", "Resource": f, "HostPID": float64(os.Getpid())})
			for _, r := range tail.recs {
				if r["Operation"] == "Network" && r["HostPID"] == float64(os.Getpid()) {
					t.Errorf("network event without network visibility: %v", r)
				}
			}
		})
	}
}
