package engine_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// scriptedServer is an in-memory HTTP server for synctest bubbles (which cannot wait on real
// sockets): it answers the n-th request with script[n] and notes the (fake) time of each.
type scriptedServer struct {
	mu     sync.Mutex
	script []func(h http.Header) int
	at     []time.Time
}

func (s *scriptedServer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	s.mu.Lock()
	n := len(s.at)
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	h := http.Header{}
	status := http.StatusOK
	if n < len(s.script) {
		status = s.script[n](h)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
}

func answer(status int, retryAfter string) func(http.Header) int {
	return func(h http.Header) int {
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return status
	}
}

// In a synctest bubble time is exact: the waits the policy promises can be checked to the
// nanosecond, with no real sleeping.
func TestRetryTimingIsExact(t *testing.T) {
	cases := []struct {
		name   string
		policy engine.RetryPolicy
		script []func(http.Header) int
		gaps   []time.Duration // between consecutive attempts
	}{
		{"Retry-After seconds", engine.RetryPolicy{}, []func(http.Header) int{answer(503, "1"), answer(503, "1")}, []time.Duration{time.Second, time.Second}},
		{"Retry-After zero", engine.RetryPolicy{}, []func(http.Header) int{answer(503, "0")}, []time.Duration{0}},
		{"Retry-After date", engine.RetryPolicy{}, []func(http.Header) int{func(h http.Header) int {
			h.Set("Retry-After", time.Now().Add(7*time.Second).UTC().Format(http.TimeFormat))
			return 429
		}}, []time.Duration{7 * time.Second}},
		{"backoff ceiling", engine.RetryPolicy{BaseDelay: time.Second, MaxDelay: 3 * time.Second, MaxRetries: 4},
			[]func(http.Header) int{answer(502, ""), answer(502, ""), answer(502, ""), answer(502, "")},
			[]time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}}, // upper bounds
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := &scriptedServer{script: tc.script}
				e, err := engine.NewPublic(engine.WithTransport(srv), engine.WithRetryPolicy(tc.policy))
				require.NoError(t, err)
				resp, err := e.Client().Get("http://api.test/x")
				require.NoError(t, err)
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				require.Len(t, srv.at, len(tc.gaps)+1)
				for i, want := range tc.gaps {
					gap := srv.at[i+1].Sub(srv.at[i])
					if tc.name == "backoff ceiling" {
						assert.LessOrEqual(t, gap, want, "attempt %d", i+2)
					} else {
						assert.Equal(t, want, gap, "attempt %d", i+2)
					}
				}
				closeInBubble(t, e)
			})
		})
	}
}

// closeInBubble closes e inside a synctest bubble and lets the (fake) millisecond pass in which
// protoactor's dead-letter throttle may still hold a goroutine: a timer of the engine's that fired as
// Close stopped its actor sends one harmless dead letter.
func closeInBubble(t *testing.T, e *engine.Engine) {
	t.Helper()
	require.NoError(t, e.Close(context.Background()))
	time.Sleep(10 * time.Millisecond)
	synctest.Wait()
}

// A Retry-After longer than MaxRetryAfter is not waited for: the answer reaches the caller at once,
// and the host's cool-down holds the next request for MaxRetryAfter, not an hour.
func TestRetryAfterAboveTheCapIsNotWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Ten seconds: longer than the cap, well within MaxElapsed (a minute), so only the cap stops it.
		srv := &scriptedServer{script: []func(http.Header) int{answer(429, "10")}}
		e, err := engine.NewPublic(engine.WithTransport(srv), engine.WithRetryPolicy(engine.RetryPolicy{MaxRetryAfter: 5 * time.Second}))
		require.NoError(t, err)
		start := time.Now()
		_, err = engine.GetJSON[map[string]any](context.Background(), e, "http://api.test/x")
		var ae *engine.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, http.StatusTooManyRequests, ae.Status)
		assert.Equal(t, 10*time.Second, ae.RetryAfter, "the caller learns when the server wants it back")
		assert.Equal(t, start, time.Now(), "the caller must not wait at all")

		_, err = engine.GetJSON[map[string]any](context.Background(), e, "http://api.test/x")
		require.NoError(t, err)
		require.Len(t, srv.at, 2)
		assert.Equal(t, 5*time.Second, srv.at[1].Sub(srv.at[0]), "the cool-down is capped too")
		closeInBubble(t, e)
	})
}

