package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/resilientclient/resilient/engine"
)

// ErrConflict: a Save found the family's row changed (or created) by another writer since this
// Store last loaded or saved it, and stored nothing. The row holds a newer pair (perhaps a refresh
// token rotated by another process) that must not be overwritten with an older one: Load the family
// to get it.
var ErrConflict = errors.New("sqlitestore: the stored pair changed since this store last loaded or saved it")

// Load returns the pair stored under family, or zero Tokens and a nil error when there is none,
// and remembers the row's version for the next Save of family.
func (s *Store) Load(ctx context.Context, family string) (engine.Tokens, error) {
	var (
		t       engine.Tokens
		expiry  int64
		version int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT access, refresh, expiry_unix_nano, type, version FROM resilient_tokens WHERE family = ?`,
		family).Scan(&t.Access, &t.Refresh, &expiry, &t.Type, &version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// version stays 0: no row expected
	case err != nil:
		return engine.Tokens{}, fmt.Errorf("sqlitestore: load family %q: %w", family, err)
	default:
		if expiry != 0 {
			t.Expiry = time.Unix(0, expiry)
		}
	}
	s.remember(family, version)
	return t, nil
}

// Save stores t under family if the row is still at the version this Store last loaded or saved
// (none, for a family it never loaded: then the row must not exist). Otherwise it stores nothing
// and returns an error wrapping ErrConflict. An Expiry outside the years 1678 to 2262 (what Unix
// nanoseconds hold) is refused; the zero Expiry is stored as 0, and so is exactly the Unix epoch,
// which then loads as the zero time.
func (s *Store) Save(ctx context.Context, family string, t engine.Tokens) error {
	expiry, err := unixNano(t.Expiry)
	if err != nil {
		return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
	}
	s.mu.Lock()
	version := s.versions[family]
	s.mu.Unlock()

	now := time.Now().UnixNano()
	var res sql.Result
	if version == 0 {
		res, err = s.db.ExecContext(ctx,
			`INSERT INTO resilient_tokens (family, access, refresh, expiry_unix_nano, type, version, updated_unix_nano)
			 VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (family) DO NOTHING`,
			family, t.Access, t.Refresh, expiry, t.Type, now)
	} else {
		res, err = s.db.ExecContext(ctx,
			`UPDATE resilient_tokens
			 SET access = ?, refresh = ?, expiry_unix_nano = ?, type = ?, version = version + 1, updated_unix_nano = ?
			 WHERE family = ? AND version = ?`,
			t.Access, t.Refresh, expiry, t.Type, now, family, version)
	}
	if err != nil {
		return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlitestore: save family %q over version %d: %w", family, version, ErrConflict)
	}
	s.remember(family, version+1)
	return nil
}

// remember records the row version of family that this Store last loaded or saved. The database's
// compare-and-swap is what keeps an older pair from overwriting a newer one; this only chooses the
// version a Save expects.
func (s *Store) remember(family string, version int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[family] = version
}

// unixNano is t in Unix nanoseconds, 0 for the zero time, or an error when t is outside what an
// int64 of nanoseconds holds (time.Time.UnixNano's result is undefined there).
func unixNano(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("expiry %s is outside the years 1678 to 2262", t.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// For is the engine.TokenStore of one family in s, for engine.WithTokenStore. It shares s's
// versions: calls through it and through s for the same family are one writer's calls.
func (s *Store) For(family string) engine.TokenStore {
	return familyStore{s: s, family: family}
}

// familyStore is one family's view of a Store.
type familyStore struct {
	s      *Store
	family string
}

func (f familyStore) Load(ctx context.Context) (engine.Tokens, error) {
	return f.s.Load(ctx, f.family)
}

func (f familyStore) Save(ctx context.Context, t engine.Tokens) error {
	return f.s.Save(ctx, f.family, t)
}
