package fanout

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestStalledSubscriberLosesOnlyItsOwn(t *testing.T) {
	tests := []struct {
		name      string
		depth     int
		published int
		wantDrop  uint64
	}{
		{"fits", 8, 8, 0},
		{"one over", 8, 9, 1},
		{"many over", 10, 1000, 990},
		{"depth one", 1, 5, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topic := NewTopic[int]("test", 0)
			stalled, err := topic.Subscribe("stalled", tc.depth)
			if err != nil {
				t.Fatal(err)
			}
			healthy, err := topic.Subscribe("healthy", tc.published)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.published {
				topic.Publish(i)
			}
			if got := stalled.Stats().Dropped; got != tc.wantDrop {
				t.Errorf("stalled dropped %d, want %d", got, tc.wantDrop)
			}
			if got := healthy.Stats().Dropped; got != 0 {
				t.Errorf("healthy dropped %d, want 0", got)
			}
			if got := topic.Stats().Dropped; got != tc.wantDrop {
				t.Errorf("topic dropped %d, want %d", got, tc.wantDrop)
			}
			ctx := context.Background()
			for i := range tc.published {
				v, d, err := healthy.Next(ctx)
				if err != nil || d != 0 || v != i {
					t.Fatalf("healthy Next = %d, %d, %v; want %d", v, d, err, i)
				}
			}
			// The stalled reader gets what was queued, oldest first, and
			// exactly one report of its losses once it has caught up.
			var got []int
			var notified uint64
			for len(got)+int(notified) < tc.published {
				v, d, err := stalled.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if d > 0 {
					notified += d
					continue
				}
				got = append(got, v)
			}
			if notified != tc.wantDrop {
				t.Errorf("notified %d drops, want %d", notified, tc.wantDrop)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("stalled got %v, want 0..%d in order", got, tc.depth-1)
				}
			}
		})
	}
}

func TestDropNoticeWhenQueueDrained(t *testing.T) {
	topic := NewTopic[int]("test", 0)
	s, _ := topic.Subscribe("s", 2)
	topic.Publish(1)
	topic.Publish(2)
	topic.Publish(3) // dropped
	ctx := context.Background()
	want := []struct {
		v int
		d uint64
	}{{1, 0}, {0, 1}, {2, 0}} // report comes once the queue is at most half full
	for _, w := range want {
		v, d, err := s.Next(ctx)
		if err != nil || v != w.v || d != w.d {
			t.Fatalf("Next = %d, %d, %v; want %d, %d", v, d, err, w.v, w.d)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on empty queue with cancelled ctx: %v", err)
	}
}

func TestReaderThatNeverCatchesUpStillHearsOfDrops(t *testing.T) {
	topic := NewTopic[int]("test", 0)
	s, _ := topic.Subscribe("s", 4)
	ctx := context.Background()
	next := 0
	var notified uint64
	// Keep the queue full: after each read, publish two values.
	for range 4 {
		topic.Publish(next)
		next++
	}
	for range 40 {
		_, d, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		notified += d
		topic.Publish(next)
		next++
		topic.Publish(next)
		next++
	}
	if notified == 0 {
		t.Fatalf("a reader with a permanently full queue was never told of %d drops", s.Stats().Dropped)
	}
}

func TestClosedSubscriberGetsNothing(t *testing.T) {
	topic := NewTopic[int]("test", 0)
	a, _ := topic.Subscribe("a", 4)
	b, _ := topic.Subscribe("b", 4)
	a.Close()
	a.Close() // idempotent
	if d, _ := topic.Publish(1); d != 1 {
		t.Fatalf("delivered to %d subscribers, want 1", d)
	}
	if got := len(a.C()); got != 0 {
		t.Fatalf("closed subscriber queued %d", got)
	}
	if got := len(b.C()); got != 1 {
		t.Fatalf("open subscriber queued %d", got)
	}
	if topic.Len() != 1 {
		t.Fatalf("Len = %d", topic.Len())
	}
}

func TestSubscriberLimit(t *testing.T) {
	topic := NewTopic[int]("test", 2)
	a, _ := topic.Subscribe("a", 1)
	if _, err := topic.Subscribe("b", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe("c", 1); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("third subscriber: %v", err)
	}
	a.Close()
	if _, err := topic.Subscribe("c", 1); err != nil {
		t.Fatalf("after a close: %v", err)
	}
}

// Concurrent publishers, subscribers joining and leaving, and readers: run
// with -race. Every value published while a reader is subscribed is either
// read or reported dropped.
func TestConcurrentAccounting(t *testing.T) {
	topic := NewTopic[int]("test", 0)
	const readers, perPublisher, publishers = 4, 5000, 3
	subs := make([]*Subscription[int], readers)
	for i := range subs {
		subs[i], _ = topic.Subscribe("r", 16+i*100)
	}
	ctx, cancel := context.WithCancel(context.Background())
	counts := make([]uint64, readers)
	var rw sync.WaitGroup
	for i, s := range subs {
		rw.Add(1)
		go func() {
			defer rw.Done()
			for {
				_, d, err := s.Next(ctx)
				if err != nil {
					return
				}
				if d > 0 {
					counts[i] += d
				} else {
					counts[i]++
				}
			}
		}()
	}
	var pw sync.WaitGroup
	for range publishers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := range perPublisher {
				topic.Publish(i)
				if i%500 == 0 { // churn: a subscriber joins and leaves
					x, _ := topic.Subscribe("churn", 1)
					x.Close()
				}
			}
		}()
	}
	pw.Wait()
	// Wait until every reader has accounted for everything: the queues
	// drain and drop notices are delivered because readers keep running.
	for i, s := range subs {
		for {
			st := s.Stats()
			if st.Queued == 0 && s.pending.Load() == 0 && st.Delivered+st.Dropped == publishers*perPublisher {
				break
			}
			runtime.Gosched()
		}
		_ = i
	}
	cancel()
	rw.Wait()
	for i := range subs {
		if counts[i] != publishers*perPublisher {
			t.Errorf("reader %d accounted for %d values, want %d", i, counts[i], publishers*perPublisher)
		}
	}
}

