package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// whoami is what the fake API's GET /me answers: whose token the request carried.
type whoami struct {
	User string `json:"user"`
}

// newFamilyEngine builds an engine that serves only families, stored in store, on srv.
func newFamilyEngine(t testing.TB, srv *fakeapi.Server, store engine.FamilyStore, opts ...engine.Option) *engine.Engine {
	t.Helper()
	all := append([]engine.Option{
		engine.WithBaseURL(srv.URL()),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithFamilyStore(store),
	}, opts...)
	e, err := engine.New(all...)
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

// seedFamilies signs in n users of srv, "tenant-0" …, and stores each one's first pair in a new
// store under the user's name.
func seedFamilies(t testing.TB, srv *fakeapi.Server, n int) *engine.MemoryFamilyStore {
	t.Helper()
	store := &engine.MemoryFamilyStore{}
	for i := range n {
		key := fmt.Sprintf("tenant-%d", i)
		require.NoError(t, store.Save(context.Background(), key, srv.Login(key)))
	}
	return store
}

// 1,000 families × 10 concurrent requests across one expiry: one refresh per family, each request
// answered with its own family's token, no reuse; with the bound at 16, never more than 16 refresh
// calls in flight at the token endpoint.
func TestThousandFamiliesRefreshOnceEach(t *testing.T) {
	const families, perFamily, bound = 1000, 10, 16
	srv := startAPI(t, fakeapi.Options{})
	store := seedFamilies(t, srv, families)
	e := newFamilyEngine(t, srv, store, engine.WithMaxConcurrentRefreshes(bound))
	srv.SetTokenDelay(2 * time.Millisecond) // refreshes overlap: the bound has something to bound

	fams := make([]*engine.Family, families)
	for i := range fams {
		f, err := e.Family(fmt.Sprintf("tenant-%d", i))
		require.NoError(t, err)
		fams[i] = f
	}
	var refreshed atomic.Int64
	e.Subscribe(func(ev engine.Event) {
		if r, ok := ev.(*engine.TokenRefreshed); ok && r.Family != "" {
			refreshed.Add(1)
		}
	})
	srv.ExpireAccessTokens() // every family's token is now refused: each must refresh once

	var wrong, failed atomic.Int64
	sem := make(chan struct{}, 100) // 100 families (1,000 requests) at once keeps the sockets bounded
	var wg sync.WaitGroup
	for _, f := range fams {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fanOut(perFamily, func(int) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				got, err := engine.GetJSON[whoami](ctx, f, "/me")
				switch {
				case err != nil:
					if failed.Add(1) < 5 {
						t.Log(err)
					}
				case got.User != f.Key():
					wrong.Add(1)
				}
			})
		}()
	}
	wg.Wait()

	st := srv.Stats()
	assert.Zero(t, failed.Load(), "requests failed")
	assert.Zero(t, wrong.Load(), "requests answered with another family's token")
	assert.Equal(t, int64(families), st.RefreshCalls, "one refresh per family")
	assert.Zero(t, st.Revocations, "reuse revocations")
	assert.Zero(t, st.ReuseDetected)
	assert.LessOrEqual(t, st.PeakRefreshes, int64(bound), "refresh calls in flight at once")
	assert.Greater(t, st.PeakRefreshes, int64(1), "the refreshes did overlap")
	require.Eventually(t, func() bool { return refreshed.Load() == families }, 5*time.Second, 10*time.Millisecond,
		"one TokenRefreshed per family, got %d", refreshed.Load())
}

// A passivated family starts again from the store with the refresh token it rotated: its next
// refresh sends that one, and the server sees no reuse. The idle family holds no actor meanwhile.
func TestPassivatedFamilyKeepsItsRotation(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := seedFamilies(t, srv, 1)
	e := newFamilyEngine(t, srv, store, engine.WithFamilyIdleTimeout(20*time.Millisecond))
	f, err := e.Family("tenant-0")
	require.NoError(t, err)
	ctx := context.Background()

	for round := 1; round <= 3; round++ {
		srv.ExpireAccessTokens()
		got, err := engine.GetJSON[whoami](ctx, f, "/me")
		require.NoError(t, err, "round %d", round)
		assert.Equal(t, "tenant-0", got.User)
		require.Eventually(t, func() bool { return engine.ActorCount(e) == 2 }, 5*time.Second, 5*time.Millisecond,
			"round %d: the family's token actor is passivated (the supervisor and the default family's remain)", round)
	}
	st := srv.Stats()
	assert.Equal(t, int64(3), st.RefreshCalls)
	assert.Zero(t, st.ReuseDetected, "a reactivated family replayed a spent refresh token")
	assert.Zero(t, st.Revocations)
}

