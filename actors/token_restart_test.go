package actors

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/internal/fakeapi"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// boom is a message the test middleware panics on, outside the actor's own recovery: the panic
// reaches protoactor's supervisor, which restarts the actor.
type boom struct{}

// panicOnBoom is a receiver middleware that panics on boom, and holds every NeedToken while hold is
// closed-over true until gate is closed.
func panicOnBoom(hold *atomic.Bool, gate <-chan struct{}) actor.PropsOption {
	return actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			switch env.Message.(type) {
			case boom:
				panic("boom")
			case messages.NeedToken:
				if hold != nil && hold.Load() {
					<-gate
				}
			}
			next(c, env)
		}
	})
}

func spawnWith(t *testing.T, cfg TokenConfig, opts ...actor.PropsOption) (*TokenHandle, chanEvents) {
	t.Helper()
	system := newSystem(nil)
	events := make(chanEvents, 64)
	cfg.Events = events
	h, err := spawnToken(system, cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Stop(ctx))
		system.Shutdown()
	})
	return h, events
}

// The token actor restarted by its supervisor in the middle of a refresh (and again after it): the
// new incarnation adopts the running refresh with its parked requesters, then loads the rotated pair
// from the store, so neither the store nor the token endpoint ever sees a spent refresh token again.
func TestRestartMidRefreshNeverReplaysARefreshToken(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	wc := tokenwire.Config{Endpoint: srv.OAuth2TokenURL(), Format: tokenwire.OAuth2, Client: &http.Client{}, MaxBytes: 64 << 10}
	store := seeded(srv.Login("ada"))
	h, events := spawnWith(t, TokenConfig{
		Store: store,
		Refresh: func(ctx context.Context, cur messages.Tokens) (messages.Tokens, error) {
			return tokenwire.Refresh(ctx, wc, cur, time.Now())
		},
		RequiresRefreshToken: true, RefreshTimeout: 5 * time.Second,
	}, panicOnBoom(nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	release := srv.HoldTokenCalls()
	var wg sync.WaitGroup
	var failures atomic.Int64
	rejectAll := func(n int, gen uint64) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.Rejected(ctx, gen); err != nil {
					failures.Add(1)
				}
			}()
		}
	}
	rejectAll(20, 1)
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	h.root.Send(h.pid, boom{}) // restarted mid-refresh
	rejectAll(20, 1)           // stale 401s after the restart park behind the adopted refresh
	time.Sleep(20 * time.Millisecond)
	release()
	wg.Wait()
	assert.Zero(t, failures.Load())
	ev := (<-events).(refreshedEv)
	assert.Equal(t, 40, ev.Released, "every parked requester, before and after the restart")
	assert.EqualValues(t, 1, srv.Stats().RefreshCalls, "the restart started no second refresh")
	issued := srv.IssuedTokens()
	assert.Equal(t, issued[len(issued)-1], store.current().Refresh)

	h.root.Send(h.pid, boom{})        // restarted again: the state comes from the store
	g, err := h.acquireByMessage(ctx) // (after the restart: the mailbox is in order)
	require.NoError(t, err)
	_, err = h.Rejected(ctx, g.Gen)
	require.NoError(t, err)
	assert.EqualValues(t, 2, srv.Stats().RefreshCalls)
	assert.Zero(t, srv.Stats().ReuseDetected, "no spent refresh token reached the endpoint")
	issued = srv.IssuedTokens()
	assert.Equal(t, issued[len(issued)-1], store.current().Refresh)
}

// A requester whose context ends before the token actor reads its message is not counted as
// parked: the refresh's Released counts only the requester that waited for it.
func TestGivenUpRequestersAreNotCountedAsParked(t *testing.T) {
	g := newGate()
	var hold atomic.Bool
	gate := make(chan struct{})
	h, events := spawnWith(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), Refresh: g.refresh,
		RequiresRefreshToken: true, RefreshTimeout: time.Minute}, panicOnBoom(&hold, gate))
	keep := make(chan error, 1)
	go func() { _, err := h.Rejected(context.Background(), 1); keep <- err }()
	<-g.started

	hold.Store(true) // the actor stops reading NeedToken messages
	var gone sync.WaitGroup
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		gone.Add(1)
		go func() {
			defer gone.Done()
			_, err := h.acquireByMessage(ctx)
			assert.ErrorIs(t, err, context.Canceled)
		}()
		time.AfterFunc(20*time.Millisecond, cancel)
	}
	gone.Wait()
	hold.Store(false)
	close(gate)
	time.Sleep(50 * time.Millisecond) // the actor reads the 200 messages of requesters already gone
	g.answer <- refreshAnswer{t: messages.Tokens{Access: "t2", Refresh: "r2"}}
	require.NoError(t, <-keep)
	ev := (<-events).(refreshedEv)
	assert.Equal(t, 1, ev.Released, "only the requester that waited")
}

// The proactive refresh: skew before expiry, not before half the remaining life, not sooner than
// the minimum interval after the last refresh, but always before nine tenths of the life.
func TestProactiveDelay(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		life      time.Duration
		lastStart time.Duration // before now; 0: never refreshed
		want      time.Duration
		ok        bool
	}{
		{"long token: skew before expiry", time.Hour, 0, time.Hour - 30*time.Second, true},
		{"short token: half-way", 10 * time.Second, 0, 5 * time.Second, true},
		{"refreshed a moment ago: the minimum interval", 1800 * time.Millisecond, time.Nanosecond, time.Second - time.Nanosecond, true},
		{"1 s token refreshed now: the interval would reach expiry", time.Second, time.Nanosecond, 900 * time.Millisecond, true},
		{"10 ms token: nine tenths of its life", 10 * time.Millisecond, time.Millisecond, 9 * time.Millisecond, true},
		{"expired", -time.Second, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last time.Time
			if tc.lastStart > 0 {
				last = now.Add(-tc.lastStart)
			}
			got, ok := proactiveDelay(now, now.Add(tc.life), last, 30*time.Second, time.Second)
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, tc.want, got)
			}
		})
	}
}
