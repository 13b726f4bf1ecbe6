package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// sendLog is a real transport that notes every physical send: when, and the Idempotency-Key it
// carried.
type sendLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	at   []time.Time
	keys []string
}

func newSendLog() *sendLog {
	return &sendLog{base: &http.Transport{MaxIdleConnsPerHost: 256}}
}

func (l *sendLog) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/oauth/token" {
		l.mu.Lock()
		l.at = append(l.at, time.Now())
		l.keys = append(l.keys, req.Header.Get("Idempotency-Key"))
		l.mu.Unlock()
	}
	return l.base.RoundTrip(req)
}

func (l *sendLog) sends() ([]time.Time, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...), append([]string(nil), l.keys...)
}

func (l *sendLog) close() { l.base.(*http.Transport).CloseIdleConnections() }

// retryEngine is an engine on the fake API whose attempts go through a sendLog.
func retryEngine(t *testing.T, srv *fakeapi.Server, opts ...engine.Option) (*engine.Engine, *sendLog) {
	t.Helper()
	log := newSendLog()
	t.Cleanup(log.close)
	return newEngine(t, srv, srv.Login("ada"), append([]engine.Option{engine.WithTransport(log)}, opts...)...), log
}

func isRetry(ev engine.Event) bool { _, ok := ev.(*engine.RetryScheduled); return ok }

// A 503 with Retry-After: 1, twice: three attempts, each at least a second after the one before,
// and the caller sees the success.
func TestRetryAfterSecondsSpacesTheAttempts(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv)
	events := subscribe(e)
	srv.SetAPIFailure(http.StatusServiceUnavailable, "1", 2)

	got, err := engine.GetJSON[item](context.Background(), e, "/items/7")
	require.NoError(t, err)
	assert.Equal(t, "7", got.ID)

	at, _ := log.sends()
	require.Len(t, at, 3)
	for i := 1; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), time.Second, "attempt %d came early", i+1)
	}
	require.Eventually(t, func() bool { return events.count(isRetry) == 2 }, time.Second, 5*time.Millisecond)
	events.mu.Lock()
	defer events.mu.Unlock()
	var attempts []int
	for _, ev := range events.events {
		if r, ok := ev.(*engine.RetryScheduled); ok {
			attempts = append(attempts, r.Attempt)
			assert.Equal(t, "status_503", r.Reason)
			assert.Equal(t, time.Second, r.Delay)
			assert.Equal(t, http.MethodGet, r.Method)
		}
	}
	assert.Equal(t, []int{2, 3}, attempts)
}

// A 429 whose Retry-After is an HTTP-date: the retry is sent at that date, not before.
func TestRetryAfterDateIsHonoured(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv)
	when := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second) // HTTP-dates have whole seconds
	srv.SetAPIFailure(http.StatusTooManyRequests, when.Format(http.TimeFormat), 1)

	_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	at, _ := log.sends()
	require.Len(t, at, 2)
	assert.False(t, at[1].Before(when), "retried at %v, before the server's date %v", at[1], when)
	assert.Less(t, at[1].Sub(when), time.Second, "retried long after the server's date")
}

// A Retry-After longer than MaxRetryAfter is not waited for (the host's cool-down is cut to the
// cap); one that ends after the caller's deadline fails at once with a typed error saying when to
// come back.
func TestRetryAfterIsCappedAndBoundedByTheDeadline(t *testing.T) {
	t.Run("above the cap", func(t *testing.T) {
		srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
		e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{MaxRetryAfter: 300 * time.Millisecond}))
		srv.SetAPIFailure(http.StatusServiceUnavailable, "3600", 1)
		asked := time.Now()
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		var ae *engine.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, http.StatusServiceUnavailable, ae.Status)
		assert.Equal(t, time.Hour, ae.RetryAfter)
		assert.Less(t, time.Since(asked), 250*time.Millisecond, "a server must not park the caller")
		_, err = engine.GetJSON[item](context.Background(), e, "/items/1") // held by the capped cool-down
		require.NoError(t, err)
		at, _ := log.sends()
		require.Len(t, at, 2)
		assert.GreaterOrEqual(t, at[1].Sub(at[0]), 300*time.Millisecond)
		assert.Less(t, at[1].Sub(at[0]), 10*time.Second)
	})
	t.Run("beyond the deadline", func(t *testing.T) {
		srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
		e, log := retryEngine(t, srv)
		srv.SetAPIFailure(http.StatusTooManyRequests, "10", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		asked := time.Now()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		var rl *engine.RetryLaterError
		require.ErrorAs(t, err, &rl)
		assert.ErrorIs(t, err, engine.ErrRetryLater)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, http.StatusTooManyRequests, rl.Status)
		assert.WithinDuration(t, asked.Add(10*time.Second), rl.At, 2*time.Second)
		assert.Contains(t, err.Error(), "asks to retry at")
		assert.NoError(t, ctx.Err(), "the engine waited for the deadline instead of failing at once")
		at, _ := log.sends()
		assert.Len(t, at, 1)
	})
}

