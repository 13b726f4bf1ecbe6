package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gate is a refresh function the test drives: each call waits for the test to answer it.
type gate struct {
	calls   atomic.Int64
	started chan messages.Tokens
	answer  chan refreshAnswer
}

type refreshAnswer struct {
	t   messages.Tokens
	err error
}

func newGate() *gate {
	return &gate{started: make(chan messages.Tokens, 16), answer: make(chan refreshAnswer)}
}

func (g *gate) refresh(ctx context.Context, cur messages.Tokens) (messages.Tokens, error) {
	g.calls.Add(1)
	g.started <- cur
	select {
	case a := <-g.answer:
		return a.t, a.err
	case <-ctx.Done():
		return messages.Tokens{}, ctx.Err()
	}
}

// chanEvents delivers the token actor's events to a channel, as values of the types below.
type chanEvents chan any

type refreshedEv struct {
	Gen       uint64
	Proactive bool
	Released  int
}
type expiredEv struct {
	Err    error
	Failed int
}
type replacedEv struct{ Gen uint64 }
type saveFailedEv struct {
	Gen uint64
	Err error
}

func (c chanEvents) TokenRefreshed(gen uint64, _ time.Time, proactive bool, released int, _ time.Duration) {
	c <- refreshedEv{gen, proactive, released}
}
func (c chanEvents) SessionExpired(err error, failed int) { c <- expiredEv{err, failed} }
func (c chanEvents) TokensReplaced(gen uint64)            { c <- replacedEv{gen} }
func (c chanEvents) SaveFailed(gen uint64, err error)     { c <- saveFailedEv{gen, err} }

type fixture struct {
	system *actor.ActorSystem
	h      *TokenHandle
	events chan any
}

func start(t *testing.T, cfg TokenConfig) *fixture {
	t.Helper()
	f := &fixture{events: make(chan any, 64)}
	f.system = newSystem(nil)
	cfg.Events = chanEvents(f.events)
	h, err := SpawnToken(f.system, cfg)
	require.NoError(t, err)
	f.h = h
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.Stop(ctx))
		f.system.Shutdown()
	})
	return f
}

// acquireAsync runs Acquire (or Rejected, if gen > 0) on its own goroutine.
func (f *fixture) acquireAsync(ctx context.Context, gen uint64) <-chan result {
	out := make(chan result, 1)
	go func() {
		var g Grant
		var err error
		if gen > 0 {
			g, err = f.h.Rejected(ctx, gen)
		} else {
			g, err = f.h.Acquire(ctx)
		}
		out <- result{g, err}
	}()
	return out
}

type result struct {
	g   Grant
	err error
}

func TestTokenActorSingleFlightAndGenerations(t *testing.T) {
	g := newGate()
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), Refresh: g.refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute})
	ctx := context.Background()

	first, err := f.h.Acquire(ctx)
	require.NoError(t, err)
	assert.Equal(t, "Bearer t1", first.Header)
	assert.Equal(t, uint64(1), first.Gen)

	// 100 requests report generation 1 rejected, 100 new ones arrive during the refresh.
	var waits []<-chan result
	for range 100 {
		waits = append(waits, f.acquireAsync(ctx, 1))
	}
	require.Equal(t, "r1", (<-g.started).Refresh)
	assert.Nil(t, f.h.snap.Load(), "a rejected token is not handed out from the snapshot")
	for range 100 {
		waits = append(waits, f.acquireAsync(ctx, 0))
	}
	time.Sleep(20 * time.Millisecond) // let them all reach the mailbox: they must park, not refresh
	g.answer <- refreshAnswer{t: messages.Tokens{Access: "t2", Refresh: "r2"}}
	for _, w := range waits {
		r := <-w
		require.NoError(t, r.err)
		assert.Equal(t, "Bearer t2", r.g.Header)
		assert.Equal(t, uint64(2), r.g.Gen)
		assert.True(t, r.g.Parked(), "every one of them waited for the refresh")
	}
	assert.Equal(t, int64(1), g.calls.Load())
	ev := (<-f.events).(refreshedEv)
	assert.Equal(t, uint64(2), ev.Gen)
	assert.False(t, ev.Proactive)

	// A late 401 for generation 1: answered with generation 2, no refresh.
	late, err := f.h.Rejected(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), late.Gen)
	assert.Equal(t, int64(1), g.calls.Load())
}

