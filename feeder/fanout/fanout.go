// Package fanout delivers every published value to every subscriber
// without ever blocking the publisher. Each subscriber has its own bounded
// queue; when that queue is full the value is dropped for that subscriber
// only, the drop is counted, and the subscriber learns how many values it
// lost once it has caught up. A slow reader therefore costs the publisher
// one failed channel send, and never delays anyone else.
package fanout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTooManySubscribers is returned by Subscribe when the topic is full.
var ErrTooManySubscribers = errors.New("too many subscribers")

// ErrEvicted is returned by Next once the subscriber was evicted for
// stalling (EvictStalled).
var ErrEvicted = errors.New("evicted: stalled with a full queue")

// Topic is one stream of values (alerts, logs or messages).
type Topic[T any] struct {
	name      string
	max       int // 0: unlimited
	reserved  int // of max, only for privileged subscribers
	published atomic.Uint64
	dropped   atomic.Uint64
	evicted   atomic.Uint64

	mu     sync.Mutex
	nextID uint64
	subs   atomic.Pointer[[]*Subscription[T]] // copy-on-write: Publish never locks
}

// NewTopic returns a topic that accepts at most maxSubscribers subscribers
// (0 means no limit).
func NewTopic[T any](name string, maxSubscribers int) *Topic[T] {
	t := &Topic[T]{name: name, max: maxSubscribers}
	t.subs.Store(&[]*Subscription[T]{})
	return t
}

// Publish offers v to every subscriber and returns how many took it and how
// many dropped it. It never blocks. Subscribers share v: it must not be
// modified after it is published.
func (t *Topic[T]) Publish(v T) (delivered, dropped int) {
	t.published.Add(1)
	for _, s := range *t.subs.Load() {
		select {
		case s.ch <- v:
			delivered++
		default:
			s.drop()
			dropped++
		}
	}
	if dropped > 0 {
		t.dropped.Add(uint64(dropped))
	}
	return delivered, dropped
}

// PublishNowhere counts a publication and reports true when the topic has
// no subscriber now, as Publish of a value would have counted it and
// delivered it to nobody: the publisher may then skip building a value
// that no one receives. With a subscriber it counts nothing and reports
// false, and the publisher calls Publish. A subscriber that arrives
// between the two sees the values published after it subscribed, as with
// Publish.
func (t *Topic[T]) PublishNowhere() bool {
	if len(*t.subs.Load()) > 0 {
		return false
	}
	t.published.Add(1)
	return true
}

// Reserve keeps n of the topic's subscriber slots for privileged
// subscribers, so that others holding every ordinary slot cannot lock them
// out.
func (t *Topic[T]) Reserve(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reserved = n
}

// SubscribeOptions say how a subscriber is treated.
type SubscribeOptions struct {
	Privileged bool // may take a reserved slot
	Evictable  bool // EvictStalled may remove it
}

// Subscribe adds an ordinary subscriber that is never evicted (an
// exporter) with a queue of depth values. name says who it is (a peer
// address, an exporter) in status output.
func (t *Topic[T]) Subscribe(name string, depth int) (*Subscription[T], error) {
	return t.SubscribeWith(name, depth, SubscribeOptions{})
}

