package etcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"
)

// SourceName is the store's name for documents from etcd: entries are
// shown as etcd:KEY.
const SourceName = "etcd"

// Sink is where documents go: the policy store.
type Sink interface {
	// Update takes documents by key (nil: deleted); with full, every
	// other key of the source is removed. One call, one compile.
	Update(source string, docs map[string][]byte, full bool, change string)
	// Documents is the last good content of each key, for the cache.
	Documents(source string) map[string][]byte
}

// Status is the source's state, for `kubearmor status` and the host's key.
type Status struct {
	Endpoints    string
	Prefix       string
	State        string    // connected, connecting, disconnected
	Revision     int64     // last revision applied
	LastSync     time.Time // last full read or watch event/progress
	Keys         int       // documents held
	CacheWritten time.Time // when the cache was last written (or, at start, read)
	FromCache    bool      // enforcing what the cache had: etcd not read yet
	Error        string    // the last error, while not connected
}

// Source reads a key prefix: a consistent full read, then a watch from the
// revision after it. A watch that breaks is resumed from the last revision
// applied, so no update is missed or reordered; a revision compacted away
// in the meantime means a full read again. Every batch is handed to the
// sink and the cache is rewritten.
type Source struct {
	cli    *clientv3.Client
	prefix string
	sink   Sink
	cache  string // "" = none
	log    *slog.Logger
	eps    string

	mu   sync.Mutex
	st   Status
	revs map[string]int64 // key -> mod revision, for the host's key
}

// Open makes the source and, before returning, hands the sink what the
// cache holds, so a host that starts while etcd is unreachable enforces
// what it last had.
func Open(cli *clientv3.Client, prefix, cachePath string, sink Sink, log *slog.Logger) *Source {
	s := &Source{cli: cli, prefix: prefix, sink: sink, cache: cachePath, log: log,
		eps: strings.Join(cli.Endpoints(), ","), revs: map[string]int64{}}
	s.st = Status{Endpoints: s.eps, Prefix: prefix, State: "connecting"}
	if cachePath == "" {
		return s
	}
	c, err := readCache(cachePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Error("etcd policy cache not used", "err", err)
	case c.Prefix != prefix:
		log.Warn("etcd policy cache is of another prefix; not used", "cache", cachePath, "prefix", c.Prefix)
	default:
		docs := c.Docs
		sink.Update(SourceName, docs, true, fmt.Sprintf("etcd cache %s (revision %d, written %s)", cachePath, c.Revision, c.Written.UTC().Format(time.RFC3339)))
		s.st.FromCache, s.st.CacheWritten, s.st.Keys = true, c.Written, len(docs)
		log.Info("enforcing policies from the etcd cache until etcd is read", "cache", cachePath, "revision", c.Revision, "keys", len(docs))
	}
	return s
}

// Status returns the source's state now.
func (s *Source) Status() Status {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	if st.State != "connecting" {
		if c := s.cli.ActiveConnection(); c != nil && c.GetState() != connectivity.Ready {
			st.State = "disconnected"
		}
	}
	return st
}

// Revisions maps each key held to its mod revision.
func (s *Source) Revisions() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.revs)
}

var errCompacted = errors.New("revision compacted")

// Run reads and watches until ctx ends. Nothing etcd does stops it: while
// etcd is unreachable the policies in force stay and it retries with
// backoff (0.5 s doubling to 10 s, each wait up to half again at random).
func (s *Source) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	rev := int64(0) // last revision applied; 0: read everything
	for ctx.Err() == nil {
		if rev == 0 {
			r, err := s.sync(ctx)
			if err != nil {
				s.failed(err)
				if !sleep(ctx, backoff) {
					break
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			rev = r
		}
		backoff = 500 * time.Millisecond
		last, err := s.watch(ctx, rev)
		rev = last
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errCompacted):
			s.log.Warn("etcd compacted past the last revision seen; reading the prefix again", "prefix", s.prefix, "revision", rev)
			rev = 0
		default:
			s.failed(err)
			if !sleep(ctx, backoff) {
				return nil
			}
		}
	}
	return nil
}

