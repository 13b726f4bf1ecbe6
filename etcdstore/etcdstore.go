package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/resilientclient/resilient/engine"
)

// Defaults of the options.
const (
	DefaultPrefix = "/resilient/"    // WithPrefix
	DefaultTTL    = 10 * time.Second // WithTTL; the package doc says why
)

// Option configures New.
type Option func(*config)

type config struct {
	prefix string
	ttl    time.Duration
}

// WithPrefix sets the prefix of every key the Coordinator reads and writes (see the package doc for
// the layout under it); replicas that share families must use the same one. It is used as given, so
// end it with "/". Default: DefaultPrefix, "/resilient/".
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithTTL sets the time to live of the lease the locks are held on: how long a holder that died or
// lost etcd keeps the others waiting. etcd counts it in whole seconds, so it is rounded up; it must
// be at least 1 s, and the server may raise it to its own minimum. Default: DefaultTTL, 10 s.
func WithTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// Coordinator is an engine.Coordinator kept in etcd under a key prefix. Make one per process with
// New, give it to every engine of the process that shares families, and Close it when they are
// closed. It is safe for concurrent use.
type Coordinator struct {
	client *clientv3.Client
	prefix string
	ttl    int64 // seconds

	// closing ends when Close is called: it stops a lease grant in progress, so that Close never
	// waits for one.
	closing context.Context
	close   context.CancelFunc

	sessMu  chan struct{}        // a mutex that a waiter can give up on; guards session and closed
	session *concurrency.Session // the lease every lock is held on; nil until the first Lock
	closed  bool

	local localLocks // one holder per family in this Coordinator
}

var _ engine.Coordinator = (*Coordinator)(nil)

// New returns a Coordinator that keeps its families in etcd through client. It makes no request:
// the lease is granted by the first Lock. The client stays the caller's: Close does not close it.
func New(client *clientv3.Client, opts ...Option) (*Coordinator, error) {
	if client == nil {
		return nil, errors.New("etcdstore: nil client")
	}
	cfg := config{prefix: DefaultPrefix, ttl: DefaultTTL}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("etcdstore: option %d is nil", i+1)
		}
		o(&cfg)
	}
	if cfg.ttl < time.Second {
		return nil, fmt.Errorf("etcdstore: lease TTL %v: etcd's leases last at least 1s", cfg.ttl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{
		client:  client,
		prefix:  cfg.prefix,
		ttl:     int64((cfg.ttl + time.Second - 1) / time.Second),
		closing: ctx,
		close:   cancel,
		sessMu:  make(chan struct{}, 1),
	}, nil
}

// Close ends the Coordinator's session: it revokes the lease, so that every lock still held
// through this Coordinator is released at once (waiting at most the TTL for etcd to answer; if
// it does not, the lease ends by itself). After Close, Lock fails; Load and Commit go on working
// until the client is closed. Close does not close the client.
func (c *Coordinator) Close() error {
	c.close() // a Lock granting a lease gives up, and gives sessMu back
	c.sessMu <- struct{}{}
	s := c.session
	c.session, c.closed = nil, true
	<-c.sessMu
	if s == nil {
		return nil
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("etcdstore: revoke the lease: %w", err)
	}
	return nil
}

// Load returns the pair stored under family and its key's ModRevision; zero Tokens and version 0
// when there is none. The read is linearizable. Expiry comes back in UTC: compare it with Equal.
func (c *Coordinator) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	resp, err := c.client.Get(ctx, c.tokensKey(family))
	if err != nil {
		return engine.Tokens{}, 0, fmt.Errorf("etcdstore: load family %q: %w", family, err)
	}
	if len(resp.Kvs) == 0 {
		return engine.Tokens{}, 0, nil
	}
	kv := resp.Kvs[0]
	t, err := decode(kv.Value)
	if err != nil {
		return engine.Tokens{}, 0, fmt.Errorf("etcdstore: load family %q: %w", family, err)
	}
	return t, uint64(kv.ModRevision), nil
}

// Commit stores t under family in one transaction, if the key's ModRevision is still version (0:
// the key does not exist), and returns the new ModRevision. If the key changed since, it stores
// nothing and returns an error wrapping engine.ErrConflict. Any other error (etcd unreachable,
// the context ended) leaves the outcome unknown: the transaction may have been applied before
// the answer was lost, and a Load tells. A pair that JSON would alter (a string that is not UTF-8,
// an expiry beyond year 9999) is refused before anything is sent.
func (c *Coordinator) Commit(ctx context.Context, family string, version uint64, t engine.Tokens) (uint64, error) {
	if version > math.MaxInt64 { // no revision is that large: it cannot be the stored one
		return 0, fmt.Errorf("etcdstore: commit family %q at version %d: %w", family, version, engine.ErrConflict)
	}
	val, err := encode(t)
	if err != nil {
		return 0, fmt.Errorf("etcdstore: commit family %q: %w", family, err)
	}
	key := c.tokensKey(family)
	resp, err := c.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(version))).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: commit family %q: %w", family, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcdstore: commit family %q at version %d: %w", family, version, engine.ErrConflict)
	}
	return uint64(resp.Header.Revision), nil
}

// tokensKey is where family's pair is stored. Families are escaped so that none contains "/":
// the lock prefix of one family is then never a prefix of another's.
func (c *Coordinator) tokensKey(family string) string {
	return c.prefix + "tokens/" + url.PathEscape(family)
}

// lockPrefix is the prefix of family's lock keys (concurrency.Mutex adds "/" and the lease).
func (c *Coordinator) lockPrefix(family string) string {
	return c.prefix + "locks/" + url.PathEscape(family)
}
