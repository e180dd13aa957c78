package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/policysource/etcd"
	"github.com/armorhost/kubearmor/policystore"
)

const prefix = "/kubearmor/policies/"

type options struct {
	etcdBin     string
	watchers    int
	rounds      int // single-policy puts
	burst       int // policies changed at once
	burstRounds int
	burstTxn    bool          // the burst is one transaction (one revision), not separate puts
	proxy       bool          // the watchers reach etcd through etcd's gRPC proxy
	cache       bool          // each watcher writes its on-disk cache, as the agent does
	gap         time.Duration // idle time between rounds
	idle        time.Duration // idle period measured after start
	dir         string
	out         io.Writer // each phase is printed as it ends
}

// round is one change being waited for: every watcher's rule set must hold
// n rules whose value starts with mark.
type round struct {
	id   int64
	mark string
	n    int
	t0   time.Time
	lat  []time.Duration // per watcher
	done atomic.Int64
	all  chan struct{}
}

// watcher is one host's share of the agent: an etcd client, the policy
// source and a policy store compiling what it hands over.
type watcher struct {
	id   int
	cli  *clientv3.Client
	src  *etcd.Source
	seen int64 // the last round this watcher completed; only its source's goroutine touches it
}

type phase struct {
	name         string
	lat          []time.Duration // every watcher of every round
	worst        []time.Duration // per round: the last watcher
	etcdCPU      time.Duration
	watchCPU     time.Duration
	wall         time.Duration
	rounds       int
	etcdRSS      int64
	watchRSS     int64
	loadBefore   string
	loadAfter    string
	idleEtcdCPU  time.Duration
	idleWatchCPU time.Duration
	proxyCPU     time.Duration
	proxyRSS     int64
}

type report struct {
	opts      options
	etcd      string
	startWall time.Duration
	phases    []*phase
	etcdHWM   int64
	watchHWM  int64
	heap      uint64
	proxyHWM  int64
}

type bench struct {
	o    options
	cur  atomic.Pointer[round]
	ws   []*watcher
	put  *clientv3.Client
	etcd *etcdProc
	prox *etcdProc // nil: watchers dial etcd
	wurl string    // what the watchers dial
}

