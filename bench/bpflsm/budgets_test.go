package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBudgetCheck(t *testing.T) {
	over := map[string]map[string]float64{
		"open":    {"f": -2.8, "b": 2.0, "c": 41.8, "r": 20, "t": 80},
		"connect": {"r": 50, "t": 140},
		"setuid":  {"t": 3.5},
	}
	for _, c := range []struct {
		name   string
		b      budget
		value  float64
		within bool
		ran    bool
	}{
		{"points over a floor, within", budget{"open", "b", "f", 5, false}, 4.8, true, true},
		{"points over a floor, over", budget{"open", "c", "f", 5, false}, 44.6, false, true},
		{"points over no agent", budget{"setuid", "t", "a", 3, false}, 3.5, false, true},
		{"factor of the record floor, at the limit", budget{"open", "t", "r", 1.5, true}, 1.5, true, true},
		{"factor of the record floor, over", budget{"connect", "t", "r", 1.5, true}, 1.6, false, true},
		{"config not run", budget{"getpid", "t", "a", 3, false}, 0, false, false},
		{"base not run", budget{"exec", "b", "f", 3, false}, 0, false, false},
	} {
		v, within, ran := c.b.check(over)
		if ran != c.ran || within != c.within || (ran && (v < c.value-0.01 || v > c.value+0.01)) {
			t.Errorf("%s: check = %.3f, %t, %t; want %.3f, %t, %t", c.name, v, within, ran, c.value, c.within, c.ran)
		}
	}
}

// Every budget names configurations and loops the bench has.
func TestBudgetsNameWhatRuns(t *testing.T) {
	loops := map[string]bool{"exec": true, "open": true, "connect": true, "setuid": true, "getpid": true}
	for _, b := range budgets {
		if !loops[b.loop] || labelOf(b.cfg) == b.cfg || labelOf(b.base) == b.base || b.cfg == b.base {
			t.Errorf("budget %+v names an unknown loop or configuration", b)
		}
	}
}

func TestReportBudgets(t *testing.T) {
	over := map[string]map[string]float64{"open": {"t": 80, "r": 20}}
	for _, c := range []struct {
		idle float64
		want []string
	}{
		{-1, []string{"x1.50", "met", "idle agent CPU: not measured"}},
		{3.2, []string{"3.20 ms/s", "met"}},
		{14, []string{"14.00 ms/s", "NOT MET"}},
	} {
		var out bytes.Buffer
		reportBudgets(&out, over, c.idle)
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("idle %v: report lacks %q:\n%s", c.idle, w, out.String())
			}
		}
		if n := strings.Count(out.String(), "\n"); n != 3 { // header, the one budget that ran, idle
			t.Errorf("idle %v: %d lines, want 3:\n%s", c.idle, n, out.String())
		}
	}
}

func TestMsPerSecond(t *testing.T) {
	for _, c := range []struct {
		cpu, wall time.Duration
		want      float64
	}{
		{120 * time.Millisecond, 30 * time.Second, 4},
		{0, 30 * time.Second, 0},
		{time.Second, 0, 0},
	} {
		if got := msPerSecond(c.cpu, c.wall); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("msPerSecond(%v, %v) = %v, want %v", c.cpu, c.wall, got, c.want)
		}
	}
}

// stageLosses reads what `kubearmor status --json` prints: int64 counters
// are JSON strings, a stage without losses has no "dropped".
func TestStageLosses(t *testing.T) {
	status := []byte(`{"version":"dev","stages":[
{"name":"monitor kernel","received":"200208","passed":"200200","dropped":"8"},
{"name":"monitor reader","received":"200200","passed":"200194","filtered":"6"},
{"name":"pipeline","received":"200194","passed":"200194"},
{"name":"throttle (alerts)"},
{"name":"subscriber logs logPath /dev/null #1","received":"200194","passed":"158779","dropped":"41415","state":"41415 lost to a full queue (reads too slowly)"}]}`)
	got, dropped, where, err := stageLosses(status)
	if err != nil {
		t.Fatal(err)
	}
	if got != 200194 || dropped != 41423 {
		t.Errorf("stageLosses = %d, %d; want 200194, 41423", got, dropped)
	}
	if want := "monitor kernel 8, subscriber logs logPath /dev/null #1 41415"; where != want {
		t.Errorf("where = %q, want %q", where, want)
	}
	if _, _, _, err := stageLosses([]byte("kubearmor status: cannot reach the agent")); err == nil {
		t.Error("not JSON: no error")
	}
}