// countingFamilyStore counts the loads of families (not of the default family, key ""): one per
// activation.
type countingFamilyStore struct {
	*engine.MemoryFamilyStore
	loads atomic.Int64
}

func (s *countingFamilyStore) Load(ctx context.Context, key string) (engine.Tokens, error) {
	if key != "" {
		s.loads.Add(1)
	}
	return s.MemoryFamilyStore.Load(ctx, key)
}

// A family in use is not passivated, however long it stays in use: 50 goroutines, each pausing a few
// milliseconds between requests (so that there are moments with none under way), keep it busy well
// past many idle periods, and it is activated (read from the store) once.
func TestFamilyInUseIsNotPassivated(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := &countingFamilyStore{MemoryFamilyStore: seedFamilies(t, srv, 1)}
	// 30 ms: a real lull of that long would be idleness, but 50 busy goroutines never leave one.
	e := newFamilyEngine(t, srv, store, engine.WithFamilyIdleTimeout(30*time.Millisecond))
	f, err := e.Family("tenant-0")
	require.NoError(t, err)
	deadline := time.Now().Add(300 * time.Millisecond)
	fanOut(50, func(int) {
		for time.Now().Before(deadline) {
			_, err := engine.GetJSON[whoami](context.Background(), f, "/me")
			assert.NoError(t, err)
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond) // moments with no request at all
		}
	})
	assert.Equal(t, int64(1), store.loads.Load(), "activated once: never passivated while in use")
	assert.Equal(t, 3, engine.ActorCount(e), "the family's token actor is still there")
}

// One family's session ending touches no other family: its requests fail fast with
// ErrSessionExpired, its events carry its key, and the other families' requests succeed.
func TestFamiliesAreIsolated(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := seedFamilies(t, srv, 2)
	require.NoError(t, store.Save(context.Background(), "tenant-1", engine.Tokens{Access: "stale", Refresh: "not-a-refresh-token"}))
	e := newFamilyEngine(t, srv, store)
	good, err := e.Family("tenant-0")
	require.NoError(t, err)
	bad, err := e.Family("tenant-1")
	require.NoError(t, err)

	var mu sync.Mutex
	var goodEvents, badEvents []engine.Event
	good.Subscribe(func(ev engine.Event) { mu.Lock(); goodEvents = append(goodEvents, ev); mu.Unlock() })
	bad.Subscribe(func(ev engine.Event) { mu.Lock(); badEvents = append(badEvents, ev); mu.Unlock() })

	fanOut(50, func(i int) {
		if i%2 == 0 {
			got, err := engine.GetJSON[whoami](context.Background(), good, "/me")
			assert.NoError(t, err)
			assert.Equal(t, "tenant-0", got.User)
			return
		}
		_, err := engine.GetJSON[whoami](context.Background(), bad, "/me")
		assert.ErrorIs(t, err, engine.ErrSessionExpired)
	})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(badEvents) == 1 }, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, goodEvents, "the good family needed no refresh and heard nothing of the other")
	se, ok := badEvents[0].(*engine.SessionExpired)
	require.True(t, ok, "%T", badEvents[0])
	assert.Equal(t, "tenant-1", se.Family)
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "one refresh attempt, for the bad family only")
}

// SetTokens on a family installs and saves under its key; the default family is untouched.
func TestFamilySetTokensSavesUnderItsKey(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := &engine.MemoryFamilyStore{}
	e := newFamilyEngine(t, srv, store)
	f, err := e.Family("acme")
	require.NoError(t, err)

	_, err = engine.GetJSON[whoami](context.Background(), f, "/me")
	assert.ErrorIs(t, err, engine.ErrSessionExpired, "a family with nothing stored has no session")

	pair := srv.Login("acme")
	require.NoError(t, f.SetTokens(context.Background(), pair))
	got, err := engine.GetJSON[whoami](context.Background(), f, "/me")
	require.NoError(t, err)
	assert.Equal(t, "acme", got.User)
	stored, err := store.Load(context.Background(), "acme")
	require.NoError(t, err)
	assert.Equal(t, pair, stored)
	def, err := store.Load(context.Background(), "")
	require.NoError(t, err)
	assert.Zero(t, def, "the default family stores nothing")
	assert.NoError(t, f.Health())

	err = f.SetTokens(context.Background(), engine.Tokens{Access: "bad\ntoken"})
	var ce *engine.ConfigError
	assert.ErrorAs(t, err, &ce, "a pair that cannot be sent is refused")
}