// A POST whose first answer is lost after the server committed it: the engine resends it with the
// same Idempotency-Key, the server recognises it, and there is exactly one order.
func TestLostPostAnswerIsRetriedWithOneKeyAndOneEffect(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: 10 * time.Millisecond}))
	srv.SetOrderLoss(1)

	got, err := engine.PostJSON[map[string]any](context.Background(), e, "/orders", map[string]int{"qty": 2})
	require.NoError(t, err)
	assert.EqualValues(t, 1, got["id"])
	assert.EqualValues(t, 1, srv.Orders(), "the retry created a second order")
	_, keys := log.sends()
	require.Len(t, keys, 2)
	assert.NotEmpty(t, keys[0])
	assert.Equal(t, keys[0], keys[1], "each attempt must carry the same key")
}

// The server is still processing the first attempt (which timed out on our side) and answers 409
// to the retries; the engine keeps trying with the same key until it gets the 201.
func TestInProgressConflictIsRetriedUntilCreated(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{
		AttemptTimeout: 50 * time.Millisecond, BaseDelay: 40 * time.Millisecond, MaxDelay: 80 * time.Millisecond, MaxRetries: 20,
	}))
	events := subscribe(e)
	srv.SetOrderLatency(150 * time.Millisecond)

	got, err := engine.PostJSON[map[string]any](context.Background(), e, "/orders", map[string]string{"sku": "a1"})
	require.NoError(t, err)
	assert.EqualValues(t, 1, got["id"])
	assert.EqualValues(t, 1, srv.Orders())
	_, keys := log.sends()
	require.GreaterOrEqual(t, len(keys), 2)
	for _, k := range keys {
		assert.Equal(t, keys[0], k)
	}
	require.Eventually(t, func() bool {
		return events.count(func(ev engine.Event) bool {
			r, ok := ev.(*engine.RetryScheduled)
			return ok && r.Reason == "in_progress"
		}) > 0
	}, time.Second, 5*time.Millisecond, "no retry of a 409 in progress")
}

// With keys turned off, a POST is not retried: the caller gets the 503 of its only attempt.
func TestPostWithoutKeyIsNotRetried(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{NoIdempotencyKeys: true}))
	srv.SetOrderLoss(1)
	_, err := engine.PostJSON[map[string]any](context.Background(), e, "/orders", map[string]int{"qty": 1})
	var ae *engine.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusServiceUnavailable, ae.Status)
	_, keys := log.sends()
	assert.Equal(t, []string{""}, keys)
	assert.EqualValues(t, 1, srv.Orders())
}

// The caller's own Idempotency-Key is kept, and a body without GetBody is never resent.
func TestCallersKeyIsKeptAndUnreplayableBodiesAreNotResent(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))

	srv.SetOrderLoss(1)
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/orders", strings.NewReader(`{"qty":3}`))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "mine-1")
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	_, keys := log.sends()
	assert.Equal(t, []string{"mine-1", "mine-1"}, keys)

	srv.SetOrderLoss(1)
	req, err = http.NewRequest(http.MethodPost, srv.URL()+"/orders", io.NopCloser(bytes.NewReader([]byte(`{"qty":4}`))))
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	resp, err = e.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a body that cannot be replayed must not be resent")
	_, keys = log.sends()
	assert.Len(t, keys, 3)
}

