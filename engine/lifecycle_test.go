package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Tokens that live 2 s, under steady traffic for 5 s: the engine refreshes ahead of expiry, so the
// API never answers 401.
func TestProactiveRefreshAvoids401s(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 5 s")
	}
	srv := startAPI(t, fakeapi.Options{AccessTTL: 2 * time.Second})
	e := newEngine(t, srv, srv.Login("ada"))
	events := subscribe(e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	fanOut(8, func(int) {
		for ctx.Err() == nil {
			if _, err := engine.GetJSON[item](ctx, e, "/items/1"); err == nil {
				ok.Add(1)
			} else if ctx.Err() == nil {
				failed.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	st := srv.Stats()
	assert.Zero(t, st.Unauthorized, "no request met an expired token")
	assert.Zero(t, failed.Load())
	assert.Greater(t, ok.Load(), int64(100))
	assert.GreaterOrEqual(t, st.RefreshCalls, int64(3), "about one refresh a second")
	assert.Eventually(t, func() bool {
		return events.count(func(ev engine.Event) bool {
			r, isR := ev.(*engine.TokenRefreshed)
			return isR && r.Proactive
		}) >= 3
	}, time.Second, 5*time.Millisecond)
}

// Close while 100 requests are in flight: all return ErrClosed promptly, and nothing of the engine is
// left running (goleak in TestMain; actors counted in closeEngine).
func TestCloseFailsInFlightRequests(t *testing.T) {
	for _, tc := range callerContexts() {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
				engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
			require.NoError(t, err)
			srv.SetAPIDelay(time.Minute)
			ctxFor, stop := tc.make()
			defer stop()

			results := make(chan error, 100)
			returned := make(chan time.Time, 100)
			for i := range 100 {
				go func() {
					_, err := engine.GetJSON[item](ctxFor(), e, fmt.Sprintf("/items/%d", i))
					returned <- time.Now()
					results <- err
				}()
			}
			require.Eventually(t, func() bool { return srv.Stats().APIRequests == 100 }, 5*time.Second, time.Millisecond)

			closing := time.Now()
			closeEngine(t, e)
			for range 100 {
				err := <-results
				assert.ErrorIs(t, err, engine.ErrClosed)
				assert.Less(t, (<-returned).Sub(closing), 500*time.Millisecond)
			}
			// Closed means closed: new requests fail at once, and a second Close is harmless.
			_, err = engine.GetJSON[item](ctxFor(), e, "/items/1")
			assert.ErrorIs(t, err, engine.ErrClosed)
			assert.NoError(t, e.Close(context.Background()))
			assert.NotPanics(t, func() { e.Subscribe(func(engine.Event) {})() })
		})
	}
}

// callerContext is a kind of context callers send requests on: the engine gives each kind its own
// path (a shared life for contexts that can never end; a cancellation node, shared by the requests
// in flight on one context, for those that can).
type callerContext struct {
	name string
	// make returns a function giving the context of each request, and what ends them.
	make func() (func() context.Context, func())
}

func callerContexts() []callerContext {
	return []callerContext{
		{"context.Background", func() (func() context.Context, func()) {
			return context.Background, func() {}
		}},
		{"one cancellable context for all", func() (func() context.Context, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			return func() context.Context { return ctx }, cancel
		}},
		{"a deadline of its own each", func() (func() context.Context, func()) {
			var mu sync.Mutex
			var cancels []context.CancelFunc
			return func() context.Context {
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					mu.Lock()
					cancels = append(cancels, cancel)
					mu.Unlock()
					return ctx
				}, func() {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range cancels {
						c()
					}
				}
		}},
	}
}

// Requests parked behind a refresh when Close comes fail with ErrClosed at once. Close lets the
// refresh call under way finish (here it hangs) until its own deadline, then cuts it short and
// returns by that deadline.
func TestCloseFailsParkedRequests(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
	require.NoError(t, err)
	srv.SetTokenHang(true)
	srv.ExpireAccessTokens()
	results := make(chan error, 50)
	for i := range 50 {
		go func() {
			_, err := engine.GetJSON[item](context.Background(), e, fmt.Sprintf("/items/%d", i))
			results <- err
		}()
	}
	// The first 401 starts the refresh; the others park, after a 401 or before sending at all.
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	closing := time.Now()
	assert.ErrorIs(t, e.Close(ctx), context.DeadlineExceeded, "the hanging refresh call was cut short")
	assert.Less(t, time.Since(closing), time.Second)
	for range 50 {
		assert.ErrorIs(t, <-results, engine.ErrClosed)
	}
	require.Eventually(t, func() bool { return engine.ActorCount(e) == 0 }, 5*time.Second, 5*time.Millisecond)
}

// Bad configuration is reported by New with a *ConfigError naming the option, never a panic.
func TestBadConfiguration(t *testing.T) {
	tokens := engine.Tokens{Access: "a", Refresh: "r"}
	for _, tc := range []struct {
		name   string
		public bool
		opts   []engine.Option
		option string
	}{
		{"no base URL", false, []engine.Option{engine.WithTokens(tokens)}, "WithBaseURL"},
		{"relative base URL", false, []engine.Option{engine.WithBaseURL("/api"), engine.WithTokens(tokens)}, "WithBaseURL"},
		{"ftp base URL", false, []engine.Option{engine.WithBaseURL("ftp://example.test"), engine.WithTokens(tokens)}, "WithBaseURL"},
		{"no credentials", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1")}, "WithTokens"},
		{"endpoint without refresh token", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"),
			engine.WithTokens(engine.Tokens{Access: "a"}), engine.WithTokenEndpoint("http://127.0.0.1:1/token", engine.OAuth2Refresh)}, "WithTokenEndpoint"},
		{"unknown format", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(tokens),
			engine.WithTokenEndpoint("http://127.0.0.1:1/token", engine.RefreshFormat(42))}, "WithTokenEndpoint"},
		{"endpoint and refresh func", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(tokens),
			engine.WithTokenEndpoint("http://127.0.0.1:1/token", engine.OAuth2Refresh),
			engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil })}, "WithRefreshFunc"},
		{"bad origin", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(tokens), engine.WithOrigins("nope")}, "WithOrigins"},
		{"negative timeout", false, []engine.Option{engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(tokens), engine.WithRefreshTimeout(-time.Second)}, "WithRefreshTimeout"},
		{"public with tokens", true, []engine.Option{engine.WithTokens(tokens)}, "WithTokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			var err error
			require.NotPanics(t, func() {
				if tc.public {
					e, err = engine.NewPublic(tc.opts...)
				} else {
					e, err = engine.New(tc.opts...)
				}
			})
			require.Nil(t, e)
			require.ErrorIs(t, err, engine.ErrInvalidConfig)
			var ce *engine.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.option, ce.Option)
			assert.Contains(t, err.Error(), tc.option)
		})
	}
}

