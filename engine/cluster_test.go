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

// replicas starts n engines on srv sharing coord; the first seeds the default family with first
// (unless it is zero).
func replicas(t *testing.T, n int, srv *fakeapi.Server, coord engine.Coordinator, first engine.Tokens, opts ...engine.Option) []*engine.Engine {
	t.Helper()
	var out []*engine.Engine
	for i := range n {
		all := append([]engine.Option{
			engine.WithBaseURL(srv.URL()),
			engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
			engine.WithCluster(coord),
		}, opts...)
		if i == 0 && first != (engine.Tokens{}) {
			all = append(all, engine.WithTokens(first))
		}
		e, err := engine.New(all...)
		require.NoError(t, err)
		t.Cleanup(func() { closeEngine(t, e) })
		out = append(out, e)
	}
	return out
}

// storm sends n concurrent GET /me through each engine and returns how many failed.
func storm(t *testing.T, engines []*engine.Engine, n int, want string) int64 {
	var failed atomic.Int64
	fanOut(len(engines)*n, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := engine.GetJSON[whoami](ctx, engines[i%len(engines)], "/me")
		if err != nil || got.User != want {
			if failed.Add(1) == 1 {
				t.Logf("first failure: %v (user %q)", err, got.User)
			}
		}
	})
	return failed.Load()
}

// Three replicas sharing one family, 300 concurrent requests each, across three expiries of the
// access token: three refresh calls in all, no reuse, every request answered; the replicas that did
// not refresh took the new pair from the coordinator.
func TestReplicasRefreshOncePerExpiry(t *testing.T) {
	for _, opaque := range []bool{false, true} {
		name := map[bool]string{false: "known expiry", true: "opaque tokens, 401s only"}[opaque]
		t.Run(name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: opaque})
			engines := replicas(t, 3, srv, &engine.MemoryCoordinator{}, srv.Login("ann"))
			for round := 1; round <= 3; round++ {
				srv.ExpireAccessTokens()
				assert.Zero(t, storm(t, engines, 300, "ann"), "round %d: failed requests", round)
			}
			st := srv.Stats()
			assert.Equal(t, int64(3), st.RefreshCalls, "one refresh per expiry across the replicas")
			assert.Zero(t, st.ReuseDetected)
			assert.Zero(t, st.Revocations)
		})
	}
}

// A refused refresh on one replica ends the session on all of them, with no further call to the
// token endpoint: the coordinator holds the end.
func TestRefusedRefreshEndsTheSessionOnEveryReplica(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	engines := replicas(t, 3, srv, &engine.MemoryCoordinator{}, srv.Login("ann"))
	srv.ExpireAccessTokens()
	srv.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant"}`, -1)
	for i, e := range engines {
		_, err := engine.GetJSON[whoami](context.Background(), e, "/me")
		assert.ErrorIs(t, err, engine.ErrSessionExpired, "replica %d", i)
	}
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "the refused refresh is not tried again by the other replicas")

	// A new sign-in on one replica reaches the others: a request to an ended session prompts a read
	// of the store (at most once a second), and the next requests use what it found.
	require.NoError(t, engines[0].SetTokens(context.Background(), srv.Login("ann")))
	for i, e := range engines {
		require.Eventually(t, func() bool {
			got, err := engine.GetJSON[whoami](context.Background(), e, "/me")
			if err != nil {
				assert.ErrorIs(t, err, engine.ErrSessionExpired, "replica %d", i)
				return false
			}
			return got.User == "ann"
		}, 10*time.Second, 20*time.Millisecond, "replica %d takes the new sign-in from the store", i)
	}
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "taking the sign-in needs no refresh")
}

// downCoordinator fails every call while down is set.
type downCoordinator struct {
	engine.MemoryCoordinator
	down atomic.Bool
}

var errUnreachable = errors.New("coordinator unreachable")

func (d *downCoordinator) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	if d.down.Load() {
		return engine.Tokens{}, 0, errUnreachable
	}
	return d.MemoryCoordinator.Load(ctx, family)
}

func (d *downCoordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	if d.down.Load() {
		return nil, errUnreachable
	}
	return d.MemoryCoordinator.Lock(ctx, family)
}

// A replica cut off from the coordinator does not refresh on its own: its requests fail with
// ErrRefreshFailed wrapping ErrClusterUnavailable, and once the coordinator is back it recovers
// without a restart.
func TestReplicaCutOffFromTheCoordinator(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &downCoordinator{}
	e := replicas(t, 1, srv, coord, srv.Login("ann"), engine.WithMaxRetries(0))[0]
	_, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.NoError(t, err, "a valid token needs no coordinator")

	coord.down.Store(true)
	got, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.NoError(t, err, "still no coordinator needed while the token is valid")
	assert.Equal(t, "ann", got.User)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	assert.ErrorIs(t, err, engine.ErrRefreshFailed)
	assert.ErrorIs(t, err, engine.ErrClusterUnavailable)
	assert.Zero(t, srv.Stats().RefreshCalls, "no refresh without the lock")

	coord.down.Store(false)
	got, err = engine.GetJSON[whoami](context.Background(), e, "/me")
	require.NoError(t, err)
	assert.Equal(t, "ann", got.User)
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
}