// run starts etcd and the watchers, then measures; it returns an error if
// a watcher never gets a change (a hang guard of 60 s per round), never
// on how long they took.
func run(o options) (*report, error) {
	b := &bench{o: o}
	var err error
	if b.etcd, err = startEtcd(o.etcdBin, o.dir); err != nil {
		return nil, err
	}
	defer b.etcd.stop()
	b.wurl = b.etcd.url
	if o.proxy {
		if b.prox, err = startProxy(o.etcdBin, b.etcd.url, o.dir); err != nil {
			return nil, err
		}
		defer b.prox.stop()
		b.wurl = b.prox.url
	}
	if b.put, err = dial(b.etcd.url); err != nil {
		return nil, err
	}
	defer b.put.Close()
	r := &report{opts: o, etcd: b.etcd.url}

	// A policy in place before the watchers start: each reads it first.
	if err := b.putDoc(context.Background(), "base", "/bench/base"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for _, w := range b.ws {
			w.cli.Close()
		}
	}()
	start := time.Now()
	first := b.begin(0, "/bench/base", 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range o.watchers {
		w, err := b.newWatcher(i, log)
		if err != nil {
			return nil, err
		}
		b.ws = append(b.ws, w)
		wg.Add(1)
		go func() { defer wg.Done(); w.src.Run(ctx) }()
	}
	if err := b.wait(first); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	r.startWall = time.Since(start)
	r.printHead(o.out)

	idle := &phase{name: "idle", loadBefore: loadavg()}
	e0, w0, p0 := b.usage()
	time.Sleep(o.idle)
	e1, w1, p1 := b.usage()
	idle.idleEtcdCPU, idle.idleWatchCPU, idle.wall = e1.cpu-e0.cpu, w1.cpu-w0.cpu, o.idle
	idle.etcdRSS, idle.watchRSS, idle.loadAfter = e1.rss, w1.rss, loadavg()
	idle.proxyCPU, idle.proxyRSS = p1.cpu-p0.cpu, p1.rss
	r.phases = append(r.phases, idle)
	idle.print(o.out, o)

	id := int64(1)
	single := &phase{name: "1 policy changed"}
	if err := b.measure(single, o.rounds, func(k int) error {
		rd := b.begin(id, fmt.Sprintf("/bench/one/%d/", k), 1)
		id++
		if err := b.putDoc(ctx, "one", rd.mark+"x"); err != nil {
			return err
		}
		return b.collect(single, rd)
	}); err != nil {
		return nil, err
	}
	r.phases = append(r.phases, single)
	single.print(o.out, o)

	if o.burst > 0 && o.burstRounds > 0 {
		how := "separate puts issued together"
		if o.burstTxn {
			how = "one transaction"
		}
		burst := &phase{name: fmt.Sprintf("%d policies changed at once (%s)", o.burst, how)}
		if err := b.measure(burst, o.burstRounds, func(k int) error {
			rd := b.begin(id, fmt.Sprintf("/bench/burst/%d/", k), o.burst)
			id++
			if o.burstTxn {
				if err := b.putTxn(ctx, rd.mark, o.burst); err != nil {
					return err
				}
				return b.collect(burst, rd)
			}
			errs := make(chan error, o.burst)
			for j := range o.burst {
				go func() { errs <- b.putDoc(ctx, fmt.Sprintf("burst-%03d", j), fmt.Sprintf("%s%03d", rd.mark, j)) }()
			}
			for range o.burst {
				if err := <-errs; err != nil {
					return err
				}
			}
			return b.collect(burst, rd)
		}); err != nil {
			return nil, err
		}
		r.phases = append(r.phases, burst)
		burst.print(o.out, o)
	}
	e, w, px := b.usage()
	r.etcdHWM, r.watchHWM, r.proxyHWM = e.hwm, w.hwm, px.hwm
	r.heap = heapInuse()
	return r, nil
}

func (b *bench) newWatcher(i int, log *slog.Logger) (*watcher, error) {
	w := &watcher{id: i, seen: -1}
	dir := filepath.Join(b.o.dir, fmt.Sprintf("w%04d", i))
	store, err := policystore.Open(filepath.Join(dir, "policies"), hostpolicy.Options{Host: fmt.Sprintf("bench-%04d", i)}, log, func(s policystore.Snapshot) { b.published(w, s) })
	if err != nil {
		return nil, err
	}
	if w.cli, err = dial(b.wurl); err != nil {
		return nil, err
	}
	cache := ""
	if b.o.cache {
		cache = filepath.Join(dir, "etcd-cache.json")
	}
	w.src = etcd.Open(w.cli, prefix, cache, store, log)
	return w, nil
}

// published is each store's publish callback: the moment a watcher has the
// new compiled rule set.
func (b *bench) published(w *watcher, s policystore.Snapshot) {
	now := time.Now()
	rd := b.cur.Load()
	if rd == nil || w.seen == rd.id || s.RuleSet == nil {
		return
	}
	n := 0
	for _, r := range s.RuleSet.Rules {
		if strings.HasPrefix(r.Value, rd.mark) {
			n++
		}
	}
	if n < rd.n {
		return
	}
	w.seen = rd.id
	rd.lat[w.id] = now.Sub(rd.t0)
	if rd.done.Add(1) == int64(b.o.watchers) {
		close(rd.all)
	}
}

func (b *bench) begin(id int64, mark string, n int) *round {
	rd := &round{id: id, mark: mark, n: n, lat: make([]time.Duration, b.o.watchers), all: make(chan struct{}), t0: time.Now()}
	b.cur.Store(rd)
	return rd
}

func (b *bench) wait(rd *round) error {
	select {
	case <-rd.all:
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("%d of %d watchers never had %d rules %s*", int64(b.o.watchers)-rd.done.Load(), b.o.watchers, rd.n, rd.mark)
	}
}

func (b *bench) collect(p *phase, rd *round) error {
	if err := b.wait(rd); err != nil {
		return err
	}
	p.lat = append(p.lat, rd.lat...)
	p.worst = append(p.worst, slicesMax(rd.lat))
	return nil
}

func (b *bench) measure(p *phase, rounds int, one func(k int) error) error {
	p.loadBefore = loadavg()
	e0, w0, p0 := b.usage()
	t0 := time.Now()
	for k := range rounds {
		if err := one(k); err != nil {
			return fmt.Errorf("%s, round %d: %w", p.name, k, err)
		}
		time.Sleep(b.o.gap)
	}
	e1, w1, p1 := b.usage()
	p.proxyCPU, p.proxyRSS = p1.cpu-p0.cpu, p1.rss
	p.wall, p.rounds = time.Since(t0), rounds
	p.etcdCPU, p.watchCPU = e1.cpu-e0.cpu, w1.cpu-w0.cpu
	p.etcdRSS, p.watchRSS, p.loadAfter = e1.rss, w1.rss, loadavg()
	return nil
}

// usage of etcd, of this process (the watchers) and of the proxy (zero
// without one).
func (b *bench) usage() (e, w, p usage) {
	e, _ = procUsage(b.etcd.cmd.Process.Pid)
	w, _ = procUsage(os.Getpid())
	if b.prox != nil {
		p, _ = procUsage(b.prox.cmd.Process.Pid)
	}
	return e, w, p
}

// putDoc writes one policy with one Block rule on path.
func (b *bench) putDoc(ctx context.Context, name, path string) error {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second) // a hang guard
	defer cancel()
	if _, err := b.put.Put(pctx, prefix+name, policyDoc(name, path)); err != nil {
		return fmt.Errorf("put %s: %w", prefix+name, err)
	}
	return nil
}

// putTxn writes n policies burst-000... in one transaction: one revision,
// one watch response.
func (b *bench) putTxn(ctx context.Context, mark string, n int) error {
	ops := make([]clientv3.Op, n)
	for j := range n {
		name := fmt.Sprintf("burst-%03d", j)
		ops[j] = clientv3.OpPut(prefix+name, policyDoc(name, fmt.Sprintf("%s%03d", mark, j)))
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second) // a hang guard
	defer cancel()
	if _, err := b.put.Txn(pctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("transaction of %d puts: %w", n, err)
	}
	return nil
}

func policyDoc(name, path string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: bench-%s
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: %s
  action: Block
`, name, path)
}

func slicesMax(d []time.Duration) time.Duration {
	m := time.Duration(0)
	for _, v := range d {
		m = max(m, v)
	}
	return m
}

// quantile of sorted-in-place d (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