// A POST that meets a 503, then a 401 because its token expired meanwhile: one refresh, one resend,
// and the same key on all three sends.
func TestKeySurvivesRetryAndTokenReplay(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 1) // answered before the token is looked at
	srv.ExpireAccessTokens()

	got, err := engine.PostJSON[map[string]any](context.Background(), e, "/orders", map[string]int{"qty": 5})
	require.NoError(t, err)
	assert.EqualValues(t, 1, got["id"])
	_, keys := log.sends()
	require.Len(t, keys, 3)
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys)
	assert.EqualValues(t, 1, srv.Stats().RefreshCalls)
	assert.EqualValues(t, 1, srv.Orders())
}

// 200 workers through a 2 s outage: the retry budget keeps physical attempts within 1.25 times the
// logical requests, and once the API is back every worker succeeds.
func TestOutageAmplificationStaysWithinBudget(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)
	before := srv.Stats().APIRequests
	end := time.Now().Add(2 * time.Second)
	var logical, refused atomic.Int64
	events := subscribe(e)
	fanOut(200, func(i int) {
		for time.Now().Before(end) {
			logical.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			cancel()
			var ae *engine.APIError
			if assert.ErrorAs(t, err, &ae) && errors.Is(err, engine.ErrRetryBudgetExhausted) {
				refused.Add(1)
			}
			time.Sleep(20 * time.Millisecond) // the worker's own pause before its next job
		}
	})
	attempts := srv.Stats().APIRequests - before
	srv.SetAPIFailure(0, "", 0)
	ratio := float64(attempts) / float64(logical.Load())
	t.Logf("outage: %d logical requests, %d attempts, amplification %.3f", logical.Load(), attempts, ratio)
	assert.LessOrEqual(t, ratio, 1.25)
	assert.Positive(t, refused.Load(), "no request was told that the budget stopped its retries")
	assert.Positive(t, events.count(func(ev engine.Event) bool { _, ok := ev.(*engine.RetryBudgetExhausted); return ok }))

	var failed atomic.Int64
	fanOut(200, func(i int) {
		if _, err := engine.GetJSON[item](context.Background(), e, "/items/2"); err != nil {
			failed.Add(1)
		}
	})
	assert.Zero(t, failed.Load(), "requests failed after the outage ended")
}

// The first request meets a 429 with Retry-After: 1; 99 more sent at once afterwards wait in the
// engine instead of hammering the server, and all 100 succeed soon after the pause.
func TestCoolDownHoldsEveryRequestToTheHost(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv)
	events := subscribe(e)
	srv.SetAPIFailure(http.StatusTooManyRequests, "1", 1)

	start := time.Now()
	var failed atomic.Int64
	first := make(chan struct{})
	go func() {
		defer close(first)
		if _, err := engine.GetJSON[item](context.Background(), e, "/items/0"); err != nil {
			failed.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return events.count(isRetry) == 1 }, 5*time.Second, time.Millisecond)
	fanOut(99, func(i int) {
		if _, err := engine.GetJSON[item](context.Background(), e, "/items/1"); err != nil {
			failed.Add(1)
		}
	})
	<-first
	took := time.Since(start)
	at, _ := log.sends()
	early := 0
	for _, a := range at[1:] {
		if a.Before(at[0].Add(time.Second)) {
			early++
		}
	}
	assert.LessOrEqual(t, early, 5, "requests reached the server during its cool-down")
	assert.Zero(t, failed.Load())
	assert.Len(t, at, 101)
	assert.Less(t, took, 4*time.Second, "the pause is one second; the rest should follow at once")
}

