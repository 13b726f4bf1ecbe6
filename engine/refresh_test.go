package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Three rounds of 200 concurrent 401s, each round after the server expired every token: one refresh
// per round, and the rotating refresh token is never replayed (no revocation).
func TestRoundsOf401sRefreshOncePerRound(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round := 1; round <= 3; round++ {
		srv.ExpireAccessTokens()
		var failed atomic.Int64
		fanOut(200, func(i int) {
			if _, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i)); err != nil {
				failed.Add(1)
			}
		})
		st := srv.Stats()
		require.Zero(t, failed.Load(), "round %d", round)
		assert.Equal(t, int64(round), st.RefreshCalls, "refreshes after round %d", round)
		assert.Zero(t, st.Revocations)
		assert.Zero(t, st.ReuseDetected)
	}
}

// tokenServer is a hand-made API for exact orderings: tokens t1, t2, ... are issued in turn by a JSON
// refresh endpoint, only the newest is accepted, and /slow waits for a signal before answering.
type tokenServer struct {
	*httptest.Server
	refreshes    atomic.Int64
	unauthorized atomic.Int64
	current      atomic.Int64 // number of the accepted token
	slowIn       chan struct{}
	release      chan struct{}
}

func startTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{slowIn: make(chan struct{}, 1), release: make(chan struct{})}
	ts.current.Store(1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /refresh", func(w http.ResponseWriter, r *http.Request) {
		n := ts.refreshes.Add(1) + 1
		ts.current.Store(n)
		_ = json.NewEncoder(w).Encode(map[string]string{"accessToken": fmt.Sprintf("t%d", n), "refreshToken": fmt.Sprintf("r%d", n)})
	})
	check := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != fmt.Sprintf("Bearer t%d", ts.current.Load()) {
			ts.unauthorized.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"id":"1"}`))
	}
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ts.slowIn <- struct{}{}
		<-ts.release
		check(w, r)
	})
	mux.HandleFunc("GET /fast", check)
	ts.Server = httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

// staleSetup leaves a request to /slow holding token t1 (generation 1) at the server while /fast has
// met a 401 with t1 and refreshed to t2 (generation 2). The /slow request's result comes on the channel
// once ts.release is closed.
func staleSetup(t *testing.T) (*tokenServer, *engine.Engine, <-chan error) {
	ts := startTokenServer(t)
	e, err := engine.New(engine.WithBaseURL(ts.URL), engine.WithTokenEndpoint(ts.URL+"/refresh", engine.JSONRefresh),
		engine.WithTokens(engine.Tokens{Access: "t1", Refresh: "r1"}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)

	slow := make(chan error, 1)
	go func() { _, err := engine.GetJSON[map[string]string](ctx, e, "/slow"); slow <- err }()
	<-ts.slowIn         // /slow holds t1 at the server
	ts.current.Store(0) // the server stops accepting t1: the fast request's 401 refreshes to t2
	_, err = engine.GetJSON[map[string]string](ctx, e, "/fast")
	require.NoError(t, err)
	require.Equal(t, int64(1), ts.refreshes.Load())
	return ts, e, slow
}

// A 401 for generation 1 that arrives after generation 2 exists is answered with token 2: no second
// refresh.
func TestStale401StartsNoSecondRefresh(t *testing.T) {
	ts, _, slow := staleSetup(t)

	close(ts.release) // now /slow answers 401 for t1: stale, generation 2 exists
	require.NoError(t, <-slow)
	assert.Equal(t, int64(1), ts.refreshes.Load(), "a stale 401 must not refresh again")
}

// A stale 401 is answered with the current token; if the resend with it meets a 401 as well, the
// caller gets that 401 (one resend only), but the rejection of the current token is reported, so the
// next request finds a refreshed token instead of meeting the same 401.
func TestRejectedResendIsReported(t *testing.T) {
	ts, e, slow := staleSetup(t)
	ctx := context.Background()

	ts.current.Store(0) // now t2 is rejected too, unknown to the engine
	close(ts.release)
	var apiErr *engine.APIError
	require.ErrorAs(t, <-slow, &apiErr, "stale t1 → resend with t2 → 401 again: the caller gets it")
	assert.Equal(t, http.StatusUnauthorized, apiErr.Status)
	require.Eventually(t, func() bool { return ts.refreshes.Load() == 2 }, 5*time.Second, time.Millisecond,
		"the resend's 401 for the current generation starts a refresh")

	before := ts.unauthorized.Load()
	_, err := engine.GetJSON[map[string]string](ctx, e, "/fast")
	require.NoError(t, err)
	assert.Equal(t, before, ts.unauthorized.Load(), "the next request meets no 401")
}