// A token endpoint that streams 64 MiB of unterminated JSON: each refresh call fails fast, reading
// no more than the limit; a malformed answer is a passing failure, not the end of the session, and
// the credentials are kept. It is not retried at once: the server may have spent the refresh token
// it was sent, and a replay would trip its reuse detection.
func TestGarbageTokenAnswerFailsFastWithBoundedMemory(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	srv.SetTokenGarbage(64 << 20)
	srv.ExpireAccessTokens()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	took := time.Since(start)
	runtime.ReadMemStats(&after)

	require.ErrorIs(t, err, engine.ErrRefreshFailed)
	require.NotErrorIs(t, err, engine.ErrSessionExpired)
	assert.ErrorIs(t, err, engine.ErrMalformedTokenAnswer)
	assert.Less(t, took, 2*time.Second)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated while failing")
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "a refused answer is not replayed")
}

// A slow subscriber delays only itself: refreshes and requests go on while it sleeps.
func TestSlowSubscriberDoesNotStallTheTokenActor(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	release := make(chan struct{})
	var got atomic.Int64
	e.Subscribe(func(engine.Event) {
		<-release
		got.Add(1)
	})
	fast := subscribe(e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := 1; round <= 3; round++ {
		srv.ExpireAccessTokens()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err, "round %d", round)
	}
	assert.Equal(t, int64(3), srv.Stats().RefreshCalls)
	assert.Eventually(t, func() bool { return fast.count(isRefreshed) == 3 }, 2*time.Second, 5*time.Millisecond)
	assert.Zero(t, got.Load())
	close(release)
	assert.Eventually(t, func() bool { return got.Load() == 3 }, 2*time.Second, 5*time.Millisecond)
}

// A subscriber that panics is logged and keeps receiving later events.
func TestPanickingSubscriberKeepsWorking(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	var calls atomic.Int64
	e.Subscribe(func(engine.Event) {
		calls.Add(1)
		panic("boom")
	})
	ctx := context.Background()
	for range 2 {
		srv.ExpireAccessTokens()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err)
	}
	assert.Eventually(t, func() bool { return calls.Load() == 2 }, 2*time.Second, 5*time.Millisecond)
}

// With a TokenStore, the rotated pair is saved before requests are released, so an engine started
// later from the store refreshes with a live refresh token (no reuse detected).
func TestTokenStoreSurvivesRestart(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	store := &countingStore{}
	require.NoError(t, store.Save(context.Background(), srv.Login("ada")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for run := 1; run <= 3; run++ {
		e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenStore(store),
			engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
		require.NoError(t, err)
		srv.ExpireAccessTokens()
		_, err = engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err, "run %d", run)
		closeEngine(t, e)
	}
	st := srv.Stats()
	assert.Equal(t, int64(3), st.RefreshCalls)
	assert.Zero(t, st.ReuseDetected)
	assert.Equal(t, int64(4), store.saves.Load(), "the seed plus one save per refresh")
}

// countingStore is a MemoryStore that counts its saves.
type countingStore struct {
	engine.MemoryStore
	saves atomic.Int64
}

func (s *countingStore) Save(ctx context.Context, t engine.Tokens) error {
	s.saves.Add(1)
	return s.MemoryStore.Save(ctx, t)
}

// Without a store, an engine restarted with the original pair replays a spent refresh token: the
// server detects the reuse, revokes the family, and the engine reports the session expired. This is
// the failure the store prevents, and it shows the fake server's reuse detection works.
func TestReplayedRefreshTokenIsDetected(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	first := srv.Login("ada")
	ctx := context.Background()
	for run := 1; run <= 2; run++ {
		e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(first),
			engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
		require.NoError(t, err)
		srv.ExpireAccessTokens()
		_, err = engine.GetJSON[item](ctx, e, "/items/1")
		if run == 1 {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, engine.ErrSessionExpired)
		}
		closeEngine(t, e)
	}
	assert.Equal(t, int64(1), srv.Stats().ReuseDetected)
	assert.Equal(t, int64(1), srv.Stats().Revocations)
}