// flakyFamilyStore fails Load while down is set.
type flakyFamilyStore struct {
	engine.MemoryFamilyStore
	down atomic.Bool
}

var errDown = errors.New("store unreachable")

func (s *flakyFamilyStore) Load(ctx context.Context, key string) (engine.Tokens, error) {
	if s.down.Load() {
		return engine.Tokens{}, errDown
	}
	return s.MemoryFamilyStore.Load(ctx, key)
}

// A store outage when a family starts fails its requests with a *FamilyError wrapping the store's
// error, not with an expired session; once the store is back the family works.
func TestFamilyStoreOutageAtActivation(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := &flakyFamilyStore{}
	require.NoError(t, store.Save(context.Background(), "t", srv.Login("t")))
	e := newFamilyEngine(t, srv, store)
	f, err := e.Family("t")
	require.NoError(t, err)

	store.down.Store(true)
	_, err = engine.GetJSON[whoami](context.Background(), f, "/me")
	var fe *engine.FamilyError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "t", fe.Key)
	assert.ErrorIs(t, err, errDown)
	assert.NotErrorIs(t, err, engine.ErrSessionExpired)

	store.down.Store(false)
	got, err := engine.GetJSON[whoami](context.Background(), f, "/me")
	require.NoError(t, err)
	assert.Equal(t, "t", got.User)
}

// A RefreshFunc learns which family it refreshes from FamilyKey.
func TestRefreshFuncKnowsTheFamily(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	var mu sync.Mutex
	var seen []string
	refresh := func(ctx context.Context, cur engine.Tokens) (engine.Tokens, error) {
		key, ok := engine.FamilyKey(ctx)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%q %v", key, ok))
		mu.Unlock()
		return srv.Login(key), nil
	}
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithRefreshFunc(refresh), engine.WithFamilyStore(&engine.MemoryFamilyStore{}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	f, err := e.Family("globex")
	require.NoError(t, err)
	got, err := engine.GetJSON[whoami](context.Background(), f, "/me")
	require.NoError(t, err)
	assert.Equal(t, "globex", got.User)
	assert.Equal(t, []string{`"globex" true`}, seen)
}

// Bad keys, a public engine and a closed engine give clear errors; the families' options refuse
// values that mean nothing.
func TestFamilyErrors(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	e := newFamilyEngine(t, srv, &engine.MemoryFamilyStore{})
	var ce *engine.ConfigError
	for _, key := range []string{"", strings.Repeat("k", engine.MaxFamilyKeyBytes+1)} {
		_, err := e.Family(key)
		assert.ErrorAs(t, err, &ce, "key of %d bytes", len(key))
	}
	_, err := e.Family(strings.Repeat("k", engine.MaxFamilyKeyBytes))
	assert.NoError(t, err)

	pub, err := engine.NewPublic()
	require.NoError(t, err)
	_, err = pub.Family("x")
	assert.ErrorAs(t, err, &ce)
	require.NoError(t, pub.Close(context.Background()))

	for name, opt := range map[string]engine.Option{
		"WithMaxConcurrentRefreshes(0)": engine.WithMaxConcurrentRefreshes(0),
		"WithFamilyIdleTimeout(0)":      engine.WithFamilyIdleTimeout(0),
		"WithFamilyStore(nil)":          engine.WithFamilyStore(nil),
	} {
		_, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("x")), opt)
		assert.ErrorAs(t, err, &ce, name)
	}
	for _, opt := range []engine.Option{engine.WithFamilyStore(&engine.MemoryFamilyStore{}),
		engine.WithMaxConcurrentRefreshes(8), engine.WithFamilyIdleTimeout(time.Second)} {
		_, err = engine.NewPublic(opt)
		assert.ErrorAs(t, err, &ce, "a public engine has no families")
	}

	e2, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithFamilyStore(&engine.MemoryFamilyStore{}))
	require.NoError(t, err)
	f, err := e2.Family("a")
	require.NoError(t, err)
	closeEngine(t, e2)
	_, err = e2.Family("b")
	assert.ErrorIs(t, err, engine.ErrClosed)
	_, err = engine.GetJSON[whoami](context.Background(), f, "/me")
	assert.ErrorIs(t, err, engine.ErrClosed)
	assert.ErrorIs(t, f.SetTokens(context.Background(), srv.Login("a")), engine.ErrClosed)
}

