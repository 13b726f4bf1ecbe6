package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// flakyStore is a MemoryStore whose next saves fail (fail of them; -1: all), and that can delay
// saves.
type flakyStore struct {
	engine.MemoryStore
	mu    sync.Mutex // guards fail and delay
	fail  int
	delay time.Duration
	calls atomic.Int64
}

var errDiskFull = errors.New("disk full")

func (s *flakyStore) setFail(n int) { s.mu.Lock(); s.fail = n; s.mu.Unlock() }

func (s *flakyStore) Save(ctx context.Context, t engine.Tokens) error {
	s.calls.Add(1)
	s.mu.Lock()
	failing, delay := s.fail != 0, s.delay
	if s.fail > 0 {
		s.fail--
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if failing {
		return errDiskFull
	}
	return s.MemoryStore.Save(ctx, t)
}

func (s *flakyStore) tokens(t *testing.T) engine.Tokens {
	got, err := s.Load(context.Background())
	require.NoError(t, err)
	return got
}

func storeEngine(t *testing.T, srv *fakeapi.Server, store engine.TokenStore, opts ...engine.Option) *engine.Engine {
	t.Helper()
	e, err := engine.New(append([]engine.Option{engine.WithBaseURL(srv.URL()), engine.WithTokenStore(store),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh)}, opts...)...)
	require.NoError(t, err)
	return e
}

// A save that fails is reported at once (SaveFailed before TokenRefreshed, Health) and the request
// gets the new token from memory (the old refresh token is spent); the save is retried in the
// background until the store holds the rotated pair, which clears Health. A store that keeps
// failing keeps Health set; the next successful save clears it.
func TestFailedSaveIsRetriedThenReported(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	store := &flakyStore{}
	require.NoError(t, store.MemoryStore.Save(context.Background(), srv.Login("ada")))
	e := storeEngine(t, srv, store, engine.WithRefreshTimeout(time.Second))
	t.Cleanup(func() { closeEngine(t, e) })
	var order []string
	var mu sync.Mutex
	e.Subscribe(func(ev engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *engine.SaveFailed:
			assert.ErrorIs(t, ev.Err, engine.ErrSaveFailed)
			assert.ErrorIs(t, ev.Err, errDiskFull)
			order = append(order, "save failed")
		case *engine.TokenRefreshed:
			order = append(order, "refreshed")
		}
	})
	ctx := context.Background()

	store.setFail(3)
	srv.ExpireAccessTokens()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.Health() == nil }, 3*time.Second, 5*time.Millisecond, "retried in the background")
	assert.EqualValues(t, 4, store.calls.Load(), "three failures, then the save that succeeded")
	issued := srv.IssuedTokens()
	assert.Equal(t, issued[len(issued)-1], store.tokens(t).Refresh, "the store holds the rotated refresh token")

	store.setFail(-1)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err, "the new tokens are used from memory")
	require.ErrorIs(t, e.Health(), engine.ErrSaveFailed)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 4 }, 2*time.Second, 5*time.Millisecond)
	mu.Lock()
	assert.Equal(t, []string{"save failed", "refreshed", "save failed", "refreshed"}, order)
	mu.Unlock()

	store.setFail(0)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.NoError(t, e.Health(), "a later save succeeded")
	assert.Zero(t, srv.Stats().ReuseDetected)
}

// Close while a refresh call is under way: the call finishes, its rotated pair is saved (though
// Close began first), and an engine started later from the store refreshes without replaying a
// spent refresh token.
func TestCloseLetsARunningRefreshFinishAndSave(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	store := &flakyStore{}
	require.NoError(t, store.MemoryStore.Save(context.Background(), srv.Login("ada")))
	e := storeEngine(t, srv, store)
	release := srv.HoldTokenCalls()
	srv.ExpireAccessTokens()
	failed := make(chan error, 1)
	go func() {
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		failed <- err
	}()
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- e.Close(ctx)
	}()
	assert.ErrorIs(t, <-failed, engine.ErrClosed, "the parked request fails at once")
	time.Sleep(50 * time.Millisecond) // Close has begun; the refresh call still hangs
	release()
	require.NoError(t, <-closed)
	assert.Zero(t, engine.ActorCount(e))
	issued := srv.IssuedTokens()
	assert.Equal(t, issued[len(issued)-1], store.tokens(t).Refresh, "the refresh that ended after Close began was saved")

	e2 := storeEngine(t, srv, store)
	t.Cleanup(func() { closeEngine(t, e2) })
	srv.ExpireAccessTokens()
	_, err := engine.GetJSON[item](context.Background(), e2, "/items/1")
	require.NoError(t, err)
	assert.Zero(t, srv.Stats().ReuseDetected)
}

// Close returns by its context's deadline even when a refresh call hangs.
func TestCloseReturnsByItsDeadline(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngineNoCleanup(t, srv)
	srv.SetTokenHang(true)
	srv.ExpireAccessTokens()
	go func() { _, _ = engine.GetJSON[item](context.Background(), e, "/items/1") }()
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Close(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	require.Eventually(t, func() bool { return engine.ActorCount(e) == 0 }, 5*time.Second, 5*time.Millisecond)
}

func newEngineNoCleanup(t *testing.T, srv *fakeapi.Server) *engine.Engine {
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh))
	require.NoError(t, err)
	return e
}

