// Command etcdwatch measures the etcd policy source at fleet scale: one
// etcd on this machine and N watchers in this process, each the project's
// own code as an agent runs it (an etcd client of its own, the
// policysource/etcd Source, a policystore.Store compiling what it hands
// over, and the on-disk cache). It times a put to the moment every watcher
// has published the new compiled rule set, first for one policy changed at
// a time, then for many changed at once, and reports etcd's and the
// watchers' CPU and memory. Budgets are printed beside the figures, never
// enforced: the exit status says only whether every watcher converged.
//
//	go run ./bench/etcdwatch -watchers 1000
//
// It needs /usr/bin/etcd (Debian's etcd-server) and enough descriptors for
// two sockets per watcher (Go raises the soft limit to the hard one).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

func main() {
	o := options{}
	flag.StringVar(&o.etcdBin, "etcd", "/usr/bin/etcd", "the etcd server to run")
	flag.IntVar(&o.watchers, "watchers", 1000, "watchers (simulated hosts), one etcd client each")
	flag.IntVar(&o.rounds, "rounds", 20, "rounds of one policy changed")
	flag.IntVar(&o.burst, "burst", 100, "policies changed at once in a burst round (0: none)")
	flag.IntVar(&o.burstRounds, "burst-rounds", 5, "burst rounds")
	flag.BoolVar(&o.burstTxn, "burst-txn", true, "a burst is one etcd transaction (one revision); false: separate puts issued at once")
	flag.BoolVar(&o.proxy, "proxy", false, "the watchers reach etcd through etcd's gRPC proxy (etcd grpc-proxy start)")
	flag.BoolVar(&o.cache, "cache", true, "each watcher rewrites its on-disk cache after a change, as the agent does")
	flag.DurationVar(&o.gap, "gap", 200*time.Millisecond, "idle time between rounds")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "idle period measured after every watcher has started")
	flag.Parse()
	dir, err := os.MkdirTemp("", "etcdwatch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdwatch:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	o.dir, o.out = dir, os.Stdout
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdwatch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	r.printTail(os.Stdout)
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func (r *report) printHead(w io.Writer) {
	o := r.opts
	via := ""
	if o.proxy {
		via = " through one etcd grpc-proxy"
	}
	fmt.Fprintf(w, "etcd policy source at scale: %d watchers (one client, Source and Store each; cache %v) against one etcd (%s)%s, %d CPUs, GOMAXPROCS %d\n",
		o.watchers, o.cache, o.etcdBin, via, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "start: all %d watchers read the prefix and compiled in %s\n", o.watchers, r.startWall.Round(time.Millisecond))
}

func (p *phase) print(w io.Writer, o options) {
	if p.name == "idle" {
		fmt.Fprintf(w, "idle %s: etcd CPU %s (%.1f%% of one core), watchers CPU %s (%.1f%%); RSS etcd %s, watchers %s; load %s -> %s\n",
			p.wall, p.idleEtcdCPU, pct(p.idleEtcdCPU, p.wall), p.idleWatchCPU, pct(p.idleWatchCPU, p.wall),
			mib(p.etcdRSS), mib(p.watchRSS), p.loadBefore, p.loadAfter)
		p.printProxy(w, o, p.wall)
		return
	}
	worst := append([]time.Duration(nil), p.worst...)
	fmt.Fprintf(w, "%s, %d rounds: put -> watcher has the new rule set: p50 %s, p99 %s, max %s (budget p99 <= 1 s); last watcher per round: p50 %s, max %s\n",
		p.name, p.rounds, ms(quantile(p.lat, 0.5)), ms(quantile(p.lat, 0.99)), ms(quantile(p.lat, 1)), ms(quantile(worst, 0.5)), ms(quantile(worst, 1)))
	fmt.Fprintf(w, "  CPU per round: etcd %s, watchers %s (%.2f ms per watcher); over %s: etcd %.0f%%, watchers %.0f%% of one core; RSS etcd %s, watchers %s; load %s -> %s\n",
		ms(p.etcdCPU/time.Duration(p.rounds)), ms(p.watchCPU/time.Duration(p.rounds)),
		float64(p.watchCPU)/float64(p.rounds)/float64(o.watchers)/1e6,
		p.wall.Round(time.Millisecond), pct(p.etcdCPU, p.wall), pct(p.watchCPU, p.wall),
		mib(p.etcdRSS), mib(p.watchRSS), p.loadBefore, p.loadAfter)
	p.printProxy(w, o, p.wall)
}

func (p *phase) printProxy(w io.Writer, o options, over time.Duration) {
	if !o.proxy {
		return
	}
	per := ""
	if p.rounds > 0 {
		per = fmt.Sprintf(" (%s per round)", ms(p.proxyCPU/time.Duration(p.rounds)))
	}
	fmt.Fprintf(w, "  grpc-proxy: CPU %s%s, %.0f%% of one core; RSS %s\n", p.proxyCPU, per, pct(p.proxyCPU, over), mib(p.proxyRSS))
}

func (r *report) printTail(w io.Writer) {
	o := r.opts
	if o.proxy {
		fmt.Fprintf(w, "peak RSS of the grpc-proxy: %s\n", mib(r.proxyHWM))
	}
	fmt.Fprintf(w, "peak RSS: etcd %s, watchers %s (%s per watcher; Go heap in use %s)\n",
		mib(r.etcdHWM), mib(r.watchHWM), fmt.Sprintf("%.0f KiB", float64(r.watchHWM)/float64(o.watchers)/1024), mib(int64(r.heap)))
}

func pct(d, over time.Duration) float64 {
	if over <= 0 {
		return 0
	}
	return 100 * float64(d) / float64(over)
}