// No retry starts later than MaxElapsed after the logical request began: with a Retry-After of one
// second every time and MaxElapsed 2.5 s, the attempts are at 0, 1 and 2 s, and the third 503 is the
// answer (a fourth would start at 3 s).
func TestMaxElapsedStopsRetrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := make([]func(http.Header) int, 10)
		for i := range script {
			script[i] = answer(503, "1")
		}
		srv := &scriptedServer{script: script}
		e, err := engine.NewPublic(engine.WithTransport(srv), engine.WithRetryPolicy(engine.RetryPolicy{
			MaxRetries: 9, MaxElapsed: 2500 * time.Millisecond,
		}))
		require.NoError(t, err)
		start := time.Now()
		resp, err := e.Client().Get("http://api.test/x")
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Len(t, srv.at, 3)
		assert.Equal(t, start.Add(2*time.Second), srv.at[2])
		assert.Equal(t, start.Add(2*time.Second), time.Now(), "the answer comes at once, not after a wait it will not use")
		closeInBubble(t, e)
	})
}

// A request waiting out a 20 s Retry-After wakes the instant its caller cancels, or the instant the
// engine closes: not a (fake) nanosecond later.
func TestBackoffWakesAtTheInstant(t *testing.T) {
	for _, closeIt := range []bool{false, true} {
		name := map[bool]string{false: "cancel", true: "close"}[closeIt]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := &scriptedServer{script: []func(http.Header) int{answer(503, "20")}}
				e, err := engine.NewPublic(engine.WithTransport(srv))
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var ended time.Time
				var got error
				done := make(chan struct{})
				go func() {
					defer close(done)
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/x", nil)
					_, got = e.Client().Do(req)
					ended = time.Now()
				}()
				time.Sleep(3 * time.Second)
				synctest.Wait()
				stopped := time.Now()
				if closeIt {
					closeInBubble(t, e)
				} else {
					cancel()
				}
				<-done
				assert.Equal(t, stopped, ended)
				if closeIt {
					assert.ErrorIs(t, got, engine.ErrClosed)
				} else {
					assert.ErrorIs(t, got, context.Canceled)
					closeInBubble(t, e)
				}
				assert.Len(t, srv.at, 1)
			})
		})
	}
}

// A token endpoint asking for an hour is not called again before the capped cool-down ends, however
// many requests need a refresh meanwhile (they fail with ErrRefreshFailed); and a request whose
// deadline ends inside a host's cool-down learns the time the server asked for.
func TestRetryAfterCoolsDownRefreshesAndSaysWhen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var tokenCalls []time.Time
		rt := roundTripper(func(req *http.Request) (*http.Response, error) {
			h := http.Header{"Retry-After": {"3600"}}
			status := http.StatusUnauthorized
			if req.URL.Path == "/oauth/token" {
				mu.Lock()
				tokenCalls = append(tokenCalls, time.Now())
				mu.Unlock()
				status = http.StatusTooManyRequests
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
		})
		e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(rt),
			engine.WithTokenEndpoint("http://api.test/oauth/token", engine.OAuth2Refresh),
			engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r"}),
			engine.WithRetryPolicy(engine.RetryPolicy{MaxRetryAfter: 200 * time.Millisecond}))
		require.NoError(t, err)
		start := time.Now()
		for range 5 {
			_, err := engine.GetJSON[map[string]any](context.Background(), e, "/x")
			require.ErrorIs(t, err, engine.ErrRefreshFailed)
		}
		require.Len(t, tokenCalls, 5)
		for i := 1; i < len(tokenCalls); i++ {
			assert.Equal(t, 200*time.Millisecond, tokenCalls[i].Sub(tokenCalls[i-1]), "refresh %d came early", i+1)
		}

		// The token endpoint's host is cooling down; a refresh-free request to it with a short
		// deadline is told when the server wants it back, not when the cap ends.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/oauth/token", nil)
		_, err = e.Client().Do(req)
		var rl *engine.RetryLaterError
		require.ErrorAs(t, err, &rl)
		assert.Equal(t, http.StatusTooManyRequests, rl.Status)
		assert.Equal(t, tokenCalls[4].Add(time.Hour), rl.At)
		assert.Equal(t, start.Add(800*time.Millisecond), time.Now(), "failed at once")
		closeInBubble(t, e)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