func TestTokenActorParkedCancellation(t *testing.T) {
	g := newGate()
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), Refresh: g.refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute})
	keep := f.acquireAsync(context.Background(), 1)
	<-g.started
	var cancels []context.CancelFunc
	var gone []<-chan result
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		gone = append(gone, f.acquireAsync(ctx, 0))
	}
	time.Sleep(20 * time.Millisecond)
	for _, c := range cancels {
		c()
	}
	for _, w := range gone {
		assert.ErrorIs(t, (<-w).err, context.Canceled)
	}
	time.Sleep(20 * time.Millisecond) // every cancelled requester has left the Pending before the refresh ends
	g.answer <- refreshAnswer{t: messages.Tokens{Access: "t2", Refresh: "r2"}}
	require.NoError(t, (<-keep).err)
	ev := (<-f.events).(refreshedEv)
	assert.Equal(t, 1, ev.Released, "cancelled requesters left the queue")
}

func TestTokenActorPermanentFailureExpiresOnce(t *testing.T) {
	g := newGate()
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), Refresh: g.refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute})
	var waits []<-chan result
	for range 50 {
		waits = append(waits, f.acquireAsync(context.Background(), 1))
	}
	<-g.started
	time.Sleep(20 * time.Millisecond)
	g.answer <- refreshAnswer{err: fmt.Errorf("refused: %w", messages.ErrSessionExpired)}
	for _, w := range waits {
		assert.ErrorIs(t, (<-w).err, messages.ErrSessionExpired)
	}
	ev := (<-f.events).(expiredEv)
	assert.Equal(t, 50, ev.Failed)
	_, err := f.h.Acquire(context.Background())
	assert.ErrorIs(t, err, messages.ErrSessionExpired)
	assert.Equal(t, int64(1), g.calls.Load())
	assert.Empty(t, f.events, "SessionExpired is published once")

	require.NoError(t, f.h.Set(context.Background(), messages.Tokens{Access: "t9", Refresh: "r9"}))
	got, err := f.h.Acquire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "Bearer t9", got.Header)
}

// The Authorization scheme follows the tokens' Type ("Bearer" when it is empty), from the snapshot
// and from the mailbox alike.
func TestTokenActorSchemeFollowsTokenType(t *testing.T) {
	for typ, want := range map[string]string{"": "Bearer t1", "MAC": "MAC t1"} {
		f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Type: typ}), RefreshTimeout: time.Minute})
		got, err := f.h.Acquire(context.Background())
		require.NoError(t, err)
		assert.Equal(t, want, got.Header)
		got, err = f.h.AcquireByMessage(context.Background())
		require.NoError(t, err)
		assert.Equal(t, want, got.Header)
	}
}

func TestTokenActorNoRefreshTokenExpires(t *testing.T) {
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1"}), Refresh: newGate().refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute})
	_, err := f.h.Rejected(context.Background(), 1)
	require.ErrorIs(t, err, messages.ErrSessionExpired)
	assert.Contains(t, err.Error(), "no refresh token")
}

