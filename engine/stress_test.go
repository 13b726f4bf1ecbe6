package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Everything at once, for a bounded time: 300 goroutines send requests with random deadlines and
// cancellations while the server expires tokens, the token endpoint fails now and then, and the
// application sets new tokens; then Close lands in the middle of it. Every call must return with a
// known outcome, nothing may be left running (goleak in TestMain), and the server must never see a
// refresh token replayed.
func TestChaosThenClose(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 2 s")
	}
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokens(srv.Login("ada")),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh), engine.WithRefreshTimeout(time.Second))
	require.NoError(t, err)
	srv.SetTokenDelay(5 * time.Millisecond)

	stop := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() { // the weather
		defer close(chaosDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			switch i % 10 {
			case 3:
				srv.SetTokenFailure(503, `{"error":"temporarily_unavailable"}`, 1)
			case 7:
				_ = e.SetTokens(context.Background(), srv.Login("ada"))
			}
			// Tokens expire every 150 ms: often enough for storms of 401s and refreshes racing
			// SetTokens, yet longer than a request takes on a loaded 2-core machine under -race (at
			// 50 ms no request could succeed there at all, and "some succeeded" failed).
			if i%3 == 0 {
				srv.ExpireAccessTokens()
			}
		}
	}()

	var unknown atomic.Int64
	var outcomes [4]atomic.Int64 // ok, cancelled/deadline, refresh failed/expired/401, closed
	closed := make(chan struct{})
	var calm error // a request made once the weather stopped, while the herd still runs
	time.AfterFunc(1500*time.Millisecond, func() {
		defer close(closed)
		close(stop)
		<-chaosDone
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, calm = engine.GetJSON[item](ctx, e, "/items/1")
		assert.NoError(t, e.Close(ctx))
	})
	fanOut(300, func(i int) {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+rand.IntN(1000))*time.Millisecond)
			if i%10 == 0 {
				time.AfterFunc(time.Duration(rand.IntN(20))*time.Millisecond, cancel)
			}
			_, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i))
			cancel()
			var apiErr *engine.APIError
			switch {
			case err == nil:
				outcomes[0].Add(1)
			case errors.Is(err, engine.ErrClosed):
				outcomes[3].Add(1)
				return
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
				outcomes[1].Add(1)
			case errors.Is(err, engine.ErrRefreshFailed), errors.Is(err, engine.ErrSessionExpired):
				outcomes[2].Add(1)
			case errors.As(err, &apiErr) && apiErr.Status == 401:
				// Tokens expire every 150 ms here: even the fresh token of the one resend can meet a
				// 401, which then goes to the caller (at most one resend per logical request).
				outcomes[2].Add(1)
			default:
				unknown.Add(1)
				t.Logf("unexpected error: %v", err)
			}
		}
	})
	<-chaosDone
	<-closed
	assert.Zero(t, unknown.Load())
	// How many of the chaos's own requests succeed depends on the machine's load (a loaded 2-core
	// machine under -race can take longer than a token lives); once the chaos stops, the engine must
	// serve again however it was left.
	assert.NoError(t, calm, "a request after the chaos succeeds")
	assert.Equal(t, int64(300), outcomes[3].Load(), "every goroutine ended with ErrClosed")
	assert.Zero(t, srv.Stats().ReuseDetected, "no refresh token was ever replayed")
	assert.Equal(t, 0, engine.ActorCount(e))
	t.Logf("ok %d, cancelled %d, refresh failed/expired %d, server %+v", outcomes[0].Load(), outcomes[1].Load(), outcomes[2].Load(), srv.Stats())
}
