package engine_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// A thousand requests meet an expired token at once: one refresh, a thousand answers. Either the
// engine knows the expiry (JWT exp: requests park without sending) or it learns it from 401s
// (opaque tokens expired on the server).
func TestThousandRequestsOnExpiredTokenRefreshOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opaque   bool
		format   engine.RefreshFormat
		want401s bool
	}{
		{"opaque tokens, 401 storm, OAuth2", true, engine.OAuth2Refresh, true},
		{"opaque tokens, 401 storm, JSON", true, engine.JSONRefresh, true},
		{"JWT exp known, parked before sending", false, engine.OAuth2Refresh, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: tc.opaque, AccessTTL: time.Hour})
			tokens := srv.Login("ada")
			endpoint := srv.OAuth2TokenURL()
			if tc.format == engine.JSONRefresh {
				endpoint = srv.JSONRefreshURL()
			}
			e := newEngine(t, srv, tokens, engine.WithTokenEndpoint(endpoint, tc.format), engine.WithRefreshSkew(-1))
			events := subscribe(e)
			srv.SetTokenDelay(20 * time.Millisecond)
			srv.ExpireAccessTokens()
			if !tc.opaque {
				// The engine reads the expiry from the token: make it one that has passed.
				tokens.Expiry = time.Now().Add(-time.Second)
				require.NoError(t, e.SetTokens(context.Background(), tokens))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var ok, failed atomic.Int64
			fanOut(1000, func(i int) {
				it, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i))
				if err == nil && it.Owner == "ada" {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			})
			st := srv.Stats()
			assert.Equal(t, int64(1000), ok.Load())
			assert.Equal(t, int64(0), failed.Load())
			assert.Equal(t, int64(1), st.RefreshCalls, "refresh calls")
			assert.Equal(t, int64(0), st.Revocations)
			if tc.want401s {
				assert.Positive(t, st.Unauthorized)
			} else {
				assert.Zero(t, st.Unauthorized)
			}
			assert.Eventually(t, func() bool { return events.count(isRefreshed) == 1 }, 2*time.Second, 5*time.Millisecond)
		})
	}
}
