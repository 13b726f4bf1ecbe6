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
// it last read or committed, which the next commit is conditional on. It is safe for concurrent use.
type clusterFamily struct {
	c       Coordinator
	key     string
	refresh actors.RefreshFunc // the family's own refresh (endpoint, grant or function)

	mu        sync.Mutex // guards version and committed
	version   uint64     // of the pair last read or committed; 0: nothing stored
	committed Tokens     // that pair
}

func newClusterFamily(c Coordinator, key string, refresh actors.RefreshFunc) *clusterFamily {
	return &clusterFamily{c: c, key: key, refresh: refresh}
}

// note records the pair the store holds at version v.
func (cf *clusterFamily) note(t Tokens, v uint64) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if v >= cf.version {
		cf.version, cf.committed = v, t
	}
}

func (cf *clusterFamily) known() (Tokens, uint64) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.committed, cf.version
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

// Save stores a pair the token actor put in force. A refreshed pair was committed by refresh already
// (under the lock): nothing to do. Any other (SetTokens: a new sign-in) is committed over whatever
// is stored, at the version last seen, reading it again after a conflict: a new sign-in wins.
func (cf *clusterFamily) Save(ctx context.Context, t Tokens) error {
	committed, v := cf.known()
	if sameTokens(committed, t) && v > 0 {
		return nil
	}
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
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: locking the family: %w", ErrClusterUnavailable, err)
	}
	defer func() {
		// The lease ends by itself if this fails; a fresh context lets a cancelled refresh unlock.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = unlock(uctx)
	}()
	stored, v, err := cf.c.Load(ctx, cf.key)
	if err != nil {
		return Tokens{}, fmt.Errorf("%w: reading the family: %w", ErrClusterUnavailable, err)
	}
	cf.note(stored, v)
	if v > 0 && !sameTokens(stored, current) {
		if stored.Access == "" && stored.Refresh == "" {
			return Tokens{}, fmt.Errorf("%w: another replica's refresh was refused", ErrSessionExpired)
		}
		return stored, nil // another replica refreshed (or signed in) since this one read the store
	}
	t, err := cf.refresh(ctx, current)
	if err != nil {
		cf.commitFailure(ctx, current, v, err)
		return t, err
	}
	if t.Refresh == "" {
		t.Refresh = current.Refresh // no new refresh token: the one sent stays valid (RFC 6749 §6)
	}
	nv, err := cf.c.Commit(ctx, cf.key, v, t)
	switch {
	case err == nil:
		cf.note(t, nv)
	case errors.Is(err, ErrConflict):
		// The lease ended while the call ran, and another replica committed: the store's pair is
		// the newer one.
		if newer, nv, lerr := cf.c.Load(ctx, cf.key); lerr == nil {
			cf.note(newer, nv)
			return newer, nil
		}
	}
	// Not committed (the store failed): the refresh token sent is spent, so the new pair is used,
	// and the token actor's save (Save, above) commits it, retrying in the background.
	return t, nil
}

// commitFailure records in the store what a failed refresh makes certain for every replica: a
// refused refresh (the session is over) as an empty pair, and a refresh token rotated in an answer
// that could not be used as the pair with that token. Other failures leave the store as it is.
func (cf *clusterFamily) commitFailure(ctx context.Context, current Tokens, v uint64, err error) {
	var t Tokens
	var rot messages.RotatedRefresh
	switch {
	case retry.Classify(err).Permanent:
		// empty: the next replica to read it ends its session without calling the endpoint
	case errors.As(err, &rot) && rot.RotatedRefreshToken() != "" && tokenwire.CheckRefreshToken(rot.RotatedRefreshToken()) == nil:
		t = current
		t.Refresh = rot.RotatedRefreshToken()
	default:
		return
	}
	if nv, err := cf.c.Commit(ctx, cf.key, v, t); err == nil {
		cf.note(t, nv)
	}
}

// reload reads the pair in force in the store for a replica whose session ended: ok when another
// replica has put one there since (a new sign-in), not the empty pair a refused refresh leaves.
func (cf *clusterFamily) reload(ctx context.Context) (Tokens, bool, error) {
	_, known := cf.known()
	t, v, err := cf.c.Load(ctx, cf.key)
	if err != nil {
		return Tokens{}, false, err
	}
	if v <= known || t.Access == "" && t.Refresh == "" {
		return Tokens{}, false, nil
	}
	cf.note(t, v)
	return t, true, nil
}

// seed commits t as the family's first pair, unless the store already holds one (another replica
// seeded it, or refreshed since): then that one stands.
func (cf *clusterFamily) seed(ctx context.Context, t Tokens) (Tokens, error) {
	stored, err := cf.Load(ctx)
	if err != nil {
		return Tokens{}, err
	}
	if _, v := cf.known(); v > 0 {
		return stored, nil
	}
	nv, err := cf.c.Commit(ctx, cf.key, 0, t)
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
