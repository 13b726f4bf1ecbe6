package actors

import (
	"context"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/resilientclient/resilient/messages"
)

// Acquire is AcquireAt with the clock read now, for tests and benchmarks.
func (h *TokenHandle) Acquire(ctx context.Context) (Grant, error) {
	return h.AcquireAt(ctx, time.Now())
}

// AcquireByMessage always asks the token actor by message: benchmarks measure what the snapshot saves.
func (h *TokenHandle) AcquireByMessage(ctx context.Context) (Grant, error) {
	return h.acquireByMessage(ctx)
}

// memStore is a TokenStore in memory that records what it was asked to save.
type memStore struct {
	mu    sync.Mutex // guards the fields below
	t     messages.Tokens
	saves []messages.Tokens
	fail  int // the next fail saves fail
}

func seeded(t messages.Tokens) *memStore { return &memStore{t: t} }

func (s *memStore) Load(context.Context) (messages.Tokens, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t, nil
}

func (s *memStore) Save(_ context.Context, t messages.Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errStoreDown
	}
	s.t = t
	s.saves = append(s.saves, t)
	return nil
}

func (s *memStore) current() messages.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

type storeDown struct{}

func (storeDown) Error() string { return "store down" }

var errStoreDown error = storeDown{}

// Running says how many RoundTrip calls have not returned.
func (f *Inflight) Running() int64 { return f.running.Load() }

// spawnToken is SpawnToken with extra props options (tests add a middleware that panics, to make
// protoactor restart the actor).
func spawnToken(system *actor.ActorSystem, cfg TokenConfig, opts ...actor.PropsOption) (*TokenHandle, error) {
	h, cfg, err := newTokenHandle(system, cfg)
	if err != nil {
		return nil, err
	}
	if err := h.spawn(system, cfg.Name, actor.PropsFromProducer(func() actor.Actor { return newTokenActor(cfg, h) }, opts...)); err != nil {
		return nil, err
	}
	return h, nil
}
