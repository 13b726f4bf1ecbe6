package engine_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// commitFailCoordinator fails Commit (writing nothing, not a conflict) while failCommits is set.
type commitFailCoordinator struct {
	engine.MemoryCoordinator
	failCommits atomic.Bool
	commits     atomic.Int64
}

var errCommitLost = errors.New("commit: i/o timeout")

func (c *commitFailCoordinator) Commit(ctx context.Context, family string, v uint64, t engine.Tokens) (uint64, error) {
	c.commits.Add(1)
	if c.failCommits.Load() {
		return 0, errCommitLost
	}
	return c.MemoryCoordinator.Commit(ctx, family, v, t)
}

// The refreshing replica's Commit fails (nothing written) for longer than its retries under the lock:
// it uses the new pair, and keeps the lock while it commits it in the background, so the next replica
// does not read the old pair and send the spent refresh token; it takes the new pair once committed.
func TestFailedCommitKeepsTheLockUntilStored(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &commitFailCoordinator{}
	engines := replicas(t, 2, srv, coord, srv.Login("ann"), engine.WithMaxRetries(0), engine.WithRefreshTimeout(time.Second))
	srv.ExpireAccessTokens()
	coord.failCommits.Store(true)
	_, err := engine.GetJSON[whoami](context.Background(), engines[0], "/me")
	require.NoError(t, err, "replica 0 refreshed and uses its pair")
	go func() { time.Sleep(300 * time.Millisecond); coord.failCommits.Store(false) }()
	_, err = engine.GetJSON[whoami](context.Background(), engines[1], "/me")
	t.Logf("replica 1: %v", err)
	st := srv.Stats()
	t.Logf("refresh calls %d reuse %d revocations %d", st.RefreshCalls, st.ReuseDetected, st.Revocations)
	assert.Zero(t, st.ReuseDetected, "a spent refresh token was sent")
}

// A SetTokens whose save failed is not reverted by the next refresh once the store answers again:
// the pair in force (bob's) is committed first, not replaced by the older stored one (ann's).
func TestUnsavedSignInIsNotRevertedByARefresh(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &commitFailCoordinator{}
	e := replicas(t, 1, srv, coord, srv.Login("ann"), engine.WithRefreshTimeout(300*time.Millisecond))[0]
	coord.failCommits.Store(true)
	err := e.SetTokens(context.Background(), srv.Login("bob"))
	t.Logf("SetTokens: %v", err)
	got, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.NoError(t, err)
	assert.Equal(t, "bob", got.User)
	time.Sleep(600 * time.Millisecond) // the save's retries give up
	coord.failCommits.Store(false)
	srv.ExpireAccessTokens()
	got, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	t.Logf("after refresh: user %q err %v; refresh calls %d", got.User, err, srv.Stats().RefreshCalls)
	got, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	t.Logf("next request: user %q err %v; refresh calls %d", got.User, err, srv.Stats().RefreshCalls)
	assert.Equal(t, "bob", got.User, "the replica went back to the pair in the store")
}

// A refused refresh left the empty pair in the store; a new sign-in whose save failed is not ended by
// the next refresh (the empty pair read as "another replica's refresh was refused"): it is committed.
func TestUnsavedSignInOutlivesARefusedRefresh(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &commitFailCoordinator{}
	e := replicas(t, 1, srv, coord, srv.Login("ann"), engine.WithMaxRetries(0), engine.WithRefreshTimeout(300*time.Millisecond))[0]
	srv.ExpireAccessTokens()
	srv.SetTokenFailure(400, `{"error":"invalid_grant"}`, 1)
	_, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	coord.failCommits.Store(true)
	_ = e.SetTokens(context.Background(), srv.Login("ann"))
	time.Sleep(600 * time.Millisecond)
	coord.failCommits.Store(false)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	t.Logf("after refresh: %v", err)
	assert.NoError(t, err)
}

// unsureCoordinator is one replica's view of a shared coordinator whose Commit, while unsure is set,
// is written but reported failed (an answer lost: etcd's Txn, SQLite's commit under an ended ctx).
type unsureCoordinator struct {
	engine.Coordinator
	unsure atomic.Bool
}

func (c *unsureCoordinator) Commit(ctx context.Context, family string, v uint64, t engine.Tokens) (uint64, error) {
	if c.unsure.CompareAndSwap(true, false) { // one answer lost; the next commits are answered
		_, _ = c.Coordinator.Commit(ctx, family, v, t)
		return 0, errCommitLost
	}
	return c.Coordinator.Commit(ctx, family, v, t)
}

