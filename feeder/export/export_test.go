package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// The alert of karmor-client.md §4.5 and the exact line karmor --json
// printed for it.
var (
	karmorAlert = &kubearmorpb.Alert{
		Timestamp: 1795458092, UpdatedTime: "2026-11-23T18:21:32.591892521Z", ClusterName: "default", HostName: "vm1",
		HostPPID: 1, HostPID: 1000, PPID: 1, PID: 1000, UID: 0,
		ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/sleep", PolicyName: "hsp-block-sleep",
		Severity: "5", Message: "blocked sleep", Type: "MatchedHostPolicy", Source: "/usr/bin/bash",
		Operation: "Process", Resource: "/usr/bin/sleep 1", Data: "lsm=SECURITY_BPRM_CHECK",
		EventData: map[string]string{"k": "v"}, Enforcer: "BPFLSM", Action: "Block", Result: "Permission denied", Cwd: "/",
	}
	karmorLine = `{"Timestamp":1795458092,"UpdatedTime":"2026-11-23T18:21:32.591892521Z","ClusterName":"default","HostName":"vm1","HostPPID":1,"HostPID":1000,"PPID":1,"PID":1000,"UID":0,"ParentProcessName":"/usr/bin/bash","ProcessName":"/usr/bin/sleep","PolicyName":"hsp-block-sleep","Severity":"5","Message":"blocked sleep","Type":"MatchedHostPolicy","Source":"/usr/bin/bash","Operation":"Process","Resource":"/usr/bin/sleep 1","Data":"lsm=SECURITY_BPRM_CHECK","EventData":{"k":"v"},"Enforcer":"BPFLSM","Action":"Block","Result":"Permission denied","Cwd":"/"}`
)

func TestJSONLinesMatchKarmor(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"karmor's alert", karmorAlert, karmorLine},
		{"empty alert keeps PPID and UID", &kubearmorpb.Alert{}, `{"PPID":0,"UID":0}`},
		{"empty log keeps PPID and UID", &kubearmorpb.Log{}, `{"PPID":0,"UID":0}`},
		{"host log", &kubearmorpb.Log{
			Timestamp: 1717259989, UpdatedTime: "2024-06-01T16:39:49.360067Z", HostName: "h", HostPPID: 1, HostPID: 7, PID: 7, UID: 1000,
			ProcessName: "/usr/bin/cat", Type: "HostLog", Source: "/usr/bin/cat /etc/hostname", Operation: "File", Resource: "/etc/hostname",
			Data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", EventData: map[string]string{"Syscall": "SYS_OPENAT", "Fd": "-100"}, Result: "Passed",
			Cwd: "/root/", ExecEvent: &kubearmorpb.ExecEvent{ExecID: "12", ExecutableName: "cat"}, Owner: &kubearmorpb.Podowner{Name: "o"},
		}, `{"Timestamp":1717259989,"UpdatedTime":"2024-06-01T16:39:49.360067Z","HostName":"h","Owner":{"Name":"o"},"ProcessName":"/usr/bin/cat","HostPPID":1,"HostPID":7,"PPID":0,"PID":7,"UID":1000,"Type":"HostLog","Source":"/usr/bin/cat /etc/hostname","Operation":"File","Resource":"/etc/hostname","Data":"syscall=SYS_OPENAT fd=-100 flags=O_RDONLY","EventData":{"Fd":"-100","Syscall":"SYS_OPENAT"},"Result":"Passed","Cwd":"/root/","ExecEvent":{"ExecID":"12","ExecutableName":"cat"}}`},
		{"throttle notice", &kubearmorpb.Alert{Type: "SystemEvent", Operation: "AlertThreshold", Enforcer: "BPFLSM", Result: "Passed", MaxAlertsPerSec: 2, DroppingAlertsInterval: 30},
			`{"PPID":0,"UID":0,"Type":"SystemEvent","Operation":"AlertThreshold","Enforcer":"BPFLSM","Result":"Passed","MaxAlertsPerSec":2,"DroppingAlertsInterval":30}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			j := NewJSONLines(&b)
			var err error
			switch v := tc.v.(type) {
			case *kubearmorpb.Alert:
				err = j.WriteAlert(v)
			case *kubearmorpb.Log:
				err = j.WriteLog(v)
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Len() != 0 {
				t.Error("wrote before Flush")
			}
			if err := j.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tc.want+"\n" {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestJSONLinesReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.json")
	j, err := OpenJSONLines(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.WriteAlert(&kubearmorpb.Alert{PolicyName: "first"})
	j.Flush()
	// logrotate: move the file away, then signal.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	j.WriteAlert(&kubearmorpb.Alert{PolicyName: "buffered"}) // written before the reopen: belongs to the old file
	if err := j.Reopen(); err != nil {
		t.Fatal(err)
	}
	j.WriteAlert(&kubearmorpb.Alert{PolicyName: "second"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if got := policies(t, old); got != "first,buffered" {
		t.Errorf("rotated file holds %s", got)
	}
	if got := policies(t, cur); got != "second" {
		t.Errorf("new file holds %s", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
}

func policies(t *testing.T, data []byte) string {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var a kubearmorpb.Alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		names = append(names, a.PolicyName)
	}
	return strings.Join(names, ",")
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) kubearmor (\d+) (\S+) - (.*)$`)