// Close stops every family's token actor, while their requests run and passivations happen.
func TestCloseStopsEveryFamily(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := seedFamilies(t, srv, 200)
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithFamilyStore(store), engine.WithFamilyIdleTimeout(time.Millisecond))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 200 {
		f, err := e.Family(fmt.Sprintf("tenant-%d", i))
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, err := engine.GetJSON[whoami](context.Background(), f, "/me")
				if err != nil {
					assert.ErrorIs(t, err, engine.ErrClosed)
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	closeEngine(t, e)
	wg.Wait()
}

// A family's generations go on counting across passivations: subscribers that order events by
// (Family, Generation) never see one twice.
func TestFamilyGenerationsSurvivePassivation(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	e := newFamilyEngine(t, srv, &engine.MemoryFamilyStore{}, engine.WithFamilyIdleTimeout(10*time.Millisecond))
	f, err := e.Family("acme")
	require.NoError(t, err)
	var mu sync.Mutex
	var gens []uint64
	f.Subscribe(func(ev engine.Event) {
		if r, ok := ev.(*engine.TokensReplaced); ok {
			mu.Lock()
			gens = append(gens, r.Generation)
			mu.Unlock()
		}
	})
	for range 3 {
		require.NoError(t, f.SetTokens(context.Background(), srv.Login("acme")))
		// Left: the supervisor, the default family's token actor and the subscriber.
		require.Eventually(t, func() bool { return engine.ActorCount(e) == 3 }, 5*time.Second, 5*time.Millisecond, "passivated")
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(gens) == 3 }, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Less(t, gens[0], gens[1])
	assert.Less(t, gens[1], gens[2])
}

// Grants whose one token serves the default family only refuse families; a family's failure names
// it to the error handler; a family keyed "\x00" hears only its own events.
func TestFamilyEdges(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	var ce *engine.ConfigError
	cc, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithClientCredentials(engine.ClientCredentials{TokenURL: srv.OAuth2TokenURL(), ClientID: "c", ClientSecret: "s"}))
	require.NoError(t, err)
	_, err = cc.Family("tenant")
	assert.ErrorAs(t, err, &ce, "client credentials serve one family")
	closeEngine(t, cc)

	var failed sync.Map
	e := newFamilyEngine(t, srv, &engine.MemoryFamilyStore{}, engine.WithErrorHandler(func(_ context.Context, f *engine.Failure) {
		failed.Store(f.Family, f.Err)
	}))
	f, err := e.Family("acme")
	require.NoError(t, err)
	_, err = engine.GetJSON[whoami](context.Background(), f, "/me")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	got, ok := failed.Load("acme")
	require.True(t, ok, "the handler is told which family failed")
	assert.ErrorIs(t, got.(error), engine.ErrSessionExpired)

	odd, err := e.Family("\x00")
	require.NoError(t, err)
	var heard, retries atomic.Int64
	odd.Subscribe(func(engine.Event) { heard.Add(1) })
	e.Subscribe(func(ev engine.Event) {
		if _, ok := ev.(*engine.RetryScheduled); ok {
			retries.Add(1)
		}
	})
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 1)
	require.NoError(t, f.SetTokens(context.Background(), srv.Login("acme")))
	_, err = engine.GetJSON[whoami](context.Background(), f, "/me") // a retry: a RetryScheduled event
	require.NoError(t, err)
	require.Eventually(t, func() bool { return retries.Load() == 1 }, 5*time.Second, time.Millisecond, "the engine heard the retry")
	time.Sleep(20 * time.Millisecond) // the odd family's subscriber would have had it by now
	assert.Zero(t, heard.Load(), "another family's events and the retry events are not the \x00 family's")
}

// blockingStore's Load waits until release is closed, ignoring its context.
type blockingStore struct {
	engine.MemoryFamilyStore
	release chan struct{}
}

func (s *blockingStore) Load(ctx context.Context, key string) (engine.Tokens, error) {
	if key != "" {
		<-s.release
	}
	return s.MemoryFamilyStore.Load(ctx, key)
}

// A store that hangs when a family starts holds no request past its deadline, and not Close past
// its own.
func TestHangingStoreAtActivationHoldsNobody(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	store := &blockingStore{release: make(chan struct{})}
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithFamilyStore(store), engine.WithRefreshTimeout(30*time.Second))
	require.NoError(t, err)
	f, err := e.Family("acme")
	require.NoError(t, err)
	fanOut(2, func(int) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := engine.GetJSON[whoami](ctx, f, "/me")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = e.Close(ctx)
	assert.NoError(t, ctx.Err(), "Close returned by its deadline")
	close(store.release) // only now: everything above returned while the store hung
	require.Eventually(t, func() bool { return engine.ActorCount(e) == 0 }, 5*time.Second, 5*time.Millisecond)
}
