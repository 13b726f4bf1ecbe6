package actors

import (
	"context"
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
// the token actor: a save in progress during a restart finishes, and the next incarnation's Load
// waits for it. It is safe for concurrent use.
type persister struct {
	store   TokenStore
	timeout time.Duration // bounds each Load, and each Save with its retries

	next atomic.Uint64 // hands out save sequence numbers, in the order the actor decides saves

	mu     sync.Mutex      // held during every Load and Save, so they happen one at a time; guards below
	last   uint64          // the sequence number of the newest save begun; older ones are dropped
	latest messages.Tokens // the pair of that save
	failed bool            // that save failed: the store holds an older pair than latest

	health atomic.Pointer[error] // the last save's error; nil once a save succeeded
}

// reserve numbers a save at the moment the actor decides it (a refresh starting, SetTokens), so
// that saves finishing out of order cannot leave an older pair in the store.
func (p *persister) reserve() uint64 { return p.next.Add(1) }

// save stores t under sequence number seq, retrying a failing Save with backoff until the refresh
// timeout has passed; its context is its own (not Close's, not the actor's life), so a shutdown
// does not cut a save short. A save older than one already begun is dropped: its pair is stale. The
// error wraps messages.ErrSaveFailed.
func (p *persister) save(seq uint64, t messages.Tokens) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < p.last {
		return nil
	}
	p.last, p.latest, p.failed = seq, t, true
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	var err error
	for n := 1; ; n++ {
		if err = p.call(func() error { return p.store.Save(ctx, t) }); err == nil {
			p.failed = false
			p.health.Store(nil)
			return nil
		}
		if sleep(ctx, retry.Backoff(n, saveRetryBase, saveRetryMax, nil)) != nil {
			break
		}
	}
	err = fmt.Errorf("%w: %w", messages.ErrSaveFailed, err)
	p.health.Store(&err)
	return err
}

// load returns the credentials to start with: the store's, or, when the newest save failed, the pair
// it could not save (the store's is older, and its refresh token may be spent).
func (p *persister) load() (messages.Tokens, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed {
		return p.latest, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	var t messages.Tokens
	err := p.call(func() (err error) { t, err = p.store.Load(ctx); return err })
	if err != nil && p.last > 0 {
		return p.latest, nil // what this engine last saved is what the store holds
	}
	return t, err
}

// err is the last save's error, nil once a save succeeded.
func (p *persister) err() error {
	if e := p.health.Load(); e != nil {
		return *e
	}
	return nil
}

// call runs a store method, turning a panic into an error.
func (p *persister) call(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("token store panicked: %v", r)
		}
	}()
	return f()
}
