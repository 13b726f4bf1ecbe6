package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// A refresh whose answer is lost after the server rotated the refresh token (the connection closes
// instead of answering) is retried with the same refresh token: the only token the engine has.
// With a server that allows a reuse grace period, as Okta and Auth0 do, that costs one more refresh
// call and every request parked behind it succeeds. Without one, the replay revokes the family:
// the engine ends with one clear SessionExpired and calls the endpoint no more.
func TestLostRefreshAnswer(t *testing.T) {
	for _, format := range []engine.RefreshFormat{engine.OAuth2Refresh, engine.JSONRefresh} {
		t.Run(format.String()+"/with grace", func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour, ReuseGrace: time.Minute})
			e := newEngine(t, srv, srv.Login("ada"), refreshFormat(srv, format), lostAnswerRetries())
			events := subscribe(e)
			srv.SetTokenDelay(50 * time.Millisecond) // long enough for the callers to park
			srv.SetTokenAnswerLoss(1)
			srv.ExpireAccessTokens()

			failed := parkedGets(e, 100, nil)
			assert.Zero(t, failed.Load(), "every parked request succeeds")
			st := srv.Stats()
			assert.Equal(t, int64(1), st.LostAnswers)
			assert.Equal(t, int64(2), st.RefreshCalls, "one more refresh call")
			assert.Equal(t, int64(1), st.GraceReplays)
			assert.Zero(t, st.ReuseDetected)

			// The pair the replay brought is a working one: the next refresh spends its refresh token.
			srv.SetTokenDelay(0)
			srv.ExpireAccessTokens()
			assert.Zero(t, parkedGets(e, 10, nil).Load())
			st = srv.Stats()
			assert.Equal(t, int64(3), st.RefreshCalls)
			assert.Zero(t, st.ReuseDetected)
			assert.Zero(t, st.Revocations)
			closeEngine(t, e)
			assert.Zero(t, events.count(isExpired))
		})
		t.Run(format.String()+"/without grace", func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			e := newEngine(t, srv, srv.Login("ada"), refreshFormat(srv, format), lostAnswerRetries())
			events := subscribe(e)
			srv.SetTokenDelay(50 * time.Millisecond)
			srv.SetTokenAnswerLoss(1)
			srv.ExpireAccessTokens()

			var expired atomic.Int64
			failed := parkedGets(e, 100, func(err error) {
				if errors.Is(err, engine.ErrSessionExpired) {
					expired.Add(1)
				}
			})
			assert.Equal(t, int64(100), failed.Load())
			assert.Equal(t, int64(100), expired.Load(), "every parked request ends with ErrSessionExpired")
			st := srv.Stats()
			assert.Equal(t, int64(2), st.RefreshCalls, "the lost call and one replay")
			assert.Equal(t, int64(1), st.ReuseDetected)
			assert.Equal(t, int64(1), st.Revocations)

			// Later requests fail fast: the engine never loops on the endpoint.
			assert.Equal(t, int64(20), parkedGets(e, 20, nil).Load())
			assert.Equal(t, int64(2), srv.Stats().RefreshCalls)
			closeEngine(t, e)
			assert.Equal(t, 1, events.count(isExpired), "one SessionExpired")
		})
	}
}

func refreshFormat(srv *fakeapi.Server, f engine.RefreshFormat) engine.Option {
	if f == engine.JSONRefresh {
		return engine.WithTokenEndpoint(srv.JSONRefreshURL(), engine.JSONRefresh)
	}
	return engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh)
}

func lostAnswerRetries() engine.Option {
	return engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
}

// parkedGets runs n concurrent GETs and counts those that failed, giving each error to check.
func parkedGets(e *engine.Engine, n int, check func(error)) *atomic.Int64 {
	var failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fanOut(n, func(i int) {
		if _, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i)); err != nil {
			failed.Add(1)
			if check != nil {
				check(err)
			}
		}
	})
	return &failed
}
