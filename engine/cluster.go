package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// WithCluster makes the engine one replica among several that share credential families through c
// (see Coordinator): all the engines given the same store make at most one refresh per generation of
// a family between them, learn each other's new pairs from the store, and never send a refresh
// token another one spent. It applies to every family, the default one being the key "". c is also
// where the families' credentials are kept: it replaces WithTokenStore and WithFamilyStore, which
// cannot be given with it. WithTokens seeds the default family if the store holds nothing for it.
//
// The hot path does not change: while its token is valid a replica makes no call to c. A refresh
// that cannot reach c fails with an error wrapping ErrClusterUnavailable (the requests waiting for it
// get ErrRefreshFailed wrapping it, or their own deadline if it comes first); the replica keeps its
// credentials and tries again on the next refresh.
func WithCluster(c Coordinator) Option {
	return func(cfg *config) {
		if isNil(c) {
			cfg.reject("WithCluster", "nil Coordinator")
			return
		}
		cfg.cluster = c
	}
}

// ErrClusterUnavailable is wrapped by the error of a refresh that could not lock, read or commit a
// family in the Coordinator: the store is unreachable (or failing). The credentials are kept.
var ErrClusterUnavailable = errors.New("engine: the cluster's coordinator is unavailable")

// clusterFamily is one family's view of the Coordinator, for one incarnation of its token actor: the
// actor's TokenStore, and the wrapper of its refresh function. It remembers the version of the pair
// it last read or committed, which the next commit is conditional on, and the pair in force here
// that the store does not hold yet (pending). It is safe for concurrent use.
type clusterFamily struct {
	c       Coordinator
	key     string
	refresh actors.RefreshFunc // the family's own refresh (endpoint, grant or function)
	timeout time.Duration      // the refresh timeout: bounds the retries of a commit under the lock
	fam     *families          // the engine's: its life and its wait for background commits; nil: none

	mu        sync.Mutex // guards the fields below
	version   uint64     // of the pair last read or committed; 0: nothing stored
	committed Tokens     // that pair
	pending   *pending   // in force here, not (known to be) in the store; nil: none
}

// pending is a pair put in force on this replica whose commit failed (or did not happen yet).
type pending struct {
	t      Tokens
	base   uint64 // the version the pair was refreshed from; it may only replace that one
	signIn bool   // SetTokens: a new sign-in, which replaces whatever is stored
}

func newClusterFamily(c Coordinator, key string, refresh actors.RefreshFunc, timeout time.Duration) *clusterFamily {
	return &clusterFamily{c: c, key: key, refresh: refresh, timeout: timeout}
}

// note records the pair the store holds at version v; a pending pair that is now stored is done.
func (cf *clusterFamily) note(t Tokens, v uint64) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if v >= cf.version {
		cf.version, cf.committed = v, t
	}
	if cf.pending != nil && sameTokens(cf.pending.t, t) {
		cf.pending = nil
	}
}

func (cf *clusterFamily) known() (Tokens, uint64) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.committed, cf.version
}

func (cf *clusterFamily) setPending(p *pending) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	cf.pending = p
}

func (cf *clusterFamily) pendingPair() *pending {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.pending
}

// Load reads the family's pair (the token actor's state when it starts). A pair emptied by another
// replica whose refresh was refused reads as no credentials: the session expired.
func (cf *clusterFamily) Load(ctx context.Context) (Tokens, error) {
	t, v, err := cf.c.Load(ctx, cf.key)
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
	}
	cf.note(t, v)
	return t, nil
}

// Save stores a pair the token actor put in force. A refreshed pair was committed by refreshFunc
// already (under the lock): nothing to do. A refreshed pair whose commit failed is committed only
// over the version it was refreshed from: if the store moved on, its pair wins (it is newer) and
// this one is dropped. Any other pair is a new sign-in (SetTokens), committed over whatever is
// stored, at the version last seen, reading it again after a conflict.
func (cf *clusterFamily) Save(ctx context.Context, t Tokens) error {
	committed, v := cf.known()
	if sameTokens(committed, t) && v > 0 {
		return nil
	}
	if p := cf.pendingPair(); p != nil && !p.signIn && sameTokens(p.t, t) {
		nv, err := cf.c.Commit(ctx, cf.key, p.base, t)
		switch {
		case err == nil:
			cf.note(t, nv)
			return nil
		case errors.Is(err, ErrConflict):
			cf.setPending(nil) // the store's pair is newer: the next refresh takes it
			return nil
		}
		return fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
	}
	cf.setPending(&pending{t: t, signIn: true})
	for range 5 {
		nv, err := cf.c.Commit(ctx, cf.key, v, t)
		if err == nil {
			cf.note(t, nv)
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
		}
		if _, v, err = cf.c.Load(ctx, cf.key); err != nil {
			return fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
		}
	}
	return fmt.Errorf("%w: the pair kept changing while it was being saved", ErrConflict)
}

