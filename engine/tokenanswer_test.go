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

// A token answer the engine cannot use (a captive portal's page, a bad expires_in, a token with
// characters that cannot be sent) is a failed refresh that may pass: the request gets
// ErrRefreshFailed wrapping ErrMalformedTokenAnswer, the session does not end, the bad token is never
// sent, and once the endpoint answers properly the kept refresh token buys a new pair.
func TestMalformedTokenAnswerIsATransientFailure(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		badToken          string // an access token the API must never receive; "" if none
	}{
		{"captive portal", "text/html; charset=utf-8", "<html><body>Sign in to the Wi-Fi</body></html>", ""},
		{"negative expires_in", "application/json", `{"access_token":"tok-negative-ttl","expires_in":-60}`, "tok-negative-ttl"},
		{"absurd expires_in", "application/json", `{"access_token":"tok-absurd-ttl","expires_in":1e15}`, "tok-absurd-ttl"},
		{"CR LF in the access token", "application/json", `{"access_token":"tok-crlf\r\nX-Injected: 1"}`, "tok-crlf\r\nX-Injected: 1"},
		{"space in the access token", "application/json", `{"access_token":"tok with-space"}`, "tok with-space"},
		{"non-ASCII access token", "application/json", `{"access_token":"tok-é"}`, "tok-é"},
		{"control character in the refresh token", "application/json", `{"access_token":"tok-fine","refresh_token":"rt\u0007bell"}`, "tok-fine"},
		{"form answer with a LF in the token", "application/x-www-form-urlencoded", "access_token=tok-form%0A&token_type=bearer", "tok-form\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
			e := newEngine(t, srv, srv.Login("ada"),
				engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
			events := subscribe(e)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			srv.SetTokenAnswer(http.StatusOK, tc.ctype, tc.body, -1)
			srv.ExpireAccessTokens()
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			require.ErrorIs(t, err, engine.ErrRefreshFailed)
			assert.ErrorIs(t, err, engine.ErrMalformedTokenAnswer)
			assert.NotErrorIs(t, err, engine.ErrSessionExpired)
			if tc.badToken != "" {
				assert.NotContains(t, err.Error(), tc.badToken, "the error does not quote the token")
			}

			srv.SetTokenAnswer(0, "", "", 0)
			got, err := engine.GetJSON[item](ctx, e, "/items/2")
			require.NoError(t, err, "the credentials were kept: the next refresh works")
			assert.Equal(t, "2", got.ID)
			if tc.badToken != "" {
				assert.Zero(t, srv.RequestsWithToken(tc.badToken), "the bad token was never sent")
			}
			closeEngine(t, e)
			assert.Zero(t, events.count(isExpired), "no SessionExpired")
			assert.Zero(t, srv.Stats().ReuseDetected)
		})
	}
}

// token_type is honoured: Bearer in any case is sent as Bearer (here from a form-encoded answer, as
// golang.org/x/oauth2 reads them), a type the engine cannot send ends the session with a clear
// cause after one call, instead of spending refresh tokens on tokens it cannot use.
func TestTokenType(t *testing.T) {
	t.Run("form answer with lower-case bearer", func(t *testing.T) {
		srv := startAPI(t, fakeapi.Options{FormAnswers: true, AccessTTL: time.Hour})
		e := newEngine(t, srv, srv.Login("ada"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.ExpireAccessTokens()
		for i := range 3 {
			_, err := engine.GetJSON[item](ctx, e, sprintf("/items/%d", i))
			require.NoError(t, err)
		}
		assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
	})
	for _, typ := range []string{"DPoP", "mac", "N_A"} {
		t.Run(typ, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			e := newEngine(t, srv, srv.Login("ada"),
				engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
			events := subscribe(e)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.SetTokenAnswer(http.StatusOK, "application/json", `{"access_token":"bound-token","token_type":"`+typ+`"}`, -1)
			srv.ExpireAccessTokens()
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			require.ErrorIs(t, err, engine.ErrSessionExpired)
			assert.ErrorIs(t, err, engine.ErrUnsupportedTokenType)
			assert.Contains(t, err.Error(), typ)
			_, err = engine.GetJSON[item](ctx, e, "/items/2")
			require.ErrorIs(t, err, engine.ErrSessionExpired, "later requests fail fast")
			closeEngine(t, e)
			assert.Equal(t, int64(1), srv.Stats().RefreshCalls, "one call: no retry can help")
			assert.Zero(t, srv.RequestsWithToken("bound-token"))
			assert.Equal(t, 1, events.count(isExpired))
			var se *engine.SessionExpired
			for _, ev := range events.events {
				if x, ok := ev.(*engine.SessionExpired); ok {
					se = x
				}
			}
			require.NotNil(t, se)
			assert.True(t, errors.Is(se.Err, engine.ErrUnsupportedTokenType))
		})
	}
}
