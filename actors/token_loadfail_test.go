package actors

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/internal/fakeapi"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// downLoads is a memStore whose Load fails while down is set.
type downLoads struct {
	*memStore
	down atomic.Bool
}

func (s *downLoads) Load(ctx context.Context) (messages.Tokens, error) {
	if s.down.Load() {
		return messages.Tokens{}, errStoreDown
	}
	return s.memStore.Load(ctx)
}

// A restart while the store cannot load keeps the credentials in force (the last pair loaded or
// saved) instead of installing empty ones and ending the session, before and after a refresh.
func TestRestartDuringLoadOutageKeepsTheCredentials(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	wc := tokenwire.Config{Endpoint: srv.OAuth2TokenURL(), Format: tokenwire.OAuth2, Client: &http.Client{}, MaxBytes: 64 << 10}
	first := srv.Login("ada")
	store := &downLoads{memStore: seeded(first)}
	h, _ := spawnWith(t, TokenConfig{
		Store: store,
		Refresh: func(ctx context.Context, cur messages.Tokens) (messages.Tokens, error) {
			return tokenwire.Refresh(ctx, wc, cur, time.Now())
		},
		RequiresRefreshToken: true, RefreshTimeout: 5 * time.Second,
	}, panicOnBoom(nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	steps := []struct {
		name    string
		refresh bool // a refresh (and its save) comes before the restart
	}{
		{"loaded pair", false},
		{"saved pair", true},
	}
	for _, step := range steps {
		g, err := h.acquireByMessage(ctx)
		require.NoError(t, err)
		if step.refresh {
			g, err = h.Rejected(ctx, g.Gen)
			require.NoError(t, err)
		}
		store.down.Store(true)
		h.root.Send(h.pid, boom{})
		after, err := h.acquireByMessage(ctx)
		require.NoError(t, err, step.name)
		assert.Equal(t, g.Header, after.Header, "%s: the same token after the restart", step.name)
		store.down.Store(false)
	}
	assert.Zero(t, srv.Stats().ReuseDetected)
}

// A refresh's retry window ends at its requesters' latest deadline, capped by the refresh timeout;
// a requester without a deadline does not shorten it for the others.
func TestRefreshWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	timeout := 10 * time.Second
	cases := []struct {
		name      string
		deadlines []time.Time // zero: a requester without a deadline
		want      time.Time
	}{
		{"nobody yet", nil, start.Add(timeout)},
		{"one deadline inside", []time.Time{start.Add(3 * time.Second)}, start.Add(3 * time.Second)},
		{"deadline past the timeout", []time.Time{start.Add(time.Minute)}, start.Add(timeout)},
		{"latest deadline wins", []time.Time{start.Add(2 * time.Second), start.Add(5 * time.Second)}, start.Add(5 * time.Second)},
		{"no deadline does not shorten", []time.Time{start.Add(time.Minute), {}}, start.Add(timeout)},
		{"no deadline alone", []time.Time{{}}, start.Add(timeout)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &refreshRun{started: start}
			for _, d := range tc.deadlines {
				r.noteDeadline(d)
			}
			assert.Equal(t, tc.want, r.window(timeout))
		})
	}
}