// refreshFunc is the refresh the family's token actor calls in cluster mode: under the family's
// lock, read the store; use what another replica committed, or refresh and commit.
func (cf *clusterFamily) refreshFunc(ctx context.Context, current Tokens) (Tokens, error) {
	unlock, err := cf.c.Lock(ctx, cf.key)
	if err == nil && unlock == nil {
		err = errors.New("the coordinator's Lock returned no unlock function")
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: locking the family: %w", ErrClusterUnavailable, err)
	}
	held := false // the lock passes to a background commit (commitLater)
	defer func() {
		if !held {
			release(ctx, unlock)
		}
	}()
	stored, v, err := cf.c.Load(ctx, cf.key)
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: reading the family: %w", ErrClusterUnavailable, err)
	}
	cf.note(stored, v)
	if p := cf.pendingPair(); p != nil && sameTokens(p.t, current) && !sameTokens(stored, current) {
		// The pair in force here is not in the store. A sign-in, or a refresh of the stored version,
		// is newer than what is stored: commit it before anything else. A refresh of an older version
		// lost to another replica's: the store's pair wins.
		if !p.signIn && p.base != v {
			cf.setPending(nil)
		} else {
			nv, err := cf.commitUnderLock(ctx, v, current)
			if err != nil {
				return Tokens{}, fmt.Errorf("%w: storing the pair in force: %w", ErrClusterUnavailable, err)
			}
			stored, v = current, nv
			cf.note(stored, v)
		}
	}
	if v > 0 && !sameTokens(stored, current) {
		return adopt(stored) // another replica refreshed (or signed in) since this one read the store
	}
	t, err := cf.refresh(ctx, current)
	if err != nil {
		if newer, ok := cf.commitFailure(ctx, current, v, err); ok {
			return adopt(newer)
		}
		return t, err
	}
	if t.Refresh == "" {
		t.Refresh = current.Refresh // no new refresh token: the one sent stays valid (RFC 6749 §6)
	}
	nv, err := cf.commitUnderLock(ctx, v, t)
	switch {
	case err == nil:
		cf.note(t, nv)
		return t, nil
	case errors.Is(err, ErrConflict):
		// The lease ended while the call ran, and another replica committed: the store's pair is
		// the newer one.
		if newer, nv, lerr := cf.c.Load(ctx, cf.key); lerr == nil {
			cf.note(newer, nv)
			return adopt(newer)
		}
	}
	// Not committed (the store failed for as long as the refresh timeout): the refresh token sent is
	// spent, so the new pair is used here, and committed in the background over the version it was
	// refreshed from. The lock stays held meanwhile: another replica that read the older pair would
	// send the spent refresh token; it waits, and fails with ErrClusterUnavailable if it must.
	cf.setPending(&pending{t: t, base: v})
	held = cf.commitLater(unlock, v, t)
	return t, nil
}

// commitLater commits t over version v in the background, holding the lock until it is done (or the
// store's pair turned out newer), or until the engine closes; then it unlocks. It reports whether it
// took the lock over (false when the engine gave it no background to run in).
func (cf *clusterFamily) commitLater(unlock func(context.Context) error, v uint64, t Tokens) bool {
	if cf.fam == nil || !cf.fam.startCommit() {
		return false
	}
	life := cf.fam.life
	go func() {
		defer cf.fam.commits.Done()
		defer release(context.Background(), unlock)
		for n := 1; life.Err() == nil; n++ {
			if !retry.Sleep(life, retry.Backoff(n, 50*time.Millisecond, 2*time.Second, nil)) {
				return
			}
			ctx, cancel := context.WithTimeout(life, 5*time.Second)
			nv, err := cf.c.Commit(ctx, cf.key, v, t)
			cancel()
			switch {
			case err == nil:
				cf.note(t, nv)
				return
			case errors.Is(err, ErrConflict):
				cf.setPending(nil) // the store's pair is newer: the next refresh takes it
				return
			}
		}
	}()
	return true
}

