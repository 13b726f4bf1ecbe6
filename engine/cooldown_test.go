package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// After the token endpoint asked for a pause (429 with Retry-After) longer than the requests'
// deadlines, a request that needs a refresh fails at once with a RetryLaterError instead of
// waiting out the pause to its deadline; the endpoint is not called during the pause.
func TestRefreshCoolDownFailsFastPastTheDeadline(t *testing.T) {
	var calls atomic.Int64
	tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"new-access-123456","refresh_token":"new-refresh-123456","expires_in":3600}`)
	}))
	defer tok.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer new-access-123456" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokens(engine.Tokens{Access: "old-access-123456", Refresh: "old-refresh-123456"}),
		engine.WithTokenEndpoint(tok.URL, engine.OAuth2Refresh))
	require.NoError(t, err)
	defer closeEngine(t, e)

	// The first refresh meets the 429. Its request has time to see the refresh end (a one-second
	// deadline could end first on a loaded machine, and the next request would then join that
	// refresh instead of meeting the pause).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.URL+"/me", nil)
	require.NoError(t, err)
	_, err = e.Client().Do(req)
	require.Error(t, err)
	for range 2 {
		_, err = fetchStatus(e, api.URL+"/me") // (one-second deadline)
		require.Error(t, err)
		var later *engine.RetryLaterError
		assert.ErrorAs(t, err, &later, "failed at once, not held to the deadline")
	}
	assert.EqualValues(t, 1, calls.Load(), "the endpoint is not called during its pause")
}
