package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/resilientclient/resilient/engine"
)

// A token endpoint that echoes its raw request (the form body and the Basic header) in its error:
// the refresh token is there URL-encoded and the client secret inside base64(id:secret). Neither
// form may reach the caller's error, the error handler or the log.
func TestEncodedSecretsNotEchoed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		option func(tokenURL string) []engine.Option
	}{
		{"engine's own refresh", func(u string) []engine.Option {
			return []engine.Option{engine.WithTokenEndpoint(u, engine.OAuth2Refresh), engine.WithClientAuth(clientID, secret),
				engine.WithTokens(engine.Tokens{Access: "access-0123456789", Refresh: refresh})}
		}},
		{"x/oauth2 Config", func(u string) []engine.Option {
			return []engine.Option{engine.WithOAuth2Config(&oauth2.Config{ClientID: clientID, ClientSecret: secret,
				Endpoint: oauth2.Endpoint{TokenURL: u, AuthStyle: oauth2.AuthStyleInHeader}},
				&oauth2.Token{AccessToken: "access-0123456789", RefreshToken: refresh, Expiry: time.Now().Add(-time.Minute)})}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { encodedSecretsNotEchoed(t, tc.option) })
	}
}

const refresh, clientID, secret = "rt/with+chars=0123456789", "svc", "client/secret+0123456789"

func encodedSecretsNotEchoed(t *testing.T, options func(tokenURL string) []engine.Option) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant",
			"error_description": "refused " + string(body) + " with " + r.Header.Get("Authorization")})
	}))
	defer srv.Close()
	var c leakCapture
	e, err := engine.New(append(options(srv.URL+"/token"), engine.WithBaseURL(srv.URL),
		engine.WithLogger(c.logger()), engine.WithErrorHandler(c.failure))...)
	require.NoError(t, err)
	e.Subscribe(c.event)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	c.callerError(err)
	closeEngine(t, e)

	c.mu.Lock()
	defer c.mu.Unlock()
	seen := c.seen.String() + c.logs.String()
	require.Contains(t, seen, "refused", "the endpoint's text is kept")
	require.Contains(t, seen, "grant_type=refresh_token", "the echo is there")
	for _, leak := range []string{"rt%2Fwith%2Bchars%3D0123456789", "0123456789", "c3Zj"} { // c3Zj: base64 of "svc"
		assert.NotContains(t, seen, leak)
	}
	assert.False(t, strings.Contains(seen, secret) || strings.Contains(seen, refresh))
}