// SubscribeWith adds a subscriber with the given options.
func (t *Topic[T]) SubscribeWith(name string, depth int, o SubscribeOptions) (*Subscription[T], error) {
	if depth < 1 {
		depth = 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	limit := t.max
	if !o.Privileged {
		limit -= t.reserved
	}
	if t.max > 0 && len(old) >= limit {
		return nil, ErrTooManySubscribers
	}
	t.nextID++
	s := &Subscription[T]{
		topic: t,
		id:    t.nextID,
		name:  name,
		since: time.Now(),
		ch:    make(chan T, depth),
		wake:  make(chan struct{}, 1),

		evictable: o.Evictable,
		evicted:   make(chan struct{}),
	}
	s.lastTake.Store(s.since.UnixNano())
	subs := make([]*Subscription[T], len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	t.subs.Store(&subs)
	return s, nil
}

func (t *Topic[T]) remove(s *Subscription[T]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.subs.Load()
	subs := make([]*Subscription[T], 0, len(old))
	for _, o := range old {
		if o != s {
			subs = append(subs, o)
		}
	}
	t.subs.Store(&subs)
}

// EvictStalled removes every evictable subscriber whose queue is full and
// that has taken nothing for longer than bound, and returns them. Their
// Next returns ErrEvicted; their drops stay counted in the topic's Dropped.
func (t *Topic[T]) EvictStalled(now time.Time, bound time.Duration) []SubscriberStats {
	var out []SubscriberStats
	for _, s := range *t.subs.Load() {
		if !s.evictable || len(s.ch) < cap(s.ch) || now.Sub(time.Unix(0, s.lastTake.Load())) <= bound {
			continue
		}
		s.evictOnce.Do(func() {
			close(s.evicted)
			t.evicted.Add(1)
			t.remove(s)
			out = append(out, s.Stats())
		})
	}
	return out
}

// HasEvictable reports whether any current subscriber may be evicted: the
// stall watch needs a clock only while one exists.
func (t *Topic[T]) HasEvictable() bool {
	for _, s := range *t.subs.Load() {
		if s.evictable {
			return true
		}
	}
	return false
}

// Stats is a snapshot of a topic's counters.
type Stats struct {
	Name        string
	Published   uint64 // values offered to subscribers
	Dropped     uint64 // subscriber deliveries lost to full queues, over all subscribers ever
	Evicted     uint64 // subscribers removed by EvictStalled
	Subscribers []SubscriberStats
}

// SubscriberStats is a snapshot of one subscriber.
type SubscriberStats struct {
	ID        uint64
	Name      string
	Since     time.Time
	Delivered uint64 // values taken from the queue by the reader
	Dropped   uint64 // values lost because the queue was full
	Queued    int
	Capacity  int
}

// Stats returns the topic's counters and its current subscribers.
func (t *Topic[T]) Stats() Stats {
	st := Stats{Name: t.name, Published: t.published.Load(), Dropped: t.dropped.Load(), Evicted: t.evicted.Load()}
	for _, s := range *t.subs.Load() {
		st.Subscribers = append(st.Subscribers, s.Stats())
	}
	return st
}

// Len is the number of current subscribers.
func (t *Topic[T]) Len() int { return len(*t.subs.Load()) }

// Subscription is one subscriber's queue.
type Subscription[T any] struct {
	topic *Topic[T]
	id    uint64
	name  string
	since time.Time
	ch    chan T
	wake  chan struct{} // signalled after a drop, so a notice is never stranded

	delivered atomic.Uint64
	dropped   atomic.Uint64 // total, for stats
	pending   atomic.Uint64 // dropped but not yet reported to the reader
	lastTake  atomic.Int64  // unix nanoseconds of the reader's last take (or of Subscribe)

	evictable bool
	evicted   chan struct{} // closed by EvictStalled
	evictOnce sync.Once

	// reader-side only
	sinceNotice int
	closeOnce   sync.Once
}

func (s *Subscription[T]) drop() {
	s.dropped.Add(1)
	s.pending.Add(1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Next returns the next queued value, or, when values were dropped, how
// many (with the zero T). Drops are reported once the reader has caught
// up: when its queue is at most half full, or after it has read a whole
// queue's worth since the last report, so that a reader that never quite
// catches up still hears about its losses. Next blocks until there is
// something to return or ctx ends. Only one goroutine may call Next.
func (s *Subscription[T]) Next(ctx context.Context) (v T, dropped uint64, err error) {
	for {
		select {
		case <-s.evicted:
			return v, 0, ErrEvicted
		default:
		}
		if s.pending.Load() > 0 && (len(s.ch) <= cap(s.ch)/2 || s.sinceNotice >= cap(s.ch)) {
			s.sinceNotice = 0
			s.lastTake.Store(time.Now().UnixNano())
			return v, s.pending.Swap(0), nil
		}
		select {
		case v = <-s.ch:
			s.took()
			return v, 0, nil
		default:
		}
		select {
		case v = <-s.ch:
			s.took()
			return v, 0, nil
		case <-s.wake:
			// loop: report the drop if the queue allows it
		case <-s.evicted:
			return v, 0, ErrEvicted
		case <-ctx.Done():
			return v, 0, ctx.Err()
		}
	}
}

func (s *Subscription[T]) took() {
	s.delivered.Add(1)
	s.sinceNotice++
	s.lastTake.Store(time.Now().UnixNano())
}

// Evicted is closed when EvictStalled removed the subscriber.
func (s *Subscription[T]) Evicted() <-chan struct{} { return s.evicted }

// C is the subscriber's queue, for readers that select over several
// subscriptions; they must call TakeDropped to learn about losses.
func (s *Subscription[T]) C() <-chan T { return s.ch }

// Wake is signalled after a value was dropped for this subscriber.
func (s *Subscription[T]) Wake() <-chan struct{} { return s.wake }

// Took records that the reader took one value from C.
func (s *Subscription[T]) Took() {
	s.delivered.Add(1)
	s.lastTake.Store(time.Now().UnixNano())
}

// TakeDropped returns the number of values dropped since the last call.
func (s *Subscription[T]) TakeDropped() uint64 { return s.pending.Swap(0) }

// Close removes the subscriber; values still queued are discarded.
func (s *Subscription[T]) Close() {
	s.closeOnce.Do(func() { s.topic.remove(s) })
}

// Stats returns this subscriber's counters.
func (s *Subscription[T]) Stats() SubscriberStats {
	return SubscriberStats{
		ID: s.id, Name: s.name, Since: s.since,
		Delivered: s.delivered.Load(), Dropped: s.dropped.Load(),
		Queued: len(s.ch), Capacity: cap(s.ch),
	}
}
