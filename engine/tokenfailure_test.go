package engine_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Only invalid_grant ends a session. A token endpoint's other 4xx answers (a WAF's HTML page, a 404
// during a deploy, invalid_client while a secret is rotated) fail the requests that waited, keep the
// credentials, and the next request refreshes with the same refresh token. The JSON format has no
// error codes: its 401 with a JSON body is its refusal, a proxy's page is not.
func TestTokenEndpointOther4xxKeepsSession(t *testing.T) {
	for _, tc := range []struct {
		name        string
		format      engine.RefreshFormat
		status      int
		contentType string
		body        string
		ends        bool
	}{
		{"WAF 403 page", engine.OAuth2Refresh, http.StatusForbidden, "text/html", "<html><body>Request blocked</body></html>", false},
		{"404 during a deploy", engine.OAuth2Refresh, http.StatusNotFound, "text/plain", "404 page not found", false},
		{"401 invalid_client", engine.OAuth2Refresh, http.StatusUnauthorized, "application/json", `{"error":"invalid_client"}`, false},
		{"400 invalid_request", engine.OAuth2Refresh, http.StatusBadRequest, "application/json", `{"error":"invalid_request"}`, false},
		{"400 invalid_grant", engine.OAuth2Refresh, http.StatusBadRequest, "application/json", `{"error":"invalid_grant"}`, true},
		{"json format: 401 HTML page", engine.JSONRefresh, http.StatusUnauthorized, "text/html", "<html>sign in</html>", false},
		{"json format: 403", engine.JSONRefresh, http.StatusForbidden, "application/json", `{"message":"forbidden"}`, false},
		{"json format: 401 refusal", engine.JSONRefresh, http.StatusUnauthorized, "application/json", `{"message":"refresh token revoked"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{})
			e := newEngine(t, srv, srv.Login("ada"), refreshFormat(srv, tc.format))
			events := subscribe(e)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			srv.SetTokenAnswer(tc.status, tc.contentType, tc.body, 1)
			srv.ExpireAccessTokens()
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			require.Error(t, err)
			var ee *engine.TokenEndpointError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.status, ee.Status)
			assert.Equal(t, tc.ends, errors.Is(err, engine.ErrSessionExpired), "session ended: %v", err)
			assert.Equal(t, !tc.ends, errors.Is(err, engine.ErrRefreshFailed), "refresh failed: %v", err)
			assert.EqualValues(t, 1, srv.Stats().RefreshCalls, "a 4xx is not repeated at once")

			_, err = engine.GetJSON[item](ctx, e, "/items/1")
			if tc.ends {
				require.ErrorIs(t, err, engine.ErrSessionExpired)
				return
			}
			require.NoError(t, err, "the kept refresh token works once the endpoint recovers")
			assert.EqualValues(t, 2, srv.Stats().RefreshCalls)
			require.NoError(t, e.Close(ctx))
			assert.Zero(t, events.count(isExpired), "no SessionExpired event")
			assert.Zero(t, srv.Stats().Revocations)
		})
	}
}

// A proactive refresh refused with a 403 keeps the access token it meant to replace: requests go on
// with it, and none of them waits for a refresh or fails.
func TestProactiveRefresh403KeepsAccessToken(t *testing.T) {
	// The proactive refresh starts at half the token's life (2s), leaving it 2s to be used.
	srv := startAPI(t, fakeapi.Options{AccessTTL: 4 * time.Second})
	srv.SetTokenAnswer(http.StatusForbidden, "text/html", "<html>blocked</html>", -1)
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRefreshSkew(4*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	for i := 0; i < 300 && srv.Stats().RefreshCalls == 0; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	require.NotZero(t, srv.Stats().RefreshCalls, "the proactive refresh ran")
	for range 20 {
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		require.NoError(t, err)
	}
	assert.Zero(t, srv.Stats().Unauthorized)
}
