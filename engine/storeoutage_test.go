package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// hungStore is a MemoryStore whose saves, once hang is set, neither return nor look at their
// context until release is called: the worst store there is.
type hungStore struct {
	engine.MemoryStore
	mu      sync.Mutex
	hang    bool
	release chan struct{}
}

func (s *hungStore) Save(ctx context.Context, t engine.Tokens) error {
	s.mu.Lock()
	hang := s.hang
	s.mu.Unlock()
	if hang {
		<-s.release
		return context.DeadlineExceeded
	}
	return s.MemoryStore.Save(ctx, t)
}

// A store that is down (its saves fail, or hang ignoring their context) does not hold the parked
// requests for the refresh timeout: they get the new pair once the first save fails or times out,
// and Close returns within its context without leaking the background retries (goleak checks).
func TestStoreOutageDoesNotHoldRequestsOrClose(t *testing.T) {
	cases := []struct {
		name string
		hang bool
	}{
		{"saves fail", false},
		{"saves hang", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
			var store engine.TokenStore
			if tc.hang {
				hs := &hungStore{release: make(chan struct{})}
				require.NoError(t, hs.MemoryStore.Save(context.Background(), srv.Login("ada")))
				t.Cleanup(func() { close(hs.release) })
				hs.mu.Lock()
				hs.hang = true
				hs.mu.Unlock()
				store = hs
			} else {
				fs := &flakyStore{}
				require.NoError(t, fs.MemoryStore.Save(context.Background(), srv.Login("ada")))
				fs.setFail(-1)
				store = fs
			}
			// The refresh timeout bounds each store call: a request whose deadline is far shorter
			// succeeds only if it does not wait for the store to give up.
			e := storeEngine(t, srv, store, engine.WithRefreshTimeout(30*time.Second))
			srv.ExpireAccessTokens()
			if tc.hang {
				// A hung save is waited for up to the refresh timeout, so only the failing store
				// serves the request within a short deadline; the hung one must still let Close go.
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, _ = engine.GetJSON[item](ctx, e, "/items/1")
				cancel()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := engine.GetJSON[item](ctx, e, "/items/1")
				cancel()
				require.NoError(t, err, "the new pair is served from memory at once")
				assert.ErrorIs(t, e.Health(), engine.ErrSaveFailed)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := e.Close(ctx) // returns by its deadline even when the store hangs
			if !tc.hang {
				assert.NoError(t, err, "the background retries stop when Close asks")
			}
			assert.Zero(t, srv.Stats().ReuseDetected)
		})
	}
}