func TestSyslogUDPAndUnix(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sock := filepath.Join(t.TempDir(), "log")
	ux, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	for addr, conn := range map[string]net.PacketConn{"udp://" + udp.LocalAddr().String(): udp, "unix://" + sock: ux} {
		s, err := NewSyslog(SyslogOptions{Address: addr, Logs: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteAlert(karmorAlert); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteLog(&kubearmorpb.Log{Type: "HostLog", HostName: "vm1", UpdatedTime: "2026-11-23T18:21:32.5Z"}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		for i, want := range []struct{ pri, msgid, body string }{
			{"132", "MatchedHostPolicy", karmorLine}, // local0*8 + warning (Block)
			{"134", "HostLog", `{"UpdatedTime":"2026-11-23T18:21:32.5Z","HostName":"vm1","PPID":0,"UID":0,"Type":"HostLog"}`}, // local0*8 + info
		} {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			m := rfc5424.FindStringSubmatch(string(buf[:n]))
			if m == nil {
				t.Fatalf("%s message %d not RFC 5424: %q", addr, i, buf[:n])
			}
			if m[1] != want.pri || m[3] != "vm1" || m[5] != want.msgid || m[4] != strconv.Itoa(os.Getpid()) {
				t.Errorf("%s message %d header: %q", addr, i, m[0][:80])
			}
			if m[6] != want.body {
				t.Errorf("%s message %d body:\n%s\nwant\n%s", addr, i, m[6], want.body)
			}
		}
		if m := rfc5424.FindStringSubmatch(string(s.Message(5, "", "", 1795458092, "", nil))); m == nil || m[2] != "2026-11-23T18:21:32.000000Z" || m[5] != "-" {
			t.Errorf("fallbacks: %v", m)
		}
		s.Close()
	}
}

func TestSyslogTCPFramingAndReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := NewSyslog(SyslogOptions{Address: "tcp://" + ln.Addr().String(), Format: FormatCEF, Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readFrame := func(r *bufio.Reader) string {
		lenText, err := r.ReadString(' ')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(lenText))
		if err != nil {
			t.Fatalf("frame length %q", lenText)
		}
		buf := make([]byte, n)
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		return string(buf)
	}
	if err := s.WriteAlert(karmorAlert); err != nil {
		t.Fatal(err)
	}
	c1, _ := ln.Accept()
	msg := readFrame(bufio.NewReader(c1))
	if !strings.Contains(msg, " - CEF:0|KubeArmor|kubearmor-host|1.0|MatchedHostPolicy:Process|blocked sleep|5|") {
		t.Errorf("CEF over TCP: %q", msg)
	}
	// The server drops the connection; the exporter reconnects.
	c1.Close()
	var c2 net.Conn
	for c2 == nil {
		if err := s.WriteAlert(karmorAlert); err != nil {
			t.Fatal(err)
		}
		ln.(*net.TCPListener).SetDeadline(timeNowPlus())
		c2, _ = ln.Accept()
	}
	defer c2.Close()
	if msg := readFrame(bufio.NewReader(c2)); !strings.Contains(msg, "CEF:0|") {
		t.Errorf("after reconnect: %q", msg)
	}
}

func TestSyslogOptions(t *testing.T) {
	for _, bad := range []SyslogOptions{
		{Address: "syslog.example.com:514"}, {Address: "udp://host"}, {Address: "http://x:1"}, {Address: "unix://"},
		{Address: "udp://h:514", Format: "xml"}, {Address: "udp://h:514", Facility: 24},
	} {
		if _, err := NewSyslog(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestCEF(t *testing.T) {
	got := CEFAlert(karmorAlert, "1.0")
	want := `CEF:0|KubeArmor|kubearmor-host|1.0|MatchedHostPolicy:Process|blocked sleep|5|rt=1795458092591 dvchost=vm1 cat=MatchedHostPolicy act=Block outcome=Permission denied spid=1000 sproc=/usr/bin/sleep suid=0 msg=lsm\=SECURITY_BPRM_CHECK cs1=hsp-block-sleep cs1Label=policyName cs2=Process cs2Label=operation cs3=/usr/bin/sleep 1 cs3Label=resource cs4=/usr/bin/bash cs4Label=source cs5=BPFLSM cs5Label=enforcer`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	tricky := &kubearmorpb.Alert{Type: "MatchedHostPolicy", Operation: "File", Action: "Audit", Resource: `/tmp/a|b=c\d` + "\nx", Message: `pipe|back\slash`, Timestamp: 5}
	got = CEFAlert(tricky, "v|1")
	want = `CEF:0|KubeArmor|kubearmor-host|v\|1|MatchedHostPolicy:File|pipe\|back\\slash|3|rt=5000 cat=MatchedHostPolicy act=Audit suid=0 filePath=/tmp/a|b\=c\\d\nx cs2=File cs2Label=operation cs3=/tmp/a|b\=c\\d\nx cs3Label=resource`
	if got != want {
		t.Errorf("escaping:\ngot  %s\nwant %s", got, want)
	}
	log := CEFLog(&kubearmorpb.Log{Type: "HostLog", Operation: "Network", Resource: "domain=AF_INET", HostPID: 3, Timestamp: 1}, "")
	if log != `CEF:0|KubeArmor|kubearmor-host||HostLog:Network|Network domain=AF_INET|1|rt=1000 cat=HostLog spid=3 suid=0 cs2=Network cs2Label=operation cs3=domain\=AF_INET cs3Label=resource` {
		t.Errorf("log: %s", log)
	}
}

// timeNowPlus bounds one Accept so the reconnect loop re-sends rather than
// waiting forever; the outcome does not depend on it.
func timeNowPlus() time.Time { return time.Now().Add(100 * time.Millisecond) }
