package apparmor

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestStampOf(t *testing.T) {
	for _, tc := range []struct {
		line   string
		serial uint64
		ok     bool
	}{
		{`audit: type=1400 audit(1733333333.123:456): apparmor="DENIED" operation="exec"`, 456, true},
		{`audit(1733333333.005:7): apparmor="DENIED"`, 7, true},
		{`kauditd_printk_skb: 3 callbacks suppressed`, 0, false},
		{`audit(x.1:2)`, 0, false},
	} {
		tm, serial, ok := stampOf(tc.line)
		if ok != tc.ok || serial != tc.serial {
			t.Errorf("stampOf(%q) = %d, %v; want %d, %v", tc.line, serial, ok, tc.serial, tc.ok)
		}
		if ok && tm.UnixMilli() != 1733333333000+int64(map[uint64]int64{456: 123, 7: 5}[serial]) {
			t.Errorf("stampOf(%q): time %v", tc.line, tm)
		}
	}
}

// The gap is what lies after the previous agent's last serial and before
// this agent's start; the rate limit's counts go with the record the kernel
// printed them before.
func TestKernelLogGap(t *testing.T) {
	rec := func(sec int, serial int) string {
		return "audit(" + strconv.Itoa(sec) + ".000:" + strconv.Itoa(serial) + `): apparmor="DENIED" operation="open"`
	}
	kl := &kernelLog{
		records:          []string{rec(100, 10), rec(101, 11), rec(102, 12), rec(105, 13)},
		suppressedBefore: []int{4, 0, 7, 2, 0},
	}
	start := time.Unix(104, 0)
	for _, tc := range []struct {
		after          uint64
		lines, dropped int
	}{
		{after: 10, lines: 2, dropped: 7}, // 11 and 12; 13 came after the start
		{after: 0, lines: 3, dropped: 11}, // everything before the start
		{after: 12, lines: 0, dropped: 0}, // nothing new
		{after: 99, lines: 0, dropped: 0}, // past every record: nothing
	} {
		lines, dropped := kl.gap(tc.after, start)
		if len(lines) != tc.lines || dropped != tc.dropped {
			t.Errorf("gap(after %d) = %d lines, %d suppressed; want %d, %d", tc.after, len(lines), dropped, tc.lines, tc.dropped)
		}
	}
}

func TestFromKernel(t *testing.T) {
	for prefix, want := range map[string]bool{
		"5,1234,99999,-": true,  // kern.notice: kauditd's print
		"4,1,2,c":        true,  // kern.warning
		"13,77,100,-":    false, // user.notice: written to /dev/kmsg
		"x,1,2,-":        false,
	} {
		if got := fromKernel(prefix); got != want {
			t.Errorf("fromKernel(%q) = %v, want %v", prefix, got, want)
		}
	}
}

// Unpin leaves nothing of ours in the profile directory, even when Run's
// goroutine saves the audit serial after it (the agent unpins before its
// parts have all returned): 30-apparmor-enforce on 6.12 found the serial
// file written back after the stop.
func TestNoSerialAfterUnpin(t *testing.T) {
	dir := t.TempDir()
	e := &Enforcer{opts: Options{Dir: dir, Log: slog.New(slog.DiscardHandler)}, loaded: map[string]string{}}
	e.saveSerial(7)
	if _, err := os.Stat(filepath.Join(dir, serialFile)); err != nil {
		t.Fatalf("the serial is saved while the profiles are ours: %v", err)
	}
	if err := e.Unpin(); err != nil {
		t.Fatal(err)
	}
	e.saveSerial(8)
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("after Unpin the directory holds %v", left)
	}
}