// SetTokens saves through the token actor, in order with the refreshes' saves: however they
// interleave, the store ends with the pair the engine sends.
func TestSetTokensAndRefreshesSaveInOrder(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	store := &flakyStore{delay: 2 * time.Millisecond}
	require.NoError(t, store.MemoryStore.Save(context.Background(), srv.Login("ada")))
	e := storeEngine(t, srv, store)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round := range 20 {
		srv.ExpireAccessTokens()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = engine.GetJSON[item](ctx, e, "/items/1")
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(round%4) * time.Millisecond)
			assert.NoError(t, e.SetTokens(ctx, srv.Login("ada")))
		}()
		wg.Wait()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err)
		stored := store.tokens(t)
		before := srv.RequestsWithToken(stored.Access)
		_, err = engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err)
		require.Equal(t, before+1, srv.RequestsWithToken(stored.Access), "round %d: the store holds the pair in force", round)
	}
	assert.Zero(t, srv.Stats().ReuseDetected)
}

// refusingProxy forwards to target, but while refusing is set it closes every connection at once.
func refusingProxy(t *testing.T, target string) (*httptest.Server, *atomic.Bool) {
	u, err := url.Parse(target)
	require.NoError(t, err)
	var refusing atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(u)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refusing.Load() {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p, &refusing
}

// A token endpoint that refuses connections for about a second, with requests parked behind the
// refresh whose deadline is 5 s: the refresh keeps trying while they wait (not just the retry
// policy's few attempts), all of them succeed, and the endpoint sees one successful refresh.
func TestRefreshRetriesThroughAShortOutage(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	proxy, refusing := refusingProxy(t, srv.URL())
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(proxy.URL+"/oauth/token", engine.OAuth2Refresh))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	refusing.Store(true)
	time.AfterFunc(time.Second, func() { refusing.Store(false) })
	srv.ExpireAccessTokens()
	var ok atomic.Int64
	fanOut(50, func(int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		if assert.NoError(t, err) {
			ok.Add(1)
		}
	})
	assert.EqualValues(t, 50, ok.Load())
	assert.EqualValues(t, 1, srv.Stats().RefreshCalls, "one refresh reached the endpoint")
}

// An idle engine lets its token lapse instead of renewing it forever: with 1 s tokens and one
// request, then 3 s of silence, the only refresh is the one ahead of the used token's expiry (the
// token it brought was never used); the next request refreshes on its own and succeeds.
func TestIdleEngineLetsTheTokenLapse(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 3 s")
	}
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Second})
	e := newEngine(t, srv, srv.Login("ada"))
	ctx := context.Background()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	time.Sleep(3 * time.Second)
	assert.EqualValues(t, 1, srv.Stats().RefreshCalls, "renewed once ahead of the used token's expiry, then idle")
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.EqualValues(t, 2, srv.Stats().RefreshCalls)
}

// Tokens that live 10 ms or 1 s, used a little: the floor on a refreshed token's lifetime and the
// minimum interval between refreshes keep the token endpoint from being called in a loop.
func TestShortLivedTokensDoNotRefreshInALoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 4 s")
	}
	for _, ttl := range []time.Duration{10 * time.Millisecond, time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: ttl})
			e := newEngine(t, srv, srv.Login("ada"))
			ctx := context.Background()
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			require.NoError(t, err)
			time.Sleep(2 * time.Second)
			assert.LessOrEqual(t, srv.Stats().RefreshCalls, int64(2), "idle refreshes")
		})
	}
}

// panicOnRefreshSpan is a span processor that panics when a refresh span starts, while armed.
type panicOnRefreshSpan struct {
	sdktrace.SpanProcessor
	armed atomic.Bool
}

func (p *panicOnRefreshSpan) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if p.armed.Load() && s.Name() == "token refresh" {
		panic("span processor bug")
	}
}

// panickyHandler is a log handler that panics on every record.
type panickyHandler struct{ slog.Handler }

func (panickyHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panickyHandler) Handle(context.Context, slog.Record) error { panic("logger bug") }

// A span processor that panics when a refresh starts, with a logger that panics too: neither
// reaches the token actor (telemetry and logging are guarded), so the request is answered at
// once instead of hanging to its deadline, and the session goes on without replaying a refresh
// token.
func TestPanickingLoggerInTheRecoveryPath(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	proc := &panicOnRefreshSpan{SpanProcessor: sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter())}
	proc.armed.Store(true)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(proc))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := newEngine(t, srv, srv.Login("ada"), engine.WithTracerProvider(tp),
		engine.WithLogger(slog.New(panickyHandler{slog.DiscardHandler})))
	srv.ExpireAccessTokens()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 2*time.Second, "answered, not left to its deadline")

	proc.armed.Store(false)
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.EqualValues(t, 1, srv.Stats().RefreshCalls)
	assert.Zero(t, srv.Stats().ReuseDetected)
}
