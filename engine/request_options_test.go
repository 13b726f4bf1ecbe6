package engine_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// WithoutIdempotencyKey turns the engine's key off for one request while the policy keeps it on
// for the others: that POST carries no key and is not resent after its answer was lost, through
// the typed helpers and through Client() alike; the next POST without it is keyed and retried.
func TestWithoutIdempotencyKeyPerRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		post func(ctx context.Context, e *engine.Engine, srv *fakeapi.Server) int
	}{
		{"typed helper", func(ctx context.Context, e *engine.Engine, _ *fakeapi.Server) int {
			_, err := engine.PostJSON[map[string]any](ctx, e, "/orders", map[string]int{"qty": 1})
			if ae := (*engine.APIError)(nil); err != nil && assert.ErrorAs(t, err, &ae) {
				return ae.Status
			}
			return http.StatusCreated
		}},
		{"Client()", func(ctx context.Context, e *engine.Engine, srv *fakeapi.Server) int {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/orders", strings.NewReader(`{"qty":1}`))
			require.NoError(t, err)
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			return resp.StatusCode
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			srv.SetOrderLoss(1)
			assert.Equal(t, http.StatusServiceUnavailable, tc.post(engine.WithoutIdempotencyKey(ctx), e, srv),
				"the lost answer is the caller's: no resend")
			_, keys := log.sends()
			assert.Equal(t, []string{""}, keys, "one send, without a key")

			srv.SetOrderLoss(1)
			assert.Equal(t, http.StatusCreated, tc.post(ctx, e, srv))
			_, keys = log.sends()
			require.Len(t, keys, 3)
			assert.NotEmpty(t, keys[1])
			assert.Equal(t, keys[1], keys[2], "the other requests keep their key and retries")
			assert.EqualValues(t, 2, srv.Orders())
		})
	}
}

// A caller's Idempotency-Key in a lower-case spelling (net/http sends the key as written) is the
// caller's key: the engine adds none of its own, and the POST counts as safe to repeat, so a lost
// answer is resent with that key and the server makes one order.
func TestLowerCaseCallerKeyMakesPostRetryable(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, log := retryEngine(t, srv, engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.SetOrderLoss(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/orders", strings.NewReader(`{"qty":1}`))
	require.NoError(t, err)
	req.Header["idempotency-key"] = []string{"mine-lower"}
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode, "the lost answer was retried")
	_, keys := log.sends()
	assert.Equal(t, []string{"", ""}, keys, "two sends, no canonical key added by the engine")
	assert.EqualValues(t, 1, srv.Orders())
}
