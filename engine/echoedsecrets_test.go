package engine_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// An API that echoes the credentials of a refused request: the token it refused (which the token
// actor no longer holds once the 401 was reported) and the caller's own credential header. Neither
// may reach the error handler or the caller's *APIError.
func TestEchoedRequestCredentialsScrubbed(t *testing.T) {
	const access, callerKey = "access-SECRET-0123456789", "caller-KEY-0123456789"
	for _, tc := range []struct {
		name   string
		status int
		header string // a credential header the caller sets itself
		leak   string
	}{
		{"refused token echoed in a 401", http.StatusUnauthorized, "", access},
		{"caller's API key echoed in a 400", http.StatusBadRequest, "X-Api-Key", callerKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/token" { // the refresh after the 401 stays under way
					select {
					case <-hold:
					case <-r.Context().Done():
					}
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `{"message":"token %s or key %s refused"}`,
					strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), r.Header.Get(tc.header))
			}))
			defer srv.Close()
			var mu sync.Mutex
			var seen []string
			e, err := engine.New(engine.WithBaseURL(srv.URL),
				engine.WithTokens(engine.Tokens{Access: access, Refresh: "refresh-0123456789"}),
				engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh),
				engine.WithErrorHandler(func(_ context.Context, f *engine.Failure) {
					mu.Lock()
					seen = append(seen, f.String())
					mu.Unlock()
				}))
			require.NoError(t, err)
			defer func() {
				close(hold) // the refresh ends, so Close need not wait for it
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				assert.NoError(t, e.Close(ctx))
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			// A body without GetBody cannot be resent: the 401 goes to the caller.
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/orders", io.NopCloser(strings.NewReader("{}")))
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set(tc.header, callerKey)
			}
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)

			mu.Lock()
			defer mu.Unlock()
			require.NotEmpty(t, seen)
			for _, s := range seen {
				assert.NotContains(t, s, tc.leak)
				assert.Contains(t, s, "refused", "the answer's text is kept")
			}
		})
	}
}