// sleep waits d plus up to half of it again, at random, so that a fleet
// whose etcd comes back does not retry in step.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 1 {
		d += rand.N(d / 2)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Source) failed(err error) {
	if err == nil {
		err = errors.New("watch closed")
	}
	s.mu.Lock()
	was := s.st.Error
	s.st.State, s.st.Error = "disconnected", err.Error()
	s.mu.Unlock()
	if was != err.Error() {
		s.log.Warn("etcd unreachable; the policies in force stay", "endpoints", s.eps, "err", err)
	}
}

// sync reads the whole prefix at one revision and hands it over as the
// complete set.
func (s *Source) sync(ctx context.Context) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a hang guard: Run retries
	defer cancel()
	resp, err := s.cli.Get(gctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", s.prefix, err)
	}
	docs := make(map[string][]byte, len(resp.Kvs))
	revs := make(map[string]int64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		docs[string(kv.Key)] = kv.Value
		revs[string(kv.Key)] = kv.ModRevision
	}
	rev := resp.Header.Revision
	s.sink.Update(SourceName, docs, true, fmt.Sprintf("etcd %s read at revision %d", s.prefix, rev))
	s.mu.Lock()
	s.revs = revs
	s.mu.Unlock()
	s.applied(rev, true)
	s.log.Info("etcd policies read", "prefix", s.prefix, "revision", rev, "keys", len(docs))
	return rev, nil
}

// watch applies changes after rev until the watch ends; it returns the
// last revision applied.
func (s *Source) watch(ctx context.Context, rev int64) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		// Responses already waiting go into the same Update: a burst of
		// separate puts is compiled once or a few times, not once per
		// revision, when this host is behind.
		batch := []clientv3.WatchResponse{resp}
	drain:
		for yielded := false; len(batch) < maxBatch; {
			select {
			case r, ok := <-wch:
				if !ok {
					break drain // closed: the range above ends after this batch
				}
				batch = append(batch, r)
				yielded = false
			default:
				if yielded {
					break drain
				}
				// The client hands buffered responses over one by one:
				// let it reach its next send before deciding none waits.
				runtime.Gosched()
				yielded = true
			}
		}
		docs := map[string][]byte{}
		last, progress := rev, int64(0)
		var stop error
		for _, r := range batch {
			if r.CompactRevision != 0 {
				stop = errCompacted
				break
			}
			if err := r.Err(); err != nil {
				stop = err
				break
			}
			if len(r.Events) == 0 { // progress notification: nothing missed up to here
				progress = max(progress, r.Header.Revision)
				continue
			}
			s.mu.Lock()
			for _, ev := range r.Events {
				k := string(ev.Kv.Key)
				if ev.Type == mvccpb.DELETE {
					docs[k] = nil
					delete(s.revs, k)
				} else {
					docs[k] = ev.Kv.Value
					s.revs[k] = ev.Kv.ModRevision
				}
			}
			s.mu.Unlock()
			last = max(last, r.Events[len(r.Events)-1].Kv.ModRevision)
		}
		if len(docs) > 0 {
			s.sink.Update(SourceName, docs, false, fmt.Sprintf("etcd revision %d (%d keys)", last, len(docs)))
		}
		if len(docs) > 0 || progress > 0 {
			rev = max(rev, last, progress)
			s.applied(rev, len(docs) > 0)
		}
		if stop != nil {
			return rev, stop
		}
	}
	return rev, ctx.Err()
}

// maxBatch bounds the watch responses applied in one Update.
const maxBatch = 256

// applied records a revision as applied and rewrites the cache when the
// documents changed.
func (s *Source) applied(rev int64, changed bool) {
	now := time.Now()
	var docs map[string][]byte
	if changed {
		docs = s.sink.Documents(SourceName)
	}
	s.mu.Lock()
	s.st.State, s.st.Error, s.st.Revision, s.st.LastSync, s.st.FromCache = "connected", "", rev, now, false
	if docs != nil {
		s.st.Keys = len(docs)
	}
	s.mu.Unlock()
	if !changed || s.cache == "" {
		return
	}
	c := &cacheFile{Revision: rev, Written: now, Prefix: s.prefix, Docs: docs}
	if err := writeCache(s.cache, c); err != nil {
		s.log.Error("etcd policy cache not written", "cache", s.cache, "err", err)
		return
	}
	s.mu.Lock()
	s.st.CacheWritten = now
	s.mu.Unlock()
}
