package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/concurrency"
)

var errClosed = errors.New("the coordinator is closed") // wrapped by Lock's "etcdstore: lock family ..."

// Lock takes family's lock, waiting until it is free or ctx ends, and returns the function that
// releases it. The lock is held on this Coordinator's lease (see the package doc), so it also ends
// if the process dies or loses etcd for the TTL. It is not reentrant: a second Lock of the family
// through the same Coordinator, from any goroutine, waits for the first one's unlock. Calling the
// unlock function more than once does
// nothing more. If unlocking fails (etcd unreachable, its ctx ended), the unlock function returns
// the error and the lock is released in the background, or ends with the lease within the TTL.
func (c *Coordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	release, err := c.local.acquire(ctx, family)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: lock family %q: %w", family, err)
	}
	for attempt := 1; ; attempt++ {
		s, err := c.currentSession(ctx)
		if err != nil {
			release()
			return nil, fmt.Errorf("etcdstore: lock family %q: %w", family, err)
		}
		unlock, err := c.lockOn(ctx, s, family, release)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease ended (revoked, or etcd lost it) before its keepalive noticed, and no key
			// was written: once more, on a new lease.
			s.Orphan()
			if attempt == 1 {
				continue
			}
			release()
		}
		if err != nil {
			return nil, fmt.Errorf("etcdstore: lock family %q: %w", family, err)
		}
		return unlock, nil
	}
}

// lockOn takes family's lock on session s. It owns release (the family's local lock) unless it
// fails with rpctypes.ErrLeaseNotFound: then nothing was written, and the caller keeps it.
func (c *Coordinator) lockOn(ctx context.Context, s *concurrency.Session, family string, release func()) (func(context.Context) error, error) {
	m := concurrency.NewMutex(s, c.lockPrefix(family))
	key := fmt.Sprintf("%s/%x", c.lockPrefix(family), s.Lease()) // m's key, whether or not it gets the lock

	// Mutex.Lock returns soon after ctx ends, but then deletes its waiting key with the client's
	// own context, which waits for etcd to answer however long that takes. So it runs apart, and
	// Lock returns when ctx ends; the goroutine finishes (and gives the local lock back) later.
	done := make(chan error, 1)
	go func() { done <- m.Lock(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		go func() {
			<-done
			c.abandon(s, key, release)
		}()
		return nil, ctx.Err()
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil, err
	}
	if err != nil {
		// A Mutex.Lock whose first request failed may still have queued its key (the request was
		// applied, the answer lost), and nothing else would delete it while the lease lives.
		go c.abandon(s, key, release)
		return nil, err
	}
	select {
	case <-s.Done(): // the lease stopped being renewed while we waited: the lock ends with it
		go c.abandon(s, key, release)
		return nil, concurrency.ErrSessionExpired
	default:
	}

	var once sync.Once
	return func(ctx context.Context) error {
		var err error
		once.Do(func() {
			if err = m.Unlock(ctx); err != nil {
				go c.abandon(s, key, release)
				err = fmt.Errorf("etcdstore: unlock family %q: %w", family, err)
				return
			}
			release()
		})
		return err
	}, nil
}

// abandon deletes the lock key of a Lock that failed or whose unlock failed, trying for up to the
// TTL; if etcd does not answer, it stops renewing the lease, so that the key ends with it within
// the TTL (and every other lock held on it too: the next Lock makes a new lease). Only then does
// it give the family's local lock back: a Lock on the same lease would take the key over.
func (c *Coordinator) abandon(s *concurrency.Session, key string, release func()) {
	defer release()
	ctx, cancel := context.WithTimeout(s.Client().Ctx(), time.Duration(c.ttl)*time.Second)
	defer cancel()
	if _, err := s.Client().Delete(ctx, key); err != nil {
		s.Orphan()
	}
}

// currentSession returns the session the locks are held on, granting a new lease if there is none
// yet or the last one ended.
func (c *Coordinator) currentSession(ctx context.Context) (*concurrency.Session, error) {
	select {
	case c.sessMu <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sessMu }()
	if c.closed {
		return nil, errClosed
	}
	if s := c.session; s != nil {
		select {
		case <-s.Done(): // its keepalive stopped: the lease expired or is about to
		default:
			return s, nil
		}
	}

	// The lease is granted here, with ctx (and Close) bounding the wait, rather than by
	// NewSession, which would wait with the client's context, for ever if etcd is unreachable.
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.closing, cancel)()
	lease, err := c.client.Grant(gctx, c.ttl)
	if err != nil {
		return nil, fmt.Errorf("grant a lease: %w", err)
	}
	// The session's context stays the client's: the lease is renewed until Close, Orphan or the
	// client's Close, not until this Lock's ctx ends.
	s, err := concurrency.NewSession(c.client, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(lease.TTL)))
	if err != nil {
		return nil, fmt.Errorf("keep the lease alive: %w", err)
	}
	c.session = s
	return s, nil
}

// localLocks makes the Lock calls of one Coordinator on one family take turns: they share one
// lease, and concurrency.Mutex lets every holder of a lease in at once.
type localLocks struct {
	mu sync.Mutex // guards m
	m  map[string]*localLock
}

type localLock struct {
	held chan struct{} // holds a value while a Lock holds the family
	refs int           // holders and waiters; the entry is deleted when it reaches 0
}

// acquire waits until family is free in this Coordinator or ctx ends, and returns the function
// that frees it.
func (l *localLocks) acquire(ctx context.Context, family string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*localLock{}
	}
	e := l.m[family]
	if e == nil {
		e = &localLock{held: make(chan struct{}, 1)}
		l.m[family] = e
	}
	e.refs++
	l.mu.Unlock()

	drop := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, family)
		}
		l.mu.Unlock()
	}
	select {
	case e.held <- struct{}{}:
		return func() { <-e.held; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}