// Families in cluster mode: two replicas, each with the same two families, refresh each family
// once; the families never mix.
func TestReplicasShareFamilies(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &engine.MemoryCoordinator{}
	for _, key := range []string{"acme", "globex"} {
		_, err := coord.Commit(context.Background(), key, 0, srv.Login(key))
		require.NoError(t, err)
	}
	engines := replicas(t, 2, srv, coord, engine.Tokens{})
	srv.ExpireAccessTokens()
	var wrong atomic.Int64
	fanOut(400, func(i int) {
		key := []string{"acme", "globex"}[i%2]
		f, err := engines[(i/2)%2].Family(key)
		require.NoError(t, err)
		got, err := engine.GetJSON[whoami](context.Background(), f, "/me")
		if err != nil || got.User != key {
			wrong.Add(1)
		}
	})
	assert.Zero(t, wrong.Load())
	st := srv.Stats()
	assert.Equal(t, int64(2), st.RefreshCalls, "one refresh per family across both replicas")
	assert.Zero(t, st.ReuseDetected)
}

// WithCluster refuses nil and a second store.
func TestClusterConfigErrors(t *testing.T) {
	var ce *engine.ConfigError
	for name, opts := range map[string][]engine.Option{
		"nil":              {engine.WithCluster(nil)},
		"with TokenStore":  {engine.WithCluster(&engine.MemoryCoordinator{}), engine.WithTokenStore(&engine.MemoryStore{})},
		"with FamilyStore": {engine.WithCluster(&engine.MemoryCoordinator{}), engine.WithFamilyStore(&engine.MemoryFamilyStore{})},
	} {
		_, err := engine.New(append([]engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(engine.Tokens{Access: "a"})}, opts...)...)
		assert.ErrorAs(t, err, &ce, name)
	}
}

// countingCoordinator counts the calls made to it.
type countingCoordinator struct {
	engine.MemoryCoordinator
	calls atomic.Int64
}

func (c *countingCoordinator) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	c.calls.Add(1)
	return c.MemoryCoordinator.Load(ctx, family)
}

func (c *countingCoordinator) Commit(ctx context.Context, family string, v uint64, t engine.Tokens) (uint64, error) {
	c.calls.Add(1)
	return c.MemoryCoordinator.Commit(ctx, family, v, t)
}

func (c *countingCoordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	c.calls.Add(1)
	return c.MemoryCoordinator.Lock(ctx, family)
}

// While the token is valid, cluster mode costs the hot path nothing: no call to the coordinator,
// from the default family or from a family.
func TestClusterHotPathMakesNoCoordinatorCall(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	coord := &countingCoordinator{}
	_, err := coord.Commit(context.Background(), "acme", 0, srv.Login("acme"))
	require.NoError(t, err)
	e := replicas(t, 1, srv, coord, srv.Login("ann"))[0]
	f, err := e.Family("acme")
	require.NoError(t, err)
	_, err = engine.GetJSON[whoami](context.Background(), f, "/me") // activates the family: one Load
	require.NoError(t, err)
	before := coord.calls.Load()
	fanOut(500, func(i int) {
		var target engine.Target = e
		if i%2 == 1 {
			target = f
		}
		_, err := engine.GetJSON[whoami](context.Background(), target, "/me")
		assert.NoError(t, err)
	})
	assert.Equal(t, before, coord.calls.Load(), "no coordinator call while the tokens are valid")
}

// A coordinator that goes down right after New does not leave the replica without credentials: its
// token actor starts from what New read.
func TestCoordinatorDownRightAfterNew(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	coord := &downCoordinator{}
	e := replicas(t, 1, srv, coord, srv.Login("ann"))[0]
	coord.down.Store(true)
	got, err := engine.GetJSON[whoami](context.Background(), e, "/me")
	require.NoError(t, err, "a valid token needs no coordinator")
	assert.Equal(t, "ann", got.User)
}

// Sign-ins racing refreshes: 3 replicas, five rounds of an expiry under 300 concurrent requests
// while replica 0 signs the user in again. Under -race this runs SetTokens' commit, refreshes under
// the lock and Reload against each other; no spent refresh token is sent, and afterwards every
// replica serves the session. (The lock's own test is TestReplicasRefreshOncePerExpiry: with
// sign-ins this frequent, refreshes rarely overlap here.)
func TestSignInsRacingRefreshes(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true})
	engines := replicas(t, 3, srv, &engine.MemoryCoordinator{}, srv.Login("ann"))
	for range 5 {
		srv.ExpireAccessTokens()
		fanOut(301, func(i int) {
			if i == 300 {
				assert.NoError(t, engines[0].SetTokens(context.Background(), srv.Login("ann")))
				return
			}
			_, _ = engine.GetJSON[whoami](context.Background(), engines[i%3], "/me") // a 401 is allowed while racing
		})
	}
	assert.Zero(t, srv.Stats().ReuseDetected, "a spent refresh token was sent")
	assert.Zero(t, srv.Stats().Revocations)
	srv.ExpireAccessTokens()
	for i, e := range engines {
		require.Eventually(t, func() bool {
			got, err := engine.GetJSON[whoami](context.Background(), e, "/me")
			return err == nil && got.User == "ann"
		}, 10*time.Second, 20*time.Millisecond, "replica %d serves the session", i)
	}
	assert.Zero(t, srv.Stats().ReuseDetected)
}
