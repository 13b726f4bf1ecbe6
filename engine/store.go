package engine

import (
	"context"
	"sync"
)

// MemoryStore is a TokenStore that keeps the pair in memory: for tests, demos, and processes that
// share one store between engines. The zero value is empty and ready. It is safe for concurrent use.
type MemoryStore struct {
	mu    sync.Mutex // guards t and saves
	t     Tokens
	saves int
}

// Load returns the stored pair (zero Tokens if none).
func (s *MemoryStore) Load(context.Context) (Tokens, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t, nil
}

// Save replaces the stored pair.
func (s *MemoryStore) Save(_ context.Context, t Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = t
	s.saves++
	return nil
}

// Saves says how many times Save was called.
func (s *MemoryStore) Saves() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}
