package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/policysource/etcd/etcdtest"
)

// The benchmark at a small size, as part of the suite: every watcher gets
// every change (one policy, a burst in one transaction or as separate
// puts), with and without the cache. Nothing here depends on how long it
// took.
func TestRunSmall(t *testing.T) {
	bin := etcdtest.Binary(t)
	for _, tc := range []struct {
		name       string
		txn, cache bool
	}{
		{"txn, cache", true, true},
		{"separate puts, no cache", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			o := options{etcdBin: bin, watchers: 5, rounds: 3, burst: 4, burstRounds: 2, burstTxn: tc.txn, cache: tc.cache,
				gap: time.Millisecond, idle: time.Millisecond, dir: t.TempDir(), out: &out}
			r, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.phases) != 3 {
				t.Fatalf("phases: %d\n%s", len(r.phases), out.String())
			}
			for _, p := range r.phases[1:] {
				if len(p.lat) != p.rounds*o.watchers || len(p.worst) != p.rounds {
					t.Errorf("%s: %d latencies, %d rounds", p.name, len(p.lat), len(p.worst))
				}
				for i, l := range p.lat {
					if l <= 0 {
						t.Errorf("%s: latency %d is %v", p.name, i, l)
					}
				}
			}
			r.printTail(&out)
			for _, want := range []string{"5 watchers", "1 policy changed, 3 rounds", "4 policies changed at once", "peak RSS"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(3, 1, 2), 0.5, 2 * time.Millisecond},
		{ms(5), 0.99, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.5, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 1, 4 * time.Millisecond},
	} {
		if got := quantile(tc.in, tc.q); got != tc.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
		}
	}
}
