package sqlitestore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// committedButFailed saves tok under family with a context that ends while SQLite commits: the
// driver then reports the context's error although the row was written, which is the case the
// Store must not mistake for another writer's row. It returns the version the row now has.
//
// A commit hook on the Store's one connection (cancelAtCommit) cancels the save's context; an attempt
// where the driver saw it too late (the save returns nil) is made again, up to a bound.
func committedButFailed(t *testing.T, s *Store, family string, tok engine.Tokens) int64 {
	t.Helper()
	ctx := testContext(t)
	for range 20 {
		saveCtx, cancel := context.WithCancel(ctx)
		cancelAtCommit(t, s.db, cancel)
		err := s.Save(saveCtx, family, tok)
		cancel()
		got, version, ok := row(t, s, family)
		if err != nil && ok && got == tok {
			require.ErrorIs(t, err, context.Canceled)
			return version
		}
		require.NoError(t, err, "a save that failed without committing")
	}
	t.Fatal("no save was committed and reported failed in 20 attempts")
	return 0
}

// A save that the driver reported failed but that was committed is the Store's own write: the
// next save goes over it instead of failing with ErrConflict forever (which would leave a spent
// refresh token in the file once the engine rotates the pair again).
func TestACommittedSaveReportedFailedIsOwn(t *testing.T) {
	for _, loadFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("loaded first: ", loadFirst), func(t *testing.T) {
			s := openStore(t, "")
			ctx := testContext(t)
			if loadFirst {
				require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "a0", Refresh: "r0"}))
			}
			v := committedButFailed(t, s, "f", engine.Tokens{Access: "a1", Refresh: "r1"})

			next := engine.Tokens{Access: "a2", Refresh: "r2", Expiry: time.Unix(1_900_000_000, 0), Type: "DPoP"}
			require.NoError(t, s.Save(ctx, "f", next))
			got, version, _ := row(t, s, "f")
			assertSameTokens(t, next, got)
			assert.Equal(t, v+1, version)
		})
	}
}

// But if another writer changed the row after a failed save, committed or not, the next save is a
// conflict like any other: the other writer's pair is newer. (Their row has the version the failed
// save would have had, so only its values tell it from the failed save's.)
func TestAFailedSaveThenAnotherWriter(t *testing.T) {
	tests := []struct {
		name string
		fail func(t *testing.T, s *Store)
	}{
		{"committed", func(t *testing.T, s *Store) {
			committedButFailed(t, s, "f", engine.Tokens{Access: "a1", Refresh: "r1"})
		}},
		{"not committed", func(t *testing.T, s *Store) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			require.ErrorIs(t, s.Save(ctx, "f", engine.Tokens{Access: "a1", Refresh: "r1"}), context.Canceled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.db")
			s, other := openStore(t, path), openStore(t, path)
			ctx := testContext(t)
			require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "a0", Refresh: "r0"}))
			tt.fail(t, s)
			_, err := other.Load(ctx, "f")
			require.NoError(t, err)
			theirs := engine.Tokens{Access: "theirs", Refresh: "theirs"}
			require.NoError(t, other.Save(ctx, "f", theirs))

			require.ErrorIs(t, s.Save(ctx, "f", engine.Tokens{Access: "a2", Refresh: "r2"}), ErrConflict)
			got, _, _ := row(t, s, "f")
			assert.Equal(t, theirs, got)
		})
	}
}
