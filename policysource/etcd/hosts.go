package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// HostStatus is what each agent keeps under PREFIX/HOST: who it is, how it
// enforces, and what.
type HostStatus struct {
	Host        string            `json:"host"`
	Version     string            `json:"version"`
	Tier        string            `json:"tier"` // enforcer in use; "" = monitor only
	Labels      map[string]string `json:"labels"`
	Policies    []PolicyInForce   `json:"policies"`
	NotEnforced []string          `json:"notEnforced,omitempty"` // rules the tier cannot enforce, with why
	Rejected    []string          `json:"rejected,omitempty"`    // documents whose current version is refused
	Revision    int64             `json:"etcdRevision"`          // last revision of the policy prefix applied
	Updated     time.Time         `json:"updated"`
}

// PolicyInForce is one policy this host enforces and where it came from.
type PolicyInForce struct {
	Name     string `json:"name"`
	Source   string `json:"source"`             // etcd:KEY or the file's name
	Revision int64  `json:"revision,omitempty"` // the key's mod revision (etcd)
	Rules    int    `json:"rules"`
}

// Publisher keeps this host's key under a lease: written at start and
// after every change, kept alive while the agent runs, revoked when it
// stops; when the agent dies the lease expires and the key goes with it.
type Publisher struct {
	cli   *clientv3.Client
	key   string
	ttl   int64
	state func() HostStatus
	log   *slog.Logger
	kick  chan struct{}
	lease atomic.Int64 // the lease in use, 0 = none
}

// NewPublisher publishes state() under prefix+host with a lease of ttl.
func NewPublisher(cli *clientv3.Client, prefix, host string, ttl time.Duration, state func() HostStatus, log *slog.Logger) *Publisher {
	return &Publisher{cli: cli, key: prefix + host, ttl: max(int64(ttl/time.Second), 2), state: state, log: log, kick: make(chan struct{}, 1)}
}

// Key is the host's key.
func (p *Publisher) Key() string { return p.key }

// Changed asks for the key to be rewritten; it never blocks.
func (p *Publisher) Changed() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run keeps the key until ctx ends, then revokes the lease. etcd being
// unreachable is retried with backoff, never an error.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := p.session(ctx)
		if ctx.Err() != nil {
			break
		}
		p.log.Warn("etcd host status: lost; retrying", "key", p.key, "err", err)
		if !sleep(ctx, backoff) {
			break
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

// session grants a lease, writes the key and keeps both alive until the
// lease is lost or ctx ends (then it revokes the lease: the key goes at
// once).
func (p *Publisher) session(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	lease, err := p.cli.Grant(gctx, p.ttl)
	cancel()
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	p.lease.Store(int64(lease.ID))
	defer p.Revoke()
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	alive, err := p.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	if err := p.put(ctx, lease.ID); err != nil {
		return err
	}
	p.log.Info("etcd host status published", "key", p.key, "ttl", p.ttl)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-alive:
			if !ok {
				return fmt.Errorf("lease %x expired or etcd unreachable", lease.ID)
			}
		case <-p.kick:
			if err := p.put(ctx, lease.ID); err != nil {
				return err
			}
		}
	}
}

// Revoke ends the lease in use, so the key goes at once; the agent calls it
// on its way out, before the client closes.
func (p *Publisher) Revoke() {
	id := p.lease.Swap(0)
	if id == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.cli.Revoke(rctx, clientv3.LeaseID(id))
}

func (p *Publisher) put(ctx context.Context, lease clientv3.LeaseID) error {
	st := p.state()
	st.Updated = time.Now().UTC()
	sort.Slice(st.Policies, func(i, j int) bool { return st.Policies[i].Name < st.Policies[j].Name })
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.cli.Put(pctx, p.key, string(data), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("put %s: %w", p.key, err)
	}
	return nil
}

// ListHosts reads every host's key under prefix, sorted by host; a key
// that does not hold a host's status is an error.
func ListHosts(ctx context.Context, cli *clientv3.Client, prefix string) ([]HostStatus, error) {
	hosts, bad, err := ScanHosts(ctx, cli, prefix)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, errors.New(bad[0])
	}
	return hosts, nil
}

// ScanHosts reads every host's key under prefix, sorted by host; keys that
// do not hold a host's status are returned apart ("KEY: why"), so one stray
// key does not hide the fleet.
func ScanHosts(ctx context.Context, cli *clientv3.Client, prefix string) (hosts []HostStatus, unreadable []string, err error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		var h HostStatus
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: not a host status: %v", kv.Key, err))
			continue
		}
		if h.Host == "" {
			unreadable = append(unreadable, fmt.Sprintf("%s: not a host status: no \"host\"", kv.Key))
			continue
		}
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
	return hosts, unreadable, nil
}