// release unlocks on a context of its own (the refresh's may have ended): the lease ends by itself
// if this fails.
func release(ctx context.Context, unlock func(context.Context) error) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = unlock(uctx)
}

// adopt returns the pair the store holds for use here: an empty one says a replica's refresh was
// refused, and the session is over.
func adopt(stored Tokens) (Tokens, error) {
	if stored.Access == "" && stored.Refresh == "" {
		return Tokens{}, fmt.Errorf("%w: another replica's refresh was refused", ErrSessionExpired)
	}
	return stored, nil
}

// commitUnderLock commits t at version v, retrying failures other than a conflict for up to the
// refresh timeout, on a context of its own (the refresh's may be nearly spent by the lock wait): while
// the lock is held, no other replica can read the older pair and send its spent refresh token.
func (cf *clusterFamily) commitUnderLock(ctx context.Context, v uint64, t Tokens) (uint64, error) {
	deadline := time.Now().Add(cf.timeout)
	for n := 1; ; n++ {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(cf.timeout, 5*time.Second))
		nv, err := cf.c.Commit(cctx, cf.key, v, t)
		cancel()
		if err == nil || errors.Is(err, ErrConflict) {
			return nv, err
		}
		wait := retry.Backoff(n, 20*time.Millisecond, time.Second, nil)
		if time.Now().Add(wait).After(deadline) {
			return 0, err
		}
		time.Sleep(wait)
	}
}

// commitFailure records in the store what a failed refresh makes certain for every replica: a
// refused refresh (the session is over) as an empty pair, and a refresh token rotated in an answer
// that could not be used as the pair with that token. Other failures leave the store as it is. If
// the store changed meanwhile (another replica's sign-in), it returns the newer pair, to be used
// instead of the failure.
func (cf *clusterFamily) commitFailure(ctx context.Context, current Tokens, v uint64, err error) (Tokens, bool) {
	var t Tokens
	var rot messages.RotatedRefresh
	switch {
	case retry.Classify(err).Permanent:
		// empty: the next replica to read it ends its session without calling the endpoint
	case errors.As(err, &rot) && rot.RotatedRefreshToken() != "" && tokenwire.CheckRefreshToken(rot.RotatedRefreshToken()) == nil:
		t = current
		t.Refresh = rot.RotatedRefreshToken()
	default:
		return Tokens{}, false
	}
	nv, cerr := cf.commitUnderLock(ctx, v, t)
	switch {
	case cerr == nil:
		cf.note(t, nv)
	case errors.Is(cerr, ErrConflict):
		if newer, nv, lerr := cf.c.Load(ctx, cf.key); lerr == nil && !(newer.Access == "" && newer.Refresh == "") {
			cf.note(newer, nv)
			return newer, true
		}
	default:
		if t.Refresh != "" { // the rotated pair: the actor saves it next, over the version read
			cf.setPending(&pending{t: t, base: v})
		}
	}
	return Tokens{}, false
}

// reload reads the pair in force in the store for a replica whose session ended: ok when another
// replica has put one there since (a new sign-in), not the empty pair a refused refresh leaves.
func (cf *clusterFamily) reload(ctx context.Context) (Tokens, bool, error) {
	_, known := cf.known()
	t, v, err := cf.c.Load(ctx, cf.key)
	if err != nil {
		return Tokens{}, false, err
	}
	if v == known || t.Access == "" && t.Refresh == "" {
		return Tokens{}, false, nil
	}
	cf.note(t, v)
	return t, true, nil
}

// seed commits t as the family's first pair, unless the store already holds a live one (another
// replica seeded it, or refreshed since): then that one stands. Over the empty pair a refused
// refresh left, t is committed: a deployment with new credentials starts a new session.
func (cf *clusterFamily) seed(ctx context.Context, t Tokens) (Tokens, error) {
	stored, err := cf.Load(ctx)
	if err != nil {
		return Tokens{}, err
	}
	_, v := cf.known()
	if v > 0 && (stored.Access != "" || stored.Refresh != "") {
		return stored, nil
	}
	nv, err := cf.c.Commit(ctx, cf.key, v, t)
	if errors.Is(err, ErrConflict) {
		return cf.Load(ctx)
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
	}
	cf.note(t, nv)
	return t, nil
}

// sameTokens reports whether a and b are the same pair.
func sameTokens(a, b Tokens) bool {
	return a.Access == b.Access && a.Refresh == b.Refresh && a.Type == b.Type && a.Expiry.Equal(b.Expiry)
}