// A user-supplied refresh function: one call per storm; a passing error keeps the session, a
// permanent one ends it.
func TestRefreshFunc(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	tokens := srv.Login("ada")
	var calls atomic.Int64
	var failWith atomic.Pointer[error]
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(tokens),
		engine.WithRefreshFunc(func(ctx context.Context, cur engine.Tokens) (engine.Tokens, error) {
			calls.Add(1)
			if err := failWith.Load(); err != nil {
				return engine.Tokens{}, *err
			}
			return srv.Login("ada"), nil
		}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx := context.Background()

	srv.ExpireAccessTokens()
	fanOut(100, func(i int) { _, _ = engine.GetJSON[item](ctx, e, "/items/1") })
	assert.Equal(t, int64(1), calls.Load())

	transient := errors.New("identity provider unreachable")
	failWith.Store(&transient)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.ErrorIs(t, err, engine.ErrRefreshFailed)
	require.NotErrorIs(t, err, engine.ErrSessionExpired)

	final := fmt.Errorf("user disabled: %w", engine.ErrSessionExpired)
	failWith.Store(&final)
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	assert.Equal(t, int64(3), calls.Load())
}

// A transient failure of the token endpoint (503) is retried while the waiting request's deadline
// allows, whatever the retry policy's MaxRetries: two failures, then the third call succeeds. One
// that outlasts the deadline fails the request with ErrRefreshFailed and keeps the session.
func TestTransientRefreshFailureKeepsTheSession(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond}))
	srv.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`, 2)
	srv.ExpireAccessTokens()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.Equal(t, int64(3), srv.Stats().RefreshCalls, "two failed calls and the one that succeeded")

	srv.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`, -1)
	srv.ExpireAccessTokens()
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	_, err = engine.GetJSON[item](short, e, "/items/1")
	require.ErrorIs(t, err, engine.ErrRefreshFailed)
	var te *engine.TokenEndpointError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, http.StatusServiceUnavailable, te.Status)

	srv.SetTokenFailure(0, "", 0)
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err, "the session was kept")
}

// A caller still reading a response body when Close comes gets an error wrapping ErrClosed, whatever
// its context, and whether it reads with Read (io.ReadAll) or lets io.Copy use WriteTo.
func TestCloseCutsStreamingBodies(t *testing.T) {
	reads := map[string]func(io.Reader) error{
		"io.ReadAll": func(r io.Reader) error { _, err := io.ReadAll(r); return err },
		"io.Copy":    func(r io.Reader) error { _, err := io.Copy(&bytes.Buffer{}, r); return err },
	}
	for _, tc := range callerContexts() {
		for name, read := range reads {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				flushed := make(chan struct{})
				s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = w.Write([]byte("first part"))
					w.(http.Flusher).Flush()
					close(flushed)
					<-r.Context().Done() // the rest never comes
				}))
				t.Cleanup(s.Close)
				e, err := engine.New(engine.WithBaseURL(s.URL), engine.WithTokens(engine.Tokens{Access: "a"}))
				require.NoError(t, err)
				ctxFor, stop := tc.make()
				defer stop()
				req, err := http.NewRequestWithContext(ctxFor(), http.MethodGet, s.URL+"/stream", nil)
				require.NoError(t, err)
				resp, err := e.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				<-flushed
				buf := make([]byte, 10)
				_, err = io.ReadFull(resp.Body, buf)
				require.NoError(t, err)
				closeEngine(t, e)
				assert.ErrorIs(t, read(resp.Body), engine.ErrClosed)
			})
		}
	}
}

// After Close, every call returns at once with ErrClosed, even with a context that never ends.
func TestAfterCloseNothingWaits(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
	require.NoError(t, err)
	closeEngine(t, e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.ErrorIs(t, e.SetTokens(context.Background(), srv.Login("ada")), engine.ErrClosed)
		_, err := e.Client().Get(srv.URL() + "/items/1")
		assert.ErrorIs(t, err, engine.ErrClosed)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a call after Close is still waiting")
	}
}

// Close(nil) closes the engine like Close(context.Background()), rather than panicking in the
// middle of a shutdown (a nil ctx is an easy mistake in a deferred call).
func TestCloseWithNilContext(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")))
	require.NoError(t, err)
	require.NoError(t, e.Close(nil))
	_, err = engine.GetJSON[item](context.Background(), e, "/items/1")
	assert.ErrorIs(t, err, engine.ErrClosed)
	assert.Equal(t, 0, engine.ActorCount(e))
}