// A commit whose answer was lost (written, reported failed) is recognised when it is retried under
// the lock: the retry meets its own write as a conflict, and the replica takes the stored pair, which
// is its own. The other replica takes it from the store, and the next refresh starts from it: one
// refresh per expiry, no spent refresh token sent, the store at the version of the last refresh.
func TestLostCommitAnswerIsRecognised(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	shared := &engine.MemoryCoordinator{}
	ca, cb := &unsureCoordinator{Coordinator: shared}, &unsureCoordinator{Coordinator: shared}
	a := replicas(t, 1, srv, ca, srv.Login("ann"))[0]
	b := replicas(t, 1, srv, cb, engine.Tokens{})[0]
	get := func(e *engine.Engine) error {
		_, err := engine.GetJSON[whoami](context.Background(), e, "/me")
		return err
	}

	srv.ExpireAccessTokens()
	ca.unsure.Store(true)
	require.NoError(t, get(a), "A refreshes; its commit is written, the answer lost")
	require.False(t, ca.unsure.Load(), "the lost answer happened")
	require.NoError(t, get(b), "B (its token expired too) takes A's pair from the store")
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
	srv.ExpireAccessTokens()
	require.NoError(t, get(a), "A refreshes from the pair it stored")
	require.NoError(t, get(b), "and B takes that one")
	st := srv.Stats()
	assert.Equal(t, int64(2), st.RefreshCalls)
	assert.Zero(t, st.ReuseDetected)
	_, v, err := shared.Load(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), v, "seed, then one commit per refresh")
}

// A replica started with fresh WithTokens over the empty pair a refused refresh left starts a new
// session with them (it used to start with no credentials).
func TestWithTokensStartsANewSessionOverARefusedOne(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &engine.MemoryCoordinator{}
	_, err := coord.Commit(context.Background(), "", 0, engine.Tokens{}) // what a refused refresh leaves
	require.NoError(t, err)
	e := replicas(t, 1, srv, coord, srv.Login("ann"))[0]
	_, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	t.Logf("request: %v", err)
	assert.NoError(t, err)
}

// New with the coordinator down is an outage, not a configuration error: it wraps
// ErrClusterUnavailable, so a service can tell "try again" from "fix the options".
func TestNewWithTheCoordinatorDown(t *testing.T) {
	coord := &downCoordinator{}
	coord.down.Store(true)
	_, err := engine.New(engine.WithBaseURL("http://127.0.0.1:1"), engine.WithCluster(coord))
	assert.ErrorIs(t, err, engine.ErrClusterUnavailable)
	assert.NotErrorIs(t, err, engine.ErrInvalidConfig)
}

// A replica whose session ended while the store could not take the empty pair (it still holds the
// dead one, at the version this replica knows) does not take that dead pair back when it reads the
// store again: only a pair committed since (a sign-in) ends the expired state.
func TestEndedReplicaDoesNotTakeBackTheDeadPair(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &commitFailCoordinator{}
	e := replicas(t, 1, srv, coord, srv.Login("ann"), engine.WithMaxRetries(0), engine.WithRefreshTimeout(300*time.Millisecond))[0]
	srv.ExpireAccessTokens()
	srv.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant"}`, -1)
	coord.failCommits.Store(true)
	_, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	coord.failCommits.Store(false)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		_, err := engine.GetJSON[whoami](context.Background(), e, "/me") // prompts reads of the store
		require.ErrorIs(t, err, engine.ErrSessionExpired)
	}
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "the dead refresh token is not sent again")
}

// hostileCoordinator panics in Load, or never returns from it (ignoring its context).
type hostileCoordinator struct {
	engine.MemoryCoordinator
	hang  chan struct{} // nil: panic
	nilUn bool          // Lock returns a nil unlock function and no error
}

func (h *hostileCoordinator) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	if h.nilUn {
		return h.MemoryCoordinator.Load(ctx, family)
	}
	if h.hang != nil {
		<-h.hang
		return engine.Tokens{}, 0, nil
	}
	panic("coordinator bug")
}

func (h *hostileCoordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	if h.nilUn {
		return nil, nil
	}
	return h.MemoryCoordinator.Lock(ctx, family)
}

// panickySaveStore panics in Save.
type panickySaveStore struct{ engine.MemoryFamilyStore }

func (*panickySaveStore) Save(context.Context, string, engine.Tokens) error { panic("store bug") }

// A coordinator or store that panics or never answers gives New an error, never a panic or a hang;
// a zero Family given to a typed helper is an error; a Lock without an unlock function fails the
// refresh with ErrClusterUnavailable before the token endpoint is called.
func TestHostileStoresAtNew(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	opts := []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithRefreshTimeout(200 * time.Millisecond)}
	_, err := engine.New(append(opts, engine.WithCluster(&hostileCoordinator{}))...)
	assert.ErrorIs(t, err, engine.ErrClusterUnavailable, "a panicking Load")
	_, err = engine.New(append(opts, engine.WithCluster(&hostileCoordinator{hang: hang}))...)
	assert.ErrorIs(t, err, engine.ErrClusterUnavailable, "a Load that never returns")
	_, err = engine.New(append(opts, engine.WithTokens(engine.Tokens{Access: "a"}), engine.WithFamilyStore(&panickySaveStore{}))...)
	assert.ErrorContains(t, err, "the store panicked", "a panicking Save of the first pair")

	var ce *engine.ConfigError
	_, err = engine.GetJSON[whoami](context.Background(), &engine.Family{}, "/me")
	assert.ErrorAs(t, err, &ce)

	srv := startAPI(t, fakeapi.Options{Opaque: true})
	e := replicas(t, 1, srv, &hostileCoordinator{nilUn: true}, srv.Login("ann"))[0]
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	assert.ErrorIs(t, err, engine.ErrClusterUnavailable)
	assert.Zero(t, srv.Stats().RefreshCalls)
}