// The token endpoint answers 503 once while 50 requests are parked: the refresh is retried while
// they wait, and all 50 succeed with at most two refresh calls.
func TestTransientRefreshFailureIsRetriedWhileParked(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: 20 * time.Millisecond}))
	srv.SetTokenDelay(50 * time.Millisecond)
	srv.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`, 1)
	srv.ExpireAccessTokens()

	var failed atomic.Int64
	fanOut(50, func(i int) {
		if _, err := engine.GetJSON[item](context.Background(), e, "/items/3"); err != nil {
			failed.Add(1)
		}
	})
	assert.Zero(t, failed.Load())
	st := srv.Stats()
	assert.LessOrEqual(t, st.RefreshCalls, int64(2))
	assert.Zero(t, st.Revocations)
}

// Waits end at once: a cancelled caller during a backoff gets context.Canceled, Close during a
// backoff or a cool-down gives ErrClosed.
func TestBackoffWakesOnCancelAndClose(t *testing.T) {
	cases := []struct {
		name    string
		stop    func(e *engine.Engine, cancel context.CancelFunc)
		wantErr error
	}{
		{"cancel", func(_ *engine.Engine, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"close", func(e *engine.Engine, _ context.CancelFunc) { go e.Close(context.Background()) }, engine.ErrClosed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			e, _ := retryEngine(t, srv)
			events := subscribe(e)
			srv.SetAPIFailure(http.StatusServiceUnavailable, "20", -1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 2)
			go func() { _, err := engine.GetJSON[item](ctx, e, "/items/1"); done <- err }()
			require.Eventually(t, func() bool { return events.count(isRetry) == 1 }, 2*time.Second, time.Millisecond)
			go func() { _, err := engine.GetJSON[item](ctx, e, "/items/2"); done <- err }() // held by the cool-down
			time.Sleep(20 * time.Millisecond)
			tc.stop(e, cancel)
			for range 2 {
				select {
				case err := <-done:
					assert.ErrorIs(t, err, tc.wantErr)
				case <-time.After(2 * time.Second):
					t.Fatal("a waiting request did not wake")
				}
			}
		})
	}
}

// A panic on the request path (here in a user's Decide) fails that request with ErrRequestPanicked,
// is logged once, and leaves the engine working.
func TestPanicOnRequestPathFailsOnlyThatRequest(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	decide := engine.DefaultRetryDecision(false)
	e := newEngine(t, srv, srv.Login("ada"), engine.WithLogger(logger), engine.WithRetryPolicy(engine.RetryPolicy{
		Decide: func(req *http.Request, resp *http.Response, err error) (string, bool) {
			if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
				panic("decider bug")
			}
			return decide(req, resp, err)
		},
	}))
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 1)
	_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
	require.ErrorIs(t, err, engine.ErrRequestPanicked)
	assert.ErrorContains(t, err, "decider bug", "the panic's value is in the error itself")

	_, err = engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logs.String(), "decider bug") == 1
	}, time.Second, 5*time.Millisecond, "the panic must be logged exactly once")
}

// panickingTransport panics with a value that prints the request's headers, credentials included.
type panickingTransport struct{}

func (panickingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	panic(fmt.Sprintf("transport bug; headers were %v", req.Header))
}

// The error of a request whose transport panicked carries the panic's value, with the token sent,
// the secret headers and the caller's own credentials cut out; a credential too short to cut out
// cleanly withholds the whole value.
func TestPanicValueInErrorWithoutSecrets(t *testing.T) {
	const token, apiKey, callerCookie = "access-token-123456", "api-key-abcdefgh", "session=caller-cookie-value"
	for _, tc := range []struct {
		name     string
		secret   string
		want     string
		withheld bool
	}{
		{"long secrets are cut out", apiKey, "transport bug; headers were", false},
		{"a short secret withholds the value", "k3y", "value withheld", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(panickingTransport{}),
				engine.WithTokens(engine.Tokens{Access: token, Expiry: time.Now().Add(time.Hour)}),
				engine.WithSecretHeader("X-Api-Key", tc.secret))
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			req, err := http.NewRequest(http.MethodGet, "http://api.test/items/1", nil)
			require.NoError(t, err)
			req.Header.Set("Cookie", callerCookie)
			_, err = e.Transport().RoundTrip(req)
			require.ErrorIs(t, err, engine.ErrRequestPanicked)
			msg := err.Error()
			assert.Contains(t, msg, tc.want)
			for _, secret := range []string{token, tc.secret, callerCookie} {
				assert.NotContains(t, msg, secret)
			}
			if !tc.withheld {
				assert.Contains(t, msg, "[redacted]")
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A connection refused is retried even for a POST without a key (nothing was sent), and the final
// error is the network error, usable with errors.Is.
func TestRefusedConnectionIsRetriedForAnyMethod(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	e, err := engine.NewPublic(engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond, MaxRetries: 2, NoIdempotencyKeys: true}))
	require.NoError(t, err)
	defer closeEngine(t, e)
	events := subscribe(e)
	_, err = engine.PostJSON[map[string]any](context.Background(), e, url+"/orders", map[string]int{"qty": 1})
	require.Error(t, err)
	require.Eventually(t, func() bool { return events.count(isRetry) == 2 }, time.Second, time.Millisecond)
}

// Bad retry settings are configuration errors from New, never panics.
func TestBadRetryPolicyIsAConfigError(t *testing.T) {
	for _, p := range []engine.RetryPolicy{
		{BaseDelay: -time.Second},
		{MaxRetryAfter: -1},
		{BaseDelay: time.Second, MaxDelay: time.Millisecond},
		{AttemptTimeout: -time.Second},
	} {
		_, err := engine.NewPublic(engine.WithRetryPolicy(p))
		assert.ErrorIs(t, err, engine.ErrInvalidConfig, "%+v", p)
	}
}

// A request whose token cannot be refreshed is not retried on top of the refresh's own retries:
// the token endpoint drops every connection (a network error, which the decision would retry for a
// GET), yet one request makes one refresh (of several calls, while its deadline allows) and one API
// call.
func TestFailedRefreshIsNotRetriedTwice(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	var calls atomic.Int64
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(dropper.Close)
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(dropper.URL+"/oauth/token", engine.OAuth2Refresh),
		engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	srv.ExpireAccessTokens()
	before := srv.Stats().APIRequests

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	// The refresh retries for as long as its requester's deadline allows, so which ends first, the
	// refresh's last failure or the deadline, is a race at that boundary: either error is right.
	require.Error(t, err)
	assert.True(t, errors.Is(err, engine.ErrRefreshFailed) || errors.Is(err, context.DeadlineExceeded), "got %v", err)
	assert.Greater(t, calls.Load(), int64(1), "refresh calls")
	assert.EqualValues(t, 1, srv.Stats().APIRequests-before, "API calls: the request was retried on top of its refresh")
}

// A failed attempt's body is drained only briefly before the retry: a 503 that sends a few bytes of
// its body and stalls must not hold the retry until the caller's deadline (the drain used to read
// it under the caller's context, so the deadline ended the request though the retry would succeed).
func TestRetryDoesNotWaitForAStalledErrorBody(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("stalled"))
			w.(http.Flusher).Flush()
			select { // the rest never comes
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = w.Write([]byte(`{"id":"1"}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	e, err := engine.NewPublic(engine.WithBaseURL(srv.URL),
		engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	got, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err, "the retry must not wait for the stalled body")
	assert.Equal(t, "1", got.ID)
	assert.Equal(t, int64(2), calls.Load())
}

// A request held by a host's cool-down chooses its token when the wait is over, not when it began:
// the token that expired meanwhile is refreshed first, and the API never sees it. (The first attempt
// of a request that did not wait uses the clock reading its start took.)
func TestTokenExpiringDuringCoolDownIsNotSent(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: 1500 * time.Millisecond})
	// Skew 0: no proactive refresh; no retries: the first request does not refresh either. Only the
	// second request's own clock reading can notice the expiry.
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRefreshSkew(0), engine.WithMaxRetries(0))
	srv.SetAPIFailure(http.StatusTooManyRequests, "2", 1)
	_, err := engine.GetJSON[item](context.Background(), e, "/items/0")
	var apiErr *engine.APIError
	require.ErrorAs(t, err, &apiErr, "the 429 itself: no retries")
	// Begins with a valid token and waits out the host's cool-down, past the token's expiry.
	start := time.Now()
	_, err = engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	require.Greater(t, time.Since(start), time.Second, "held by the cool-down")
	st := srv.Stats()
	assert.Zero(t, st.Unauthorized, "an expired token reached the API")
	assert.Equal(t, int64(1), st.RefreshCalls)
}
