package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNopELFRunsAndExitsZero(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "nop")
	if err := os.WriteFile(bin, nopELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := execOnce(bin); err != nil {
		t.Skipf("cannot exec from the temp dir here: %v", err)
	}
	for range 3 {
		if err := execOnce(bin); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConnectLoop(t *testing.T) {
	l, closeLn, err := connectLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer closeLn()
	// More iterations than the listen backlog: each accept must drain its connection.
	if err := l.run(500); err != nil {
		t.Fatal(err)
	}
	d, err := chunk(l, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Errorf("per-op time %v", d)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3}, 3},
		{[]time.Duration{5, 1, 3}, 3},
		{[]time.Duration{4, 1, 3, 2}, 2}, // (2+3)/2 in integer nanoseconds
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestOverhead(t *testing.T) {
	if got := overhead(100, 103); got < 2.99 || got > 3.01 {
		t.Errorf("overhead(100, 103) = %v, want 3", got)
	}
}

func TestPairedOverhead(t *testing.T) {
	mk := func(ds ...time.Duration) []sample {
		var ss []sample
		for _, d := range ds {
			ss = append(ss, sample{perOp: d})
		}
		return ss
	}
	// Two rounds of two chunks: the host got 3x slower in round 2, the
	// configuration costs +10% in both; pooling would blur that, pairing not.
	base := mk(100, 100, 300, 300)
	other := mk(110, 110, 330, 330)
	med, lo, hi := pairedOverhead(base, other, 2, wallTime)
	for _, v := range []float64{med, lo, hi} {
		if v < 9.99 || v > 10.01 {
			t.Errorf("pairedOverhead = %v [%v..%v], want 10 throughout", med, lo, hi)
		}
	}
}

// The syscall loops run: setuid(0) succeeds as root, each call returning.
func TestSyscallLoops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setuid(0) needs root")
	}
	for _, l := range []loop{{"setuid", 64, setuidLoop}, {"getpid", 64, getpidLoop}} {
		if err := l.run(1000); err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		if d, err := chunk(l, 10*time.Millisecond); err != nil || d <= 0 {
			t.Errorf("%s: per-op %v, %v", l.name, d, err)
		}
	}
}
