package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// TokenStore is where the token actor keeps the credentials. Load and Save are its only access to
// them: the actor's state on every (re)start is what Load returns, and every pair it installs (a
// refresh's, or the application's) is saved first, in order. Implementations must be safe for
// concurrent use.
type TokenStore interface {
	Load(ctx context.Context) (messages.Tokens, error)
	Save(ctx context.Context, t messages.Tokens) error
}

// Save retries: the first wait, and the cap of the doubling waits that follow (with full jitter).
const (
	saveRetryBase = 50 * time.Millisecond
	saveRetryMax  = time.Second
)

// persister is the one writer of the store. It lives in the TokenHandle, so it outlives a restart of
// the token actor. It is safe for concurrent use.
//
// A store call runs on a goroutine of its own and is waited for at most timeout: a store that
// ignores its context holds neither the actor nor the refresh. Calls are made one at a time (busy).
// A save that fails is reported at once (the new pair is used from memory) and retried in the
// background, newest pair only, until it succeeds, timeout has passed, or close stops it.
type persister struct {
	store   TokenStore
	timeout time.Duration // bounds each Load and Save call, and the background retries of a failed save

	next atomic.Uint64 // hands out save sequence numbers, in the order the actor decides saves
	busy chan struct{} // one slot: held while a store call runs, so calls happen one at a time

	mu       sync.Mutex      // guards below; never held during a store call
	last     uint64          // the sequence number of the newest save begun; older ones are dropped
	latest   messages.Tokens // the pair of that save
	failed   bool            // that save failed: the store holds an older pair than latest
	known    bool            // latest holds a pair this engine saved or loaded
	retrying bool            // the background retrier runs
	closed   bool            // close was called: no new retrier starts

	stop    chan struct{}  // closed by close: the retrier gives up
	retrier sync.WaitGroup // the background retrier

	health atomic.Pointer[error] // the last save's error; nil once a save succeeded
}

func newPersister(store TokenStore, timeout time.Duration) *persister {
	return &persister{store: store, timeout: timeout, busy: make(chan struct{}, 1), stop: make(chan struct{})}
}

// reserve numbers a save at the moment the actor decides it (a refresh starting, SetTokens), so
// that saves finishing out of order cannot leave an older pair in the store.
func (p *persister) reserve() uint64 { return p.next.Add(1) }

// save stores t under sequence number seq with one call. A save older than one already begun is
// dropped: its pair is stale. On failure (an error wrapping messages.ErrSaveFailed) the save is
// retried in the background.
func (p *persister) save(seq uint64, t messages.Tokens) error {
	p.mu.Lock()
	if seq < p.last {
		p.mu.Unlock()
		return nil
	}
	p.last, p.latest, p.failed, p.known = seq, t, true, true
	p.mu.Unlock()
	err := p.attempt(seq, t)
	if err == nil {
		return nil
	}
	p.startRetrier()
	return err
}

// attempt makes one Save of the pair numbered seq, and records its outcome if seq is still the newest.
func (p *persister) attempt(seq uint64, t messages.Tokens) error {
	err := p.call(func(ctx context.Context) error { return p.store.Save(ctx, t) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq != p.last {
		return nil // a newer pair is being saved; this one's outcome no longer matters
	}
	if err == nil {
		p.failed = false
		p.health.Store(nil)
		return nil
	}
	err = fmt.Errorf("%w: %w", messages.ErrSaveFailed, err)
	p.health.Store(&err)
	return err
}

// startRetrier starts the background retries of a failed save, unless they run or close was called.
func (p *persister) startRetrier() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retrying || p.closed {
		return
	}
	p.retrying = true
	p.retrier.Add(1)
	go p.retry()
}

// retry saves the newest pair again, with backoff, while the store holds an older one.
func (p *persister) retry() {
	defer p.retrier.Done()
	deadline := time.Now().Add(p.timeout)
	for n := 1; ; n++ {
		wait := retry.Backoff(n, saveRetryBase, saveRetryMax, nil)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-p.stop:
			timer.Stop()
		}
		p.mu.Lock()
		seq, t, failed := p.last, p.latest, p.failed
		if !failed || p.closed || time.Now().After(deadline) {
			p.retrying = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		_ = p.attempt(seq, t)
	}
}

// close stops the background retries and waits for them until ctx ends (a failed save that was not
// retried in time stays reported by Health and the SaveFailed event).
func (p *persister) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	if !waitFor(ctx, p.retrier.Wait) {
		return context.Cause(ctx)
	}
	return nil
}

// load returns the credentials to start with: the store's, or, when the newest save failed, the pair
// it could not save (the store's is older, and its refresh token may be spent). When Load fails it
// returns, with the error, the last pair this engine loaded or saved, so that a restart during a
// store outage keeps the session; with none known yet it retries Load with backoff within timeout.
// It never answers a failed Load with empty credentials it could avoid.
func (p *persister) load() (messages.Tokens, error) {
	deadline := time.Now().Add(p.timeout)
	for n := 1; ; n++ {
		p.mu.Lock()
		failed, known, last, latest := p.failed, p.known, p.last, p.latest
		p.mu.Unlock()
		if failed {
			return latest, nil
		}
		got := make(chan messages.Tokens, 1) // the call may outlive the wait: no shared variable
		err := p.call(func(ctx context.Context) error {
			t, err := p.store.Load(ctx)
			got <- t
			return err
		})
		if err == nil {
			t := <-got
			p.mu.Lock()
			if p.last == last { // no save began meanwhile: t is what the store holds
				p.latest, p.known = t, true
			}
			p.mu.Unlock()
			return t, nil
		}
		err = fmt.Errorf("token store: loading the credentials: %w", err)
		if known {
			return latest, err
		}
		if sleep(context.Background(), min(retry.Backoff(n, saveRetryBase, saveRetryMax, nil), time.Until(deadline))) != nil || !time.Now().Before(deadline) {
			return messages.Tokens{}, err
		}
	}
}

// err is the last save's error, nil once a save succeeded.
func (p *persister) err() error {
	if e := p.health.Load(); e != nil {
		return *e
	}
	return nil
}

// call runs a store method on a goroutine of its own, one call at a time, and waits for it at most
// timeout (a call still running then keeps the store busy until it returns). A panic becomes an
// error.
func (p *persister) call(f func(ctx context.Context) error) error {
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case p.busy <- struct{}{}:
	case <-timer.C:
		return errors.New("token store: busy with an earlier call that has not returned")
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() { <-p.busy }()
		done <- p.recovered(func() error { return f(ctx) })
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("token store: the call did not return: %w", ctx.Err())
	}
}

// recovered runs f, turning a panic into an error.
func (p *persister) recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("token store panicked: %v", r)
		}
	}()
	return f()
}
