package feeder

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// BenchmarkLoopback: 49 karmor-like clients and one that never
// reads, each on its own loopback connection, while alerts are published at
// a paced 100k/s (b.N alerts in total, so the run is bounded by -benchtime).
// Reported per run: what each healthy client received and was told it lost
// (their sum must equal b.N: nothing vanishes silently), the stalled
// client's losses, Publish latency (p50, p99, max: on a loaded machine the
// max is the scheduler's, not a wait inside Publish), and the peak heap.
//
//	go test -run '^$' -bench Loopback -benchtime 2s ./feeder/
//
// The 10k/s and 5-subscriber variants show what a loaded 2-core machine
// delivers in full; the 100k/s one is the overload case.
func BenchmarkLoopback(b *testing.B) {
	for _, c := range []struct{ subscribers, rate int }{{50, 100_000}, {50, 10_000}, {5, 10_000}} {
		b.Run(fmt.Sprintf("subscribers=%d/rate=%d", c.subscribers, c.rate), func(b *testing.B) {
			benchLoopback(b, c.subscribers, c.rate)
		})
	}
}

func benchLoopback(b *testing.B, subscribers, rate int) {
	// Every subscriber is this process's uid: lift the per-user limits.
	srv, err := New(Options{Cluster: "default", Host: "bench", TCP: "127.0.0.1:0", MaxStreamsPerUser: subscribers, MaxConnectionsPerUser: subscribers + 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	target := srv.TCPAddr().String()

	type counts struct{ received, reported atomic.Uint64 }
	healthy := make([]*counts, subscribers-1)
	var readers sync.WaitGroup
	for i := range healthy {
		healthy[i] = &counts{}
		s := karmorLogs(b, ctx, dial(b, target), "policy", false)
		readers.Add(1)
		go func(c *counts) {
			defer readers.Done()
			for {
				a, err := s.alerts.Recv()
				if err != nil {
					return
				}
				if a.Type == TypeSystemEvent {
					n, _ := strconv.ParseUint(a.EventData["Dropped"], 10, 64)
					c.reported.Add(n)
				} else {
					c.received.Add(1)
				}
			}
		}(healthy[i])
	}
	karmorLogs(b, ctx, dial(b, target), "policy", false) // stalled: never reads
	waitUntil(func() bool { return srv.alerts.Len() == subscribers })

	var peakHeap atomic.Uint64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	b.ResetTimer()
	start := time.Now()
	lat := make([]time.Duration, b.N)
	for i := range b.N {
		// Pace to the target rate; catch up in bursts when behind.
		if due := start.Add(time.Duration(i) * time.Second / time.Duration(rate)); time.Until(due) > 200*time.Microsecond {
			time.Sleep(time.Until(due))
		}
		a := sampleAlert("bench")
		a.HostPID = int32(i)
		t0 := time.Now()
		srv.PublishAlert(a)
		lat[i] = time.Since(t0)
	}
	publishing := time.Since(start)
	b.StopTimer()

	// Let the healthy clients drain and hear about their drops. A stalled
	// publisher-side bug would show as a non-zero "missing" figure.
	drainBy := time.Now().Add(30 * time.Second)
	accounted := func() bool {
		for _, c := range healthy {
			if c.received.Load()+c.reported.Load() < uint64(b.N) {
				return false
			}
		}
		return true
	}
	for !accounted() && time.Now().Before(drainBy) {
		time.Sleep(5 * time.Millisecond)
	}
	close(stopSampling)
	<-sampleDone

	var received, reported, missing uint64
	minReceived := uint64(b.N)
	for _, c := range healthy {
		r, d := c.received.Load(), c.reported.Load()
		received += r
		reported += d
		missing += uint64(b.N) - min(uint64(b.N), r+d)
		minReceived = min(minReceived, r)
	}
	var stalledDropped uint64
	for _, s := range srv.FeederStatus().Subscribers {
		if s.Delivered < 5000 && s.Dropped > 0 && s.Dropped+s.Delivered+uint64(s.Queued) >= uint64(b.N)-1000 {
			stalledDropped = max(stalledDropped, s.Dropped)
		}
	}
	n := float64(len(healthy))
	b.ReportMetric(float64(b.N)/publishing.Seconds(), "alerts/s")
	b.ReportMetric(float64(received)/n/float64(b.N)*100, "%delivered/healthy")
	b.ReportMetric(float64(reported)/n, "reported-drops/healthy")
	b.ReportMetric(float64(minReceived), "min-received")
	b.ReportMetric(float64(missing), "unaccounted")
	b.ReportMetric(float64(stalledDropped), "stalled-dropped")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-publish-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-publish-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-publish-µs")
	b.ReportMetric(float64(peakHeap.Load())/(1<<20), "peak-heap-MiB")
	cancel()
	readers.Wait()
}

// BenchmarkPublish50 is the cost of one Publish to 50 in-process
// subscribers whose readers keep up (no gRPC).
func BenchmarkPublish50(b *testing.B) {
	srv, _ := New(Options{Host: "bench"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 50 {
		sub, _ := srv.alerts.Subscribe("bench", DefaultQueueDepth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := sub.Next(ctx); err != nil {
					return
				}
			}
		}()
	}
	a := &kubearmorpb.Alert{ClusterName: "c", HostName: "h", Timestamp: 1, UpdatedTime: "t", PolicyName: "p"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		srv.alerts.Publish(newOutgoing(a))
	}
	b.StopTimer()
	st := srv.alerts.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(b.N)/50*100, "%dropped")
	cancel()
	wg.Wait()
}
