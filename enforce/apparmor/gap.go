package apparmor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/armorhost/kubearmor/event"
)

// The gap between two agents. Adopted profiles go on refusing while no agent
// runs, and the audit multicast group the agent reads keeps nothing for a
// listener that is not there. Where no audit daemon runs, the kernel also
// prints every audit record to its log (rate limited: printk_ratelimit, 10
// records per 5 s by default; a suppressed run is announced as
// "kauditd_printk_skb: N callbacks suppressed"). So each agent keeps the
// serial of the last AppArmor record it read in Options.Dir (serialFile), and
// the next agent, once it has adopted the profiles, replays the records of
// the kernel log after that serial and before its own start as verdicts, and
// counts what the rate limit suppressed. Where auditd runs, the kernel hands
// the records to it instead: the gap's denials are in its log.

// serialFile holds the serial of the last AppArmor audit record an agent
// read; written at most every serialEvery while records arrive, and at Close.
const (
	serialFile  = ".audit-serial"
	serialEvery = 250 * time.Millisecond
)

// auditStamp is the "audit(SECONDS.MILLIS:SERIAL)" of every audit record.
var auditStamp = regexp.MustCompile(`audit\((\d+)\.(\d+):(\d+)\)`)

// stampOf reads a record's time and serial.
func stampOf(line string) (time.Time, uint64, bool) {
	m := auditStamp.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}, 0, false
	}
	sec, err1 := strconv.ParseInt(m[1], 10, 64)
	ms, err2 := strconv.ParseInt(m[2], 10, 64)
	serial, err3 := strconv.ParseUint(m[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return time.Time{}, 0, false
	}
	return time.Unix(sec, ms*int64(time.Millisecond)), serial, true
}

// kernelLog is what the kernel log holds now: its AppArmor records, the
// rate limit's suppressed counts in order with them, and the highest audit
// serial of any record.
type kernelLog struct {
	records []string // "audit(...): apparmor=..." texts, oldest first
	// suppressedBefore[i] is what the rate limit suppressed just before
	// records[i] (the kernel says so with the next record it prints)
	suppressedBefore []int
	maxSerial        uint64
}

var suppressed = regexp.MustCompile(`kauditd_printk_skb: (\d+) callbacks suppressed`)

// readKernelLog reads /dev/kmsg from its oldest record to its end, without
// blocking.
func readKernelLog() (*kernelLog, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	defer unix.Close(fd)
	kl := &kernelLog{suppressedBefore: []int{0}}
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.EINTR) {
			continue // overwritten while reading: go on with the next
		}
		if errors.Is(err, unix.EAGAIN) || n == 0 {
			return kl, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read /dev/kmsg: %w", err)
		}
		// "PRI,SEQ,TIME,FLAGS;text\n" and continuation lines
		prefix, text, ok := strings.Cut(string(buf[:n]), ";")
		if !ok || !fromKernel(prefix) {
			continue
		}
		text, _, _ = strings.Cut(text, "\n")
		if m := suppressed.FindStringSubmatch(text); m != nil {
			c, _ := strconv.Atoi(m[1])
			kl.suppressedBefore[len(kl.suppressedBefore)-1] += c
			continue
		}
		_, serial, ok := stampOf(text)
		if !ok {
			continue
		}
		kl.maxSerial = max(kl.maxSerial, serial)
		// kauditd's own print of an AVC record, nothing that only quotes one
		if strings.HasPrefix(text, "audit: type=1400 audit(") && strings.Contains(text, "apparmor=") {
			kl.records = append(kl.records, text)
			kl.suppressedBefore = append(kl.suppressedBefore, 0)
		}
	}
}

// fromKernel says whether a /dev/kmsg record's "PRI,SEQ,..." prefix is the
// kernel's own (facility 0): what user space writes there (root only) gets
// LOG_USER or the facility it names, and the kernel refuses it facility 0.
func fromKernel(prefix string) bool {
	pri, _, _ := strings.Cut(prefix, ",")
	n, err := strconv.Atoi(pri)
	return err == nil && n>>3 == 0
}

// gap returns the AppArmor records after the previous agent's last one
// (serial after) and before this agent's start (the live records come from
// the audit socket), and what the rate limit suppressed among them.
func (kl *kernelLog) gap(after uint64, before time.Time) (lines []string, suppressedCount int) {
	for i, r := range kl.records {
		t, serial, _ := stampOf(r)
		if serial <= after || !t.Before(before) {
			continue
		}
		lines = append(lines, r)
		suppressedCount += kl.suppressedBefore[i]
	}
	return lines, suppressedCount
}

// readSerial is the serial the previous agent saved, or false.
func (e *Enforcer) readSerial() (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(e.opts.Dir, serialFile))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// saveSerial records the serial of the last record read, atomically; never
// after Unpin, which must leave nothing of ours behind.
func (e *Enforcer) saveSerial(n uint64) {
	if n == 0 || n == e.savedSerial {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.unpinned {
		return
	}
	tmp := filepath.Join(e.opts.Dir, serialFile+".new")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(n, 10)+"\n"), 0o600); err == nil {
		if os.Rename(tmp, filepath.Join(e.opts.Dir, serialFile)) == nil {
			e.savedSerial = n
		}
	}
}

// replayGap emits the verdicts of the gap before the live ones, once, and
// starts the serial file off at the kernel log's end.
func (e *Enforcer) replayGap(emit func(event.Event)) {
	kl, err := readKernelLog()
	if err != nil {
		e.opts.Log.Warn("apparmor: cannot read the kernel log: the verdicts of the time no agent ran are not reported", "err", err)
		return
	}
	after, known := e.readSerial()
	e.saveSerial(kl.maxSerial)
	e.mu.Lock()
	adopted := e.adopted != nil
	e.mu.Unlock()
	if !adopted {
		return // nothing was loaded, so nothing was refused
	}
	if !known {
		e.opts.Log.Warn("apparmor: the earlier agent left no record of the last audit serial it read: the verdicts of the time no agent ran are not replayed")
		return
	}
	lines, lost := kl.gap(after, e.started)
	n := 0
	for _, l := range lines {
		ev, ok := e.verdict(l)
		if !ok {
			continue
		}
		if t, _, ok := stampOf(l); ok {
			ev.Time = t
		}
		emit(ev)
		n++
	}
	e.mu.Lock()
	e.adopted.replayed, e.adopted.suppressed = n, lost
	e.mu.Unlock()
	e.opts.Log.Info("apparmor: verdicts of the time no agent ran, replayed from the kernel log",
		"replayed", n, "suppressed_by_rate_limit", lost)
}
