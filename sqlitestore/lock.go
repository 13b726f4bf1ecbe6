package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrLeaseLost is wrapped by the error of an unlock whose lease had ended and been taken by
// another holder (this holder could not renew it in time: it was stopped, or cut off from the
// file). The family's refresh may then have run twice at once; Commit's version check kept the
// older pair from replacing the newer.
var ErrLeaseLost = errors.New("sqlitestore: the lock's lease ended and another holder took it")

// Polling of a lock held by another holder: a wait of pollMin plus up to pollJitter between
// attempts, so that waiting processes do not try in step.
const (
	pollMin    = 10 * time.Millisecond
	pollJitter = 15 * time.Millisecond
)

// unlockTimeout bounds the removal of a lease whose taking was reported failed (see Lock).
const unlockTimeout = time.Second

// Lock takes family's refresh lock, waiting until it is free or ctx ends, and returns the function
// that releases it. The lock is a row of resilient_locks, taken in one write when there is none or
// when its lease ended (its holder died, or stopped renewing it). While it is held a goroutine
// renews the lease every third of the TTL, until unlock, Close, or the row is found taken over.
//
// The unlock function removes the row if it is still this lease's; it reports ErrLeaseLost if
// another holder had taken it. It waits for the renewal goroutine to end, and does its work once:
// calling it again returns the first call's error. If it fails, the lease ends by itself.
func (c *Coordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	holder := c.name()
	for {
		if err := c.life.Err(); err != nil {
			return nil, fmt.Errorf("sqlitestore: lock family %q: the coordinator is closed", family)
		}
		taken, err := c.take(ctx, family, holder)
		if err != nil {
			// The driver may report a write as failed that SQLite committed (see Commit): if this
			// one was, the row is this lease's, and nobody else could take the family until it
			// expired. Remove it, on a context of its own since ctx may be the reason it failed.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
			_, _ = c.remove(rctx, family, holder)
			cancel()
			return nil, fmt.Errorf("sqlitestore: lock family %q: %w", family, err)
		}
		if taken {
			unlock, ok := c.hold(family, holder)
			if !ok { // closed meanwhile: the lease ends with its TTL, unrenewed
				return nil, fmt.Errorf("sqlitestore: lock family %q: the coordinator is closed", family)
			}
			return unlock, nil
		}
		wait := time.NewTimer(pollMin + rand.N(pollJitter))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return nil, fmt.Errorf("sqlitestore: lock family %q: waiting for the lock: %w", family, context.Cause(ctx))
		case <-c.life.Done():
			wait.Stop()
			return nil, fmt.Errorf("sqlitestore: lock family %q: the coordinator is closed", family)
		}
	}
}

// take writes holder's lease on family if there is no lease or it has ended; taken reports
// whether it did.
func (c *Coordinator) take(ctx context.Context, family, holder string) (taken bool, err error) {
	now := time.Now()
	res, err := c.db.ExecContext(ctx,
		`INSERT INTO resilient_locks (family, holder, until_unix_nano) VALUES (?, ?, ?)
		 ON CONFLICT (family) DO UPDATE SET holder = excluded.holder, until_unix_nano = excluded.until_unix_nano
		 WHERE resilient_locks.until_unix_nano < ?`,
		family, holder, now.Add(c.ttl).UnixNano(), now.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// remove deletes holder's lease on family; removed is false if the row was not (or no longer)
// holder's.
func (c *Coordinator) remove(ctx context.Context, family, holder string) (removed bool, err error) {
	res, err := c.db.ExecContext(ctx, `DELETE FROM resilient_locks WHERE family = ? AND holder = ?`, family, holder)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// hold starts the renewal of holder's lease on family and returns its unlock function; ok is false
// if the Coordinator is closed.
func (c *Coordinator) hold(family, holder string) (unlock func(context.Context) error, ok bool) {
	c.mu.Lock()
	if c.life.Err() != nil {
		c.mu.Unlock()
		return nil, false
	}
	c.renewers.Add(1) // before Close's Wait, which comes after c.life ends
	c.mu.Unlock()
	renewing, stop := context.WithCancel(c.life)
	done := make(chan struct{})
	go func() {
		defer c.renewers.Done()
		defer close(done)
		c.renew(renewing, family, holder)
	}()

	var (
		once sync.Once
		err  error
	)
	return func(ctx context.Context) error {
		once.Do(func() {
			stop()
			<-done
			removed, rerr := c.remove(ctx, family, holder)
			switch {
			case rerr != nil:
				err = fmt.Errorf("sqlitestore: unlock family %q: %w", family, rerr)
			case !removed:
				err = fmt.Errorf("sqlitestore: unlock family %q: %w", family, ErrLeaseLost)
			}
		})
		return err
	}, true
}

// renew extends holder's lease on family to a TTL from now, every third of the TTL, until ctx
// ends or the row is no longer holder's. A renewal that fails is tried again at the next tick: if
// none succeeds before the lease ends, another holder may take it.
func (c *Coordinator) renew(ctx context.Context, family, holder string) {
	tick := time.NewTicker(c.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, c.ttl)
		res, err := c.db.ExecContext(rctx,
			`UPDATE resilient_locks SET until_unix_nano = ? WHERE family = ? AND holder = ?`,
			time.Now().Add(c.ttl).UnixNano(), family, holder)
		var n int64
		if err == nil {
			n, err = res.RowsAffected()
		}
		cancel()
		if err == nil && n == 0 {
			return // taken over: the lease is lost
		}
	}
}