// Reserved slots are kept for privileged subscribers: ordinary ones are
// refused once only the reserve is left, privileged ones are not.
func TestReservedSlots(t *testing.T) {
	tp := NewTopic[int]("t", 4)
	tp.Reserve(1)
	for i := range 3 {
		if _, err := tp.Subscribe("user", 1); err != nil {
			t.Fatalf("ordinary subscriber %d: %v", i, err)
		}
	}
	if _, err := tp.Subscribe("user", 1); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("ordinary subscriber took the reserved slot: %v", err)
	}
	if _, err := tp.SubscribeWith("root", 1, SubscribeOptions{Privileged: true}); err != nil {
		t.Fatalf("privileged subscriber refused: %v", err)
	}
	if _, err := tp.SubscribeWith("root", 1, SubscribeOptions{Privileged: true}); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("the topic's maximum did not hold: %v", err)
	}
}

// Only an evictable subscriber whose queue is full and that has taken
// nothing for longer than the bound is evicted; its drops stay counted and
// its reader learns it from Next.
func TestEvictStalled(t *testing.T) {
	tp := NewTopic[int]("t", 0)
	stalled, _ := tp.SubscribeWith("stalled", 2, SubscribeOptions{Evictable: true})
	reading, _ := tp.SubscribeWith("reading", 2, SubscribeOptions{Evictable: true})
	exporter, _ := tp.Subscribe("exporter", 2)
	for i := range 5 {
		tp.Publish(i)
	}
	reading.Next(context.Background())
	now := time.Now()
	if got := tp.EvictStalled(now, time.Minute); len(got) != 0 {
		t.Fatalf("evicted before the bound: %v", got)
	}
	time.Sleep(20 * time.Millisecond)
	got := tp.EvictStalled(time.Now(), 10*time.Millisecond)
	if len(got) != 1 || got[0].Name != "stalled" || got[0].Dropped != 3 {
		t.Fatalf("evicted %+v, want only the stalled subscriber with its 3 drops", got)
	}
	if _, _, err := stalled.Next(context.Background()); !errors.Is(err, ErrEvicted) {
		t.Fatalf("Next after eviction: %v", err)
	}
	select {
	case <-stalled.Evicted():
	default:
		t.Fatal("Evicted not closed")
	}
	st := tp.Stats()
	if st.Evicted != 1 || st.Dropped != 3*2+3 || len(st.Subscribers) != 2 {
		t.Fatalf("stats after eviction: %+v", st)
	}
	_ = exporter
}

// PublishNowhere counts what Publish would have counted and tells the
// publisher to build the value only while someone subscribes; a subscriber
// receives every value published after it subscribed.
func TestPublishNowhere(t *testing.T) {
	topic := NewTopic[int]("test", 0)
	publish := func(v int) {
		if !topic.PublishNowhere() {
			topic.Publish(v)
		}
	}
	publish(1)
	publish(2)
	if st := topic.Stats(); st.Published != 2 || st.Dropped != 0 {
		t.Fatalf("no subscriber: published %d dropped %d, want 2 0", st.Published, st.Dropped)
	}
	sub, err := topic.Subscribe("s", 4)
	if err != nil {
		t.Fatal(err)
	}
	if topic.PublishNowhere() {
		t.Fatal("PublishNowhere with a subscriber reported true")
	}
	publish(3)
	sub.Close()
	publish(4)
	if st := topic.Stats(); st.Published != 4 {
		t.Errorf("published %d, want 4", st.Published)
	}
	var got []int
	for len(sub.C()) > 0 {
		got = append(got, <-sub.C())
	}
	if len(got) != 1 || got[0] != 3 {
		t.Errorf("the subscriber got %v, want [3]", got)
	}
}
