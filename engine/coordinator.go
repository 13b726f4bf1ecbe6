package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Coordinator is the store through which the replicas of a service (engines in several processes,
// or in one) share credential families: with it, all the engines holding a family make at most one
// refresh per generation between them, and never send a refresh token another one already spent.
// Give the same Coordinator (the same database) to every replica with WithCluster.
//
// How the engine uses it, for each refresh of a family: take the family's lock; Load the stored
// pair; if it is not the pair this engine holds, another replica refreshed already: use the stored
// pair, with no call to the token endpoint; otherwise refresh, Commit the new pair at the version
// read, and unlock. A replica whose token is rejected, or expires, refreshes the same way, and so
// learns the new pair from the store.
//
// An implementation must give two guarantees, whatever the network does:
//   - the lock is a lease: it is released by Unlock, or ends by itself when its holder dies or loses
//     the store for the lease's time to live, so a dead replica never blocks the others for long;
//   - Commit is conditional: it stores the pair only if the version stored is still the one given
//     (nothing else committed since it was read), atomically; else it fails with ErrConflict.
//
// The lock alone is not enough (a lease can end while its holder still runs), nor is routing (two
// activations of one virtual actor can exist at once): Commit's condition is what keeps a spent
// refresh token from ever replacing a newer pair. Implementations: sqlitestore (the processes of
// one host share a file) and etcdstore (a cluster), both nested modules. All methods must be safe
// for concurrent use.
type Coordinator interface {
	// Load returns the pair stored under family and its version; version 0 (and zero Tokens) when
	// nothing was ever stored. Versions grow with every commit.
	Load(ctx context.Context, family string) (t Tokens, version uint64, err error)
	// Commit stores t under family if the stored version is still version (0: nothing stored yet),
	// and returns the new version. If another writer committed since, it stores nothing and returns
	// an error wrapping ErrConflict.
	Commit(ctx context.Context, family string, version uint64, t Tokens) (newVersion uint64, err error)
	// Lock takes family's refresh lock, waiting until it is free or ctx ends, and returns the
	// function that releases it. The lock is a lease (see above).
	Lock(ctx context.Context, family string) (unlock func(context.Context) error, err error)
}

// ErrConflict is wrapped by a Coordinator's Commit when another writer committed since the version
// given was read.
var ErrConflict = errors.New("engine: the stored credentials changed since they were read")

// MemoryCoordinator is a Coordinator in memory, for several engines in one process (tests, demos):
// its lock is a plain mutex per family, so it has no lease to lose. Replicas in several processes
// need a real store (sqlitestore, etcdstore). The zero value is ready; it is safe for concurrent use.
type MemoryCoordinator struct {
	mu    sync.Mutex // guards below
	pairs map[string]versioned
	locks map[string]chan struct{} // a one-slot channel per family: full while locked
}

type versioned struct {
	t Tokens
	v uint64
}

// Load returns the pair stored under family and its version (0: none).
func (m *MemoryCoordinator) Load(_ context.Context, family string) (Tokens, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pairs[family]
	return p.t, p.v, nil
}

// Commit stores t if family's version is still version.
func (m *MemoryCoordinator) Commit(_ context.Context, family string, version uint64, t Tokens) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pairs[family].v != version {
		return 0, fmt.Errorf("memory coordinator: family at version %d, not %d: %w", m.pairs[family].v, version, ErrConflict)
	}
	if m.pairs == nil {
		m.pairs = map[string]versioned{}
	}
	m.pairs[family] = versioned{t: t, v: version + 1}
	return version + 1, nil
}

// Lock takes family's lock, waiting until it is free or ctx ends.
func (m *MemoryCoordinator) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]chan struct{}{}
	}
	l, ok := m.locks[family]
	if !ok {
		l = make(chan struct{}, 1)
		m.locks[family] = l
	}
	m.mu.Unlock()
	select {
	case l <- struct{}{}:
		var once sync.Once
		return func(context.Context) error { once.Do(func() { <-l }); return nil }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("memory coordinator: waiting for the lock: %w", context.Cause(ctx))
	}
}