// During a proactive refresh the old, unexpired token is still handed out (snapshot and mailbox).
func TestTokenActorProactiveRefreshKeepsServing(t *testing.T) {
	g := newGate()
	f := start(t, TokenConfig{
		Store:   seeded(messages.Tokens{Access: "t1", Refresh: "r1", Expiry: time.Now().Add(400 * time.Millisecond)}),
		Refresh: g.refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute, Skew: time.Hour,
	})
	_, err := f.h.Acquire(context.Background()) // a used token is renewed proactively
	require.NoError(t, err)
	<-g.started // at half the lifetime: 200 ms
	require.NotNil(t, f.h.snap.Load())
	got, err := f.h.AcquireByMessage(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(1), got.Gen)
	g.answer <- refreshAnswer{t: messages.Tokens{Access: "t2", Refresh: "r2", Expiry: time.Now().Add(time.Hour)}}
	ev := (<-f.events).(refreshedEv)
	assert.True(t, ev.Proactive)
	got, err = f.h.Acquire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "Bearer t2", got.Header)
	assert.Equal(t, uint64(2), got.Gen)
}

// Stop answers parked requesters with ErrClosed at once, lets the refresh call under way finish,
// saves its result, and returns.
func TestTokenActorStopFailsParked(t *testing.T) {
	g := newGate()
	store := seeded(messages.Tokens{Access: "t1", Refresh: "r1"})
	f := start(t, TokenConfig{Store: store, Refresh: g.refresh, RequiresRefreshToken: true, RefreshTimeout: time.Minute})
	w := f.acquireAsync(context.Background(), 1)
	<-g.started
	time.Sleep(10 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- f.h.Stop(context.Background()) }()
	assert.ErrorIs(t, (<-w).err, messages.ErrClosed)
	g.answer <- refreshAnswer{t: messages.Tokens{Access: "t2", Refresh: "r2"}}
	require.NoError(t, <-stopped)
	assert.Equal(t, "r2", store.current().Refresh, "the refresh that ended after Stop began was saved")
	assert.Equal(t, int64(1), g.calls.Load(), "no further call")
}

// A panicking refresh function is a passing failure, not a crash.
func TestTokenActorRefreshPanic(t *testing.T) {
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), RefreshTimeout: time.Minute,
		Refresh: func(context.Context, messages.Tokens) (messages.Tokens, error) { panic("bug") }})
	_, err := f.h.Rejected(context.Background(), 1)
	require.ErrorIs(t, err, messages.ErrRefreshFailed)
	assert.False(t, errors.Is(err, messages.ErrSessionExpired))
}

// Many goroutines hammer the actor with every message kind at once: the race detector watches, and
// every request gets an answer.
func TestTokenActorConcurrentMix(t *testing.T) {
	var calls atomic.Int64
	f := start(t, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Refresh: "r1"}), RefreshTimeout: time.Minute,
		Refresh: func(ctx context.Context, cur messages.Tokens) (messages.Tokens, error) {
			n := calls.Add(1)
			time.Sleep(time.Millisecond)
			return messages.Tokens{Access: fmt.Sprintf("t%d", n+1), Refresh: fmt.Sprintf("r%d", n+1)}, nil
		}})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if i%7 == 0 {
				short, c := context.WithTimeout(ctx, time.Millisecond)
				defer c()
				_, _ = f.h.Acquire(short)
				return
			}
			g, err := f.h.Acquire(ctx)
			if err == nil && i%3 == 0 {
				_, err = f.h.Rejected(ctx, g.Gen)
			}
			if err != nil {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failures.Load())
	assert.LessOrEqual(t, calls.Load(), int64(400), "refreshes stay far below rejections")
}

// enterGate: a free slot is taken at once and given back by release; a full gate waits until the
// window closes (or the context ends) and says why, without a slot to give back; no gate, no wait.
func TestEnterGate(t *testing.T) {
	gate := make(chan struct{}, 1)
	release, err := enterGate(context.Background(), gate, time.Now().Add(time.Second))
	require.NoError(t, err)
	assert.Len(t, gate, 1, "the slot is held")

	_, err = enterGate(context.Background(), gate, time.Now().Add(20*time.Millisecond))
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the window closed while the gate was full")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = enterGate(ctx, gate, time.Now().Add(time.Second))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, gate, 1, "a failed wait takes no slot")

	release()
	assert.Empty(t, gate, "release gives the slot back")
	r2, err := enterGate(context.Background(), nil, time.Time{})
	require.NoError(t, err)
	r2()
}
