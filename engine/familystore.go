package engine

import (
	"context"
	"sync"
)

// FamilyStore persists the credentials of many families, each under the key the application gave
// Engine.Family. It is what a family's token actor loads whenever it is activated (on first use,
// and again after it was passivated for being idle) and where it saves every new pair before using
// it, under the same rules as TokenStore (see there). The engine is the one writer of each key;
// within one engine each family's saves come in order.
//
// Load and Save must be safe for concurrent use, across keys. A persistent implementation shared by
// several processes on one host is in the nested module github.com/resilientclient/resilient/sqlitestore.
type FamilyStore interface {
	// Load returns the credentials stored under family, or zero Tokens and a nil error when none are.
	Load(ctx context.Context, family string) (Tokens, error)
	// Save stores t under family, replacing what was stored there.
	Save(ctx context.Context, family string, t Tokens) error
}

// MemoryFamilyStore is a FamilyStore that keeps every family's pair in memory: for tests, demos,
// and engines whose credentials need not outlive the process. It is the families' store of an
// engine given no WithFamilyStore. The zero value is empty and ready; it is safe for concurrent use.
type MemoryFamilyStore struct {
	mu sync.Mutex // guards m
	m  map[string]Tokens
}

// Load returns the pair stored under family (zero Tokens if none).
func (s *MemoryFamilyStore) Load(_ context.Context, family string) (Tokens, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[family], nil
}

// Save replaces the pair stored under family.
func (s *MemoryFamilyStore) Save(_ context.Context, family string, t Tokens) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Tokens{}
	}
	s.m[family] = t
	return nil
}

// familyStore is one family's view of a FamilyStore: the TokenStore its token actor uses.
type familyStore struct {
	fs  FamilyStore
	key string
}

func (s familyStore) Load(ctx context.Context) (Tokens, error) { return s.fs.Load(ctx, s.key) }
func (s familyStore) Save(ctx context.Context, t Tokens) error { return s.fs.Save(ctx, s.key, t) }
