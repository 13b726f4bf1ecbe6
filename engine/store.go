package engine

import (
	"context"
	"sync"
)

// TokenStore persists credentials across restarts; the engine's token actor is its one writer.
//
// The rule: a refreshed pair is saved before anyone uses it (the old refresh token is spent), and
// every pair given to SetTokens is saved too, all in the order they came into force. Each Load and
// Save is waited for at most the refresh timeout. When a Save fails (or does not return in time) the
// new pair is used from memory at once (the only safe choice: the stored refresh token is spent), a
// *SaveFailed event is published, Engine.Health returns the error, and the save is retried in the
// background, newest pair only, within the refresh timeout and until Close; a later successful
// save clears Health. TokenRefreshed is published once the first save's outcome is known (after
// SaveFailed, if it failed). Close lets a refresh under way finish and be saved. Whenever the token
// actor starts (New, or a restart after a panic) it loads what the store holds; if that Load fails
// it keeps the last pair it loaded or saved. WithTokens only seeds an empty store.
//
// One store, one engine: a store must not be shared by engines (or processes). Each engine
// refreshes from the pair in its own memory and does not reload the store before a refresh, so two
// engines sharing a store would each send the refresh token the other already spent, and a server
// with reuse detection would revoke the session.
//
// Load and Save are the engine's only access to the store. Implementations must be safe for
// concurrent use.
type TokenStore interface {
	// Load returns the stored credentials, or zero Tokens and a nil error when nothing is stored.
	Load(ctx context.Context) (Tokens, error)
	// Save stores t, replacing what was stored.
	Save(ctx context.Context, t Tokens) error
}

// MemoryStore is a TokenStore that keeps the pair in memory: for tests, demos, and an engine whose
// credentials need not outlive the process. Give each engine its own (see TokenStore). The zero
// value is empty and ready. It is safe for concurrent use.
type MemoryStore struct {
	mu sync.Mutex // guards t
	t  Tokens
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
	return nil
}
