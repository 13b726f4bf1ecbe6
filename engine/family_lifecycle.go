package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/resilientclient/resilient/actors"
)

// A family's token actor over time: started on first use from the family store, passivated when
// unused, stopped by Close; and the bounded calls into the application's store that starting it makes.

// handle returns the family's running token actor, starting it if it is not (on first use, or after
// a passivation). The caller has entered.
func (f *Family) handle(ctx context.Context) (*actors.TokenHandle, error) {
	if h := f.live.Load(); h != nil {
		return h, nil
	}
	return f.activate(ctx)
}

// activate starts the family's token actor, which loads the credentials from the store. The store
// is read here first (bounded by ctx and the refresh timeout), so that an outage fails the call with
// the store's error instead of starting a family without credentials; the actor is handed that read.
func (f *Family) activate(ctx context.Context) (*actors.TokenHandle, error) {
	select {
	case f.lock <- struct{}{}:
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), ErrClosed) {
			return nil, ErrClosed
		}
		return nil, ctx.Err()
	}
	defer func() { <-f.lock }()
	if h := f.live.Load(); h != nil {
		return h, nil
	}
	if f.closed || f.e.inflight.Closed() {
		return nil, ErrClosed
	}
	fs := &f.e.fam
	tc := fs.template
	tc.Refresh = fs.refresh
	if tc.Refresh != nil {
		key, refresh := f.key, fs.refresh
		tc.Refresh = func(ctx context.Context, t Tokens) (Tokens, error) {
			return refresh(context.WithValue(ctx, familyKeyCtx{}, key), t)
		}
	}
	var store TokenStore = familyStore{fs: fs.store, key: f.key}
	if fs.cluster != nil {
		cf := newClusterFamily(fs.cluster, f.key, tc.Refresh, fs.template.RefreshTimeout)
		cf.fam = fs
		store, tc.Reload = cf, cf.reload
		if tc.Refresh != nil {
			tc.Refresh = cf.refreshFunc
		}
	}
	t, err := boundedLoad(ctx, store, fs.template.RefreshTimeout)
	if err != nil {
		return nil, &FamilyError{Key: f.key, Err: err}
	}
	tc.Store = &primedStore{TokenStore: store, first: &t}
	tc.Events = publisher{stream: f.e.events, family: f.key}
	tc.Name = f.e.id + "/family" + strconv.FormatUint(fs.seq.Add(1), 10)
	tc.FirstGen = f.lastGen
	if fs.idle > 0 {
		tc.Idle, tc.OnIdle = fs.idle, f.idle
	}
	h, err := actors.SpawnToken(f.e.system, tc)
	if err != nil {
		return nil, &FamilyError{Key: f.key, Err: err}
	}
	if f.e.inflight.Closed() {
		// Close began while the store was read, and may have given up waiting for this lock: the
		// actor is stopped here, so that none outlives Close.
		sctx, cancel := context.WithTimeout(context.Background(), fs.template.RefreshTimeout)
		defer cancel()
		_ = h.Stop(sctx)
		return nil, ErrClosed
	}
	f.live.Store(h)
	return h, nil
}

// boundedLoad reads store with bounded (see there).
func boundedLoad(ctx context.Context, store TokenStore, timeout time.Duration) (Tokens, error) {
	var t Tokens
	err := bounded(ctx, timeout, func(ctx context.Context) (err error) {
		t, err = store.Load(ctx)
		return err
	})
	if err != nil {
		return Tokens{}, err // (t is not read: a call that did not return in time may still write it)
	}
	return t, nil
}

// bounded runs a call into the application's store on a goroutine of its own, waiting at most
// timeout and until ctx ends, and turns a panic into an error: a store that ignores its context or
// panics holds neither New nor a family's lock, and never crashes the caller. The call's results
// are read only when it returned in time.
func bounded(ctx context.Context, timeout time.Duration, call func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("the store panicked: %v", p)
			}
			done <- err
		}()
		err = call(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the store did not answer: %w", context.Cause(ctx))
	}
}

// idle is the token actor's offer to be passivated (on its goroutine: it must not block). A family
// used since the last offer, or in use now, is kept.
func (f *Family) idle() {
	if f.touched.Swap(false) || f.active.Load() != 0 {
		return
	}
	fs := &f.e.fam
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return
	}
	fs.passivating.Add(1)
	go func() {
		defer fs.passivating.Done()
		f.passivate()
	}()
}

// startCommit counts a background commit of cluster mode (clusterFamily.commitLater) that close will
// wait for, unless close began: then it reports false and the caller does not start it.
func (fs *families) startCommit() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return false
	}
	fs.commits.Add(1)
	return true
}

// passivate stops the family's token actor if no call uses it and the actor is at rest. A call
// enters (active) before it reads live, and passivate clears live before it reads active: so either
// the call sees no actor and starts a new one (after this one stopped: it waits for the lock), or
// passivate sees the call and puts the actor back. The actor itself refuses if a refresh runs or a
// save failed (TokenHandle.Passivate); its saves are over when it stops, so the next activation
// loads what it saved, and counts generations on from where it ended.
func (f *Family) passivate() {
	life := f.e.fam.life
	select {
	case f.lock <- struct{}{}:
	case <-life.Done():
		return
	}
	defer func() { <-f.lock }()
	h := f.live.Load()
	if h == nil || f.closed || f.touched.Load() || f.active.Load() != 0 {
		return
	}
	f.live.Store(nil)
	if f.active.Load() != 0 {
		f.live.Store(h)
		return
	}
	ctx, cancel := context.WithTimeout(life, f.e.fam.template.RefreshTimeout)
	defer cancel()
	stopped, err := h.Passivate(ctx)
	if !stopped {
		f.live.Store(h) // busy after all: it stays
		return
	}
	f.lastGen = h.Generation()
	if err != nil {
		f.e.logger.Warn("passivating a family's token actor", "error", err)
	}
}

// close stops the family's token actor for good.
func (f *Family) close(ctx context.Context) error {
	select {
	case f.lock <- struct{}{}:
	case <-ctx.Done():
		// A passivation or activation holds the lock past Close's deadline: stop what runs anyway.
		if h := f.live.Swap(nil); h != nil {
			return h.Stop(ctx)
		}
		return nil
	}
	defer func() { <-f.lock }()
	f.closed = true
	h := f.live.Swap(nil)
	if h == nil {
		return nil
	}
	return h.Stop(ctx)
}

// close stops every family's token actor, several at once (a refresh finishing in one family does
// not eat the others' time), after ending the passivations under way.
func (fs *families) close(ctx context.Context) error {
	fs.mu.Lock()
	fs.closed = true
	fs.mu.Unlock()
	if fs.endLife != nil {
		fs.endLife()
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	fs.m.Range(func(_, v any) bool {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := v.(*Family).close(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
		return true
	})
	wg.Wait()
	fs.passivating.Wait() // they end at once: life ended, and their lock waits watch it
	fs.commits.Wait()     // so do background commits, unlocking as they go
	if len(errs) > 0 && ctx.Err() != nil {
		return context.Cause(ctx) // one deadline, not one per family
	}
	return errors.Join(errs...)
}
