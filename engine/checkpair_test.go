package engine_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// Every pair is checked before it is installed or saved: a RefreshFunc answer with a token that
// cannot be sent is a failed refresh (passing: the session and the saved pair stay), and SetTokens
// refuses such a pair with a *ConfigError, leaving the credentials in force and the store as they were.
func TestUnsendablePairsAreNeverInstalled(t *testing.T) {
	var good atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good-access-123" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()
	store := &engine.MemoryStore{}
	start := engine.Tokens{Access: "old-access-123", Refresh: "refresh-123"}
	require.NoError(t, store.Save(context.Background(), start))
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokenStore(store),
		engine.WithRefreshFunc(func(ctx context.Context, cur engine.Tokens) (engine.Tokens, error) {
			if good.Load() {
				return engine.Tokens{Access: "good-access-123", Refresh: cur.Refresh}, nil
			}
			return engine.Tokens{Access: "bad token\r\nX-Evil: 1", Refresh: cur.Refresh, Expiry: time.Now().Add(time.Hour)}, nil
		}))
	require.NoError(t, err)
	defer closeEngine(t, e)

	_, err = fetchStatus(e, api.URL+"/x")
	require.Error(t, err)
	assert.ErrorIs(t, err, engine.ErrRefreshFailed)
	assert.ErrorIs(t, err, engine.ErrMalformedTokenAnswer)
	assert.NotErrorIs(t, err, engine.ErrSessionExpired)
	saved, err := store.Load(context.Background())
	require.NoError(t, err)
	assert.Equal(t, start, saved, "the refused pair is not saved")

	for _, bad := range []engine.Tokens{
		{Access: "x\ny", Refresh: "r"},
		{Access: "fine-access", Refresh: "r\r\n"},
		{Access: "fine-access", Refresh: "r", Type: "Bearer\r\nX: y"},
	} {
		err := e.SetTokens(context.Background(), bad)
		require.Error(t, err)
		var ce *engine.ConfigError
		assert.ErrorAs(t, err, &ce)
		assert.ErrorIs(t, err, engine.ErrInvalidConfig)
		assert.NotContains(t, err.Error(), bad.Access)
	}
	saved, err = store.Load(context.Background())
	require.NoError(t, err)
	assert.Equal(t, start, saved, "no refused pair is saved")

	good.Store(true)
	status, err := fetchStatus(e, api.URL+"/x")
	require.NoError(t, err, "the session lives on")
	assert.Equal(t, http.StatusOK, status)
}
