package throttle

import (
	"fmt"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func alert(policy string) *kubearmorpb.Alert {
	return &kubearmorpb.Alert{PolicyName: policy, Type: "MatchedHostPolicy", Operation: "File", Enforcer: "eBPF Monitor", Action: "Audit", Result: "Passed", Resource: "/etc/shadow"}
}

// outcome of one Admit: "pass", "notice" or "drop".
func admit(th *Throttle, a *kubearmorpb.Alert) string {
	out, ok := th.Admit(a)
	switch {
	case !ok:
		return "drop"
	case out == a:
		return "pass"
	case out.Type == TypeSystemEvent:
		return "notice"
	}
	return "changed"
}

func TestThrottleWindow(t *testing.T) {
	type step struct {
		advance time.Duration
		policy  string
		want    string
	}
	cfg := Config{Enabled: true, MaxPerSec: 2, Sec: 30}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"under the limit", cfg, []step{{0, "p", "pass"}, {0, "p", "pass"}, {time.Second, "p", "pass"}, {0, "p", "pass"}}},
		{"third in a second becomes the notice, then drops", cfg, []step{
			{0, "p", "pass"}, {0, "p", "pass"}, {0, "p", "notice"}, {0, "p", "drop"},
			{29 * time.Second, "p", "drop"},
			{time.Second, "p", "pass"}, // 30 s after the window start: a new window
			{0, "p", "pass"}, {0, "p", "notice"},
		}},
		{"window resets after a second", cfg, []step{
			{0, "p", "pass"}, {999 * time.Millisecond, "p", "pass"}, {time.Millisecond, "p", "pass"}, {0, "p", "pass"}, {0, "p", "notice"},
		}},
		{"posture noise does not starve a policy", cfg, []step{
			{0, "DefaultPosture", "pass"}, {0, "DefaultPosture", "pass"}, {0, "DefaultPosture", "notice"},
			{0, "DefaultPosture", "drop"}, {0, "block-shadow", "pass"}, {0, "DefaultPosture", "drop"}, {0, "block-shadow", "pass"},
		}},
		{"disabled", Config{Enabled: false, MaxPerSec: 1, Sec: 30}, []step{{0, "p", "pass"}, {0, "p", "pass"}, {0, "p", "pass"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1700000000, 0)}
			th := New(tc.cfg, c.now)
			for i, s := range tc.steps {
				c.advance(s.advance)
				if got := admit(th, alert(s.policy)); got != s.want {
					t.Fatalf("step %d (%s): %s, want %s", i, s.policy, got, s.want)
				}
			}
		})
	}
}

func TestNoticeFields(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	th := New(Config{Enabled: true, MaxPerSec: 1, Sec: 7}, c.now)
	th.Admit(alert("p"))
	in := alert("p")
	out, ok := th.Admit(in)
	if !ok || out == in {
		t.Fatalf("second alert: %v %v", out, ok)
	}
	if out.Type != "SystemEvent" || out.Operation != "AlertThreshold" || out.MaxAlertsPerSec != 1 || out.DroppingAlertsInterval != 7 {
		t.Errorf("notice = %v", out)
	}
	if out.PolicyName != "p" || out.Resource != "/etc/shadow" || out.Result != "Passed" {
		t.Errorf("notice lost the alert's other fields: %v", out)
	}
	if in.Type != "MatchedHostPolicy" || in.Operation != "File" {
		t.Errorf("Admit modified its input: %v", in)
	}
	// A notice passed back in is never throttled.
	if got, ok := th.Admit(out); !ok || got != out {
		t.Error("a SystemEvent was throttled")
	}
}

func TestStats(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	th := New(Config{Enabled: true, MaxPerSec: 3, Sec: 10}, c.now)
	for i := range 10 {
		th.Admit(alert("a"))
		if i < 5 {
			th.Admit(alert("b"))
		}
	}
	th.Admit(alert("c"))
	st := th.Stats()
	// a: 3 pass, 7 throttled (1 notice + 6 drops); b: 3 pass, 2 throttled.
	if st.Throttled != 9 || st.ByPolicy["a"] != 7 || st.ByPolicy["b"] != 2 || len(st.ByPolicy) != 2 {
		t.Errorf("stats = %+v", st)
	}
	if fmt.Sprint(st.Active) != "[a b]" {
		t.Errorf("active = %v", st.Active)
	}
	c.advance(10 * time.Second)
	if st := th.Stats(); len(st.Active) != 0 {
		t.Errorf("active after the throttle period = %v", st.Active)
	}
	th.SetConfig(Config{Enabled: true, MaxPerSec: 100, Sec: 10})
	for range 50 {
		if _, ok := th.Admit(alert("a")); !ok {
			t.Fatal("dropped under the new, higher limit")
		}
	}
}
