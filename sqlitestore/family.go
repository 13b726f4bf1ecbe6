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
// to get it. The Coordinator's Commit wraps it too, for a row changed since the version it was given.
// It wraps engine.ErrConflict, so errors.Is matches either: the engine's cluster mode reads the
// Coordinator's conflicts by the engine's sentinel.
var ErrConflict = fmt.Errorf("sqlitestore: the stored pair changed since it was read: %w", engine.ErrConflict)

// familyState is what a Store knows of one family's row.
type familyState struct {
	version int64 // the row version this Store last loaded or saved; 0: no row expected
	// unsure, if not nil, is a save that failed in a way that leaves open whether it was committed:
	// the driver reports a context that ends during a commit as the write's error, though the
	// row was written. The next Save looks whether the row is that save's.
	unsure *written
}

// written is one save's row: its version and the values it wrote.
type written struct {
	version, expiry, updated int64
	tok                      engine.Tokens
}

// Load returns the pair stored under family, or zero Tokens and a nil error when there is none,
// and remembers the row's version for the next Save of family.
func (s *Store) Load(ctx context.Context, family string) (engine.Tokens, error) {
	t, version, err := loadRow(ctx, s.db, "resilient_tokens", family)
	if err != nil {
		return engine.Tokens{}, err
	}
	s.setState(family, familyState{version: version})
	return t, nil
}

// loadRow reads family's row of table (a Store's or a Coordinator's, a constant): its pair and its
// version, or zero Tokens and version 0 when there is none.
func loadRow(ctx context.Context, db *sql.DB, table, family string) (engine.Tokens, int64, error) {
	var (
		t       engine.Tokens
		expiry  int64
		version int64
	)
	err := db.QueryRowContext(ctx,
		`SELECT access, refresh, expiry_unix_nano, type, version FROM `+table+` WHERE family = ?`,
		family).Scan(&t.Access, &t.Refresh, &expiry, &t.Type, &version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return engine.Tokens{}, 0, nil
	case err != nil:
		return engine.Tokens{}, 0, fmt.Errorf("sqlitestore: load family %q: %w", family, err)
	}
	if expiry != 0 {
		t.Expiry = time.Unix(0, expiry)
	}
	return t, version, nil
}

// Save stores t under family if the row is still at the version this Store last loaded or saved
// (none, for a family it never loaded: then the row must not exist). Otherwise it stores nothing
// and returns an error wrapping ErrConflict. An Expiry outside the years 1678 to 2262 (what Unix
// nanoseconds hold) is refused; the zero Expiry is stored as 0, and so is exactly the Unix epoch,
// which then loads as the zero time.
//
// A Save that returns an error other than ErrConflict may still have been written (the driver
// reports a context that ends during the commit as a failure). The Store keeps that pair in memory
// until the next Save of the family, which first looks whether the row is exactly that write: if
// so it goes on from it, as its writer.
func (s *Store) Save(ctx context.Context, family string, t engine.Tokens) error {
	expiry, err := unixNano(t.Expiry)
	if err != nil {
		return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
	}
	st := s.state(family)
	if st.unsure != nil {
		if st, err = s.settle(ctx, family, st); err != nil {
			return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
		}
	}

	w := written{version: st.version + 1, expiry: expiry, updated: time.Now().UnixNano(), tok: t}
	var res sql.Result
	if st.version == 0 {
		res, err = s.db.ExecContext(ctx,
			`INSERT INTO resilient_tokens (family, access, refresh, expiry_unix_nano, type, version, updated_unix_nano)
			 VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (family) DO NOTHING`,
			family, t.Access, t.Refresh, expiry, t.Type, w.updated)
	} else {
		res, err = s.db.ExecContext(ctx,
			`UPDATE resilient_tokens
			 SET access = ?, refresh = ?, expiry_unix_nano = ?, type = ?, version = version + 1, updated_unix_nano = ?
			 WHERE family = ? AND version = ?`,
			t.Access, t.Refresh, expiry, t.Type, w.updated, family, st.version)
	}
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		s.setState(family, familyState{version: st.version, unsure: &w})
		return fmt.Errorf("sqlitestore: save family %q: %w", family, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlitestore: save family %q over version %d: %w", family, st.version, ErrConflict)
	}
	s.setState(family, familyState{version: w.version})
	return nil
}

// settle finds out whether st's unsure save was committed: if the row is still that save's (its
// version, time and values), it is this Store's own write, and the next save goes over it. If
// not, the save was not committed, or another writer has changed the row since, and the next
// save expects the version before it (and so meets ErrConflict in the second case).
func (s *Store) settle(ctx context.Context, family string, st familyState) (familyState, error) {
	w := st.unsure
	var mine bool
	err := s.db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM resilient_tokens WHERE family = ? AND version = ? AND updated_unix_nano = ?
		 AND access = ? AND refresh = ? AND expiry_unix_nano = ? AND type = ?)`,
		family, w.version, w.updated, w.tok.Access, w.tok.Refresh, w.expiry, w.tok.Type).Scan(&mine)
	if err != nil {
		return st, err
	}
	if mine {
		return familyState{version: w.version}, nil
	}
	return familyState{version: st.version}, nil
}

func (s *Store) state(family string) familyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.families[family]
}

// setState records what this Store knows of family's row. The database's compare-and-swap is what
// keeps an older pair from overwriting a newer one; this only chooses the version a Save expects.
func (s *Store) setState(family string, st familyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.families[family] = st
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
