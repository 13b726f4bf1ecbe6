package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/resilientclient/resilient/engine"
)

// openCoordinator opens a Coordinator on path (a new file in a temporary directory when path is
// ""), closed when the test ends.
func openCoordinator(t *testing.T, path string, opts ...Option) *Coordinator {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "cluster.db")
	}
	c, err := OpenCoordinator(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// clusterRow is what the file holds for family in the Coordinator's table; ok is false for no row.
func clusterRow(t *testing.T, c *Coordinator, family string) (tok engine.Tokens, version int64, ok bool) {
	t.Helper()
	tok, v, err := c.Load(testContext(t), family)
	require.NoError(t, err)
	return tok, int64(v), v != 0
}

func TestOpenCoordinatorSettings(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantTTL  time.Duration
		wantBusy int64 // milliseconds
	}{
		{"defaults", nil, DefaultLeaseTTL, DefaultBusyTimeout.Milliseconds()},
		{"zero means default", []Option{WithLeaseTTL(0), WithBusyTimeout(0)}, DefaultLeaseTTL, DefaultBusyTimeout.Milliseconds()},
		{"the minimum", []Option{WithLeaseTTL(MinLeaseTTL)}, MinLeaseTTL, DefaultBusyTimeout.Milliseconds()},
		{"both set", []Option{WithLeaseTTL(3 * time.Second), WithBusyTimeout(1500 * time.Millisecond)}, 3 * time.Second, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCoordinator(t, "", tt.opts...)
			assert.Equal(t, tt.wantTTL, c.ttl)
			ctx := testContext(t)
			var mode string
			var synchronous, busy int64
			require.NoError(t, c.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			require.NoError(t, c.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous))
			require.NoError(t, c.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy))
			assert.Equal(t, "wal", mode)
			assert.Equal(t, int64(2), synchronous, "synchronous=FULL")
			assert.Equal(t, tt.wantBusy, busy)
		})
	}
	t.Run("a lease below the minimum", func(t *testing.T) {
		c, err := OpenCoordinator(filepath.Join(t.TempDir(), "cluster.db"), WithLeaseTTL(MinLeaseTTL-time.Millisecond))
		require.Error(t, err)
		assert.Nil(t, c)
		assert.True(t, strings.HasPrefix(err.Error(), "sqlitestore: open coordinator"), err.Error())
	})
	t.Run("no path", func(t *testing.T) {
		c, err := OpenCoordinator("")
		require.Error(t, err)
		assert.Nil(t, c)
	})
	t.Run("a nil option", func(t *testing.T) {
		c, err := OpenCoordinator(filepath.Join(t.TempDir(), "cluster.db"), nil)
		require.Error(t, err)
		assert.Nil(t, c)
		assert.True(t, strings.HasPrefix(err.Error(), "sqlitestore: open coordinator"), err.Error())
	})
}

// Load and Commit, one after the other, and from a second Coordinator on the file (another
// process): each Commit over the version read goes through, any other is a conflict that changes
// nothing, matched by both this package's and the engine's sentinel.
func TestCoordinatorLoadCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	a, b := openCoordinator(t, path), openCoordinator(t, path)
	ctx := testContext(t)
	expiry := time.Date(2031, 7, 4, 12, 30, 45, 123456789, time.UTC)
	t1 := engine.Tokens{Access: "a1", Refresh: "r1", Expiry: expiry, Type: "DPoP"}
	t2 := engine.Tokens{Access: "a2", Refresh: "r2"}
	t3 := engine.Tokens{Access: "a3", Refresh: "r3"}

	got, v, err := a.Load(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, engine.Tokens{}, got)
	assert.Zero(t, v, "no row: version 0")

	nv, err := a.Commit(ctx, "f", 0, t1)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), nv)
	got, v, err = b.Load(ctx, "f")
	require.NoError(t, err)
	assertSameTokens(t, t1, got)
	assert.Equal(t, uint64(1), v)

	for _, stale := range []uint64{0, 2, 7} {
		_, err = a.Commit(ctx, "f", stale, t3)
		require.ErrorIs(t, err, ErrConflict, "over version %d", stale)
		require.ErrorIs(t, err, engine.ErrConflict, "over version %d", stale)
		assert.True(t, strings.HasPrefix(err.Error(), `sqlitestore: commit family "f"`), err.Error())
	}
	nv, err = b.Commit(ctx, "f", 1, t2)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), nv)
	_, err = a.Commit(ctx, "f", 1, t3)
	require.ErrorIs(t, err, engine.ErrConflict, "a's version 1 is stale now")
	got, v, err = a.Load(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, t2, got, "the conflicts wrote nothing")
	assert.Equal(t, uint64(2), v)

	other, v, err := a.Load(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, engine.Tokens{}, other, "families are rows of their own")
	assert.Zero(t, v)
}

// A Store and a Coordinator on one file keep to their own tables: the same family name is two
// rows that never meet.
func TestCoordinatorAndStoreShareAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	s, c := openStore(t, path), openCoordinator(t, path)
	ctx := testContext(t)
	require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "store"}))
	got, v, err := c.Load(ctx, "f")
	require.NoError(t, err)
	assert.Zero(t, v, "the Coordinator does not read the Store's row")
	assert.Equal(t, engine.Tokens{}, got)
	_, err = c.Commit(ctx, "f", 0, engine.Tokens{Access: "cluster"})
	require.NoError(t, err)
	stored, err := s.Load(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, "store", stored.Access)
	require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "store-2"}))
	got, v, err = c.Load(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, "cluster", got.Access)
	assert.Equal(t, uint64(1), v)
}

// Fifty goroutines on five Coordinators (five connections to one file) commit over the same
// version at once: exactly one wins, the others get ErrConflict, and the row is the winner's. Once
// over no row (inserts), once over a row (updates).
func TestCommitRaceHasOneWinner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	coords := make([]*Coordinator, 5)
	for i := range coords {
		coords[i] = openCoordinator(t, path)
	}
	ctx := testContext(t)
	for _, version := range []uint64{0, 1} {
		t.Run(fmt.Sprint("over version ", version), func(t *testing.T) {
			const goroutines = 50
			var (
				wg        sync.WaitGroup
				start     = make(chan struct{})
				wins      atomic.Int32
				conflicts atomic.Int32
				winner    atomic.Int32
				others    = make(chan error, goroutines)
			)
			for i := range goroutines {
				wg.Go(func() {
					<-start
					tok := engine.Tokens{Access: fmt.Sprint("a-", version, "-", i), Refresh: fmt.Sprint("r-", version, "-", i)}
					nv, err := coords[i%len(coords)].Commit(ctx, "f", version, tok)
					switch {
					case err == nil:
						wins.Add(1)
						winner.Store(int32(i))
						if nv != version+1 {
							others <- fmt.Errorf("won with version %d", nv)
						}
					case errors.Is(err, engine.ErrConflict):
						conflicts.Add(1)
					default:
						others <- err
					}
				})
			}
			close(start)
			wg.Wait()
			close(others)
			for err := range others {
				assert.NoError(t, err)
			}
			require.Equal(t, int32(1), wins.Load(), "one winner")
			assert.Equal(t, int32(goroutines-1), conflicts.Load())
			got, v, ok := clusterRow(t, coords[0], "f")
			require.True(t, ok)
			assert.Equal(t, int64(version+1), v)
			w := winner.Load()
			assert.Equal(t, engine.Tokens{Access: fmt.Sprint("a-", version, "-", w), Refresh: fmt.Sprint("r-", version, "-", w)}, got)
		})
	}
}

// cancelAtCommit makes the next commit on db's one connection call cancel, and give the driver's
// watcher goroutine a moment to see it (it cannot be observed from here), before SQLite commits:
// the driver then reports the context's error although the write was committed (the technique
// of committedButFailed).
func cancelAtCommit(t *testing.T, db *sql.DB, cancel context.CancelFunc) {
	t.Helper()
	var armed atomic.Pointer[context.CancelFunc]
	armed.Store(&cancel)
	conn, err := db.Conn(testContext(t))
	require.NoError(t, err)
	require.NoError(t, conn.Raw(func(dc any) error {
		dc.(interface{ RegisterCommitHook(sqlite.CommitHookFn) }).RegisterCommitHook(func() int32 {
			if cancel := armed.Swap(nil); cancel != nil {
				(*cancel)()
				time.Sleep(20 * time.Millisecond)
			}
			return 0 // commit
		})
		return nil
	}))
	require.NoError(t, conn.Close()) // back to the pool: the next call uses it
}

// commitReportedFailed commits tok under family with a context that ends while SQLite commits
// (cancelAtCommit). An attempt the driver saw too late succeeds; the next goes over it. It returns
// the version the reported-failed commit was over.
func commitReportedFailed(t *testing.T, c *Coordinator, family string, version uint64, tok engine.Tokens) uint64 {
	t.Helper()
	ctx := testContext(t)
	for range 20 {
		commitCtx, cancel := context.WithCancel(ctx)
		cancelAtCommit(t, c.db, cancel)
		nv, err := c.Commit(commitCtx, family, version, tok)
		cancel()
		got, _, ok := clusterRow(t, c, family)
		if err != nil && ok && got == tok {
			require.ErrorIs(t, err, context.Canceled)
			return version
		}
		require.NoError(t, err, "a commit that failed without being written")
		version = nv
	}
	t.Fatal("no commit was written and reported failed in 20 attempts")
	return 0
}

// A commit that the driver reported failed but that was written is the caller's own: the same pair
// committed again over the same version goes over it instead of failing with a conflict (the engine
// retries its commit so, and would otherwise take its own new pair for another replica's). Also after
// two such commits in a row. Another pair over that version, though, is a conflict: the caller that
// commits it never read the row (another engine sharing the Coordinator).
func TestACommitReportedFailedIsOwn(t *testing.T) {
	for _, tt := range []struct {
		name  string
		seed  bool // a row exists: the commits are updates, not inserts
		twice bool // two reported-failed commits over the same version
	}{
		{"insert", false, false},
		{"update", true, false},
		{"two in a row", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := openCoordinator(t, "")
			ctx := testContext(t)
			var base uint64
			if tt.seed {
				var err error
				base, err = c.Commit(ctx, "f", 0, engine.Tokens{Access: "a0", Refresh: "r0"})
				require.NoError(t, err)
			}
			mine := engine.Tokens{Access: "a1", Refresh: "r1", Expiry: time.Unix(1_900_000_000, 0), Type: "DPoP"}
			base = commitReportedFailed(t, c, "f", base, mine)
			want := base + 2
			if tt.twice {
				// The caller still believes the row is at base; so does the second commit.
				require.Equal(t, base, commitReportedFailed(t, c, "f", base, mine),
					"the second reported-failed commit went over the first, as its own")
				want++
			}

			_, err := c.Commit(ctx, "f", base, engine.Tokens{Access: "other", Refresh: "other"})
			require.ErrorIs(t, err, ErrConflict, "another pair over the stale version is a conflict")
			nv, err := c.Commit(ctx, "f", base, mine)
			require.NoError(t, err, "the caller's own write is no conflict")
			assert.Equal(t, want, nv)
			got, v, _ := clusterRow(t, c, "f")
			assertSameTokens(t, mine, got)
			assert.Equal(t, int64(want), v)
		})
	}
}

// But another writer's commit after a failed one, written or not, is a conflict like any other:
// theirs is the newer pair. (Their row has the version the failed commit would have had, so only
// the commit's name in the row tells them apart.)
func TestACommitReportedFailedThenAnotherWriter(t *testing.T) {
	tests := []struct {
		name string
		fail func(t *testing.T, c *Coordinator)
	}{
		{"written", func(t *testing.T, c *Coordinator) {
			require.Equal(t, uint64(1), commitReportedFailed(t, c, "f", 1, engine.Tokens{Access: "a1", Refresh: "r1"}))
		}},
		{"not written", func(t *testing.T, c *Coordinator) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := c.Commit(ctx, "f", 1, engine.Tokens{Access: "a1", Refresh: "r1"})
			require.ErrorIs(t, err, context.Canceled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cluster.db")
			c, other := openCoordinator(t, path), openCoordinator(t, path)
			ctx := testContext(t)
			_, err := c.Commit(ctx, "f", 0, engine.Tokens{Access: "a0", Refresh: "r0"})
			require.NoError(t, err)
			tt.fail(t, c)
			_, v, err := other.Load(ctx, "f")
			require.NoError(t, err)
			theirs := engine.Tokens{Access: "theirs", Refresh: "theirs"}
			_, err = other.Commit(ctx, "f", v, theirs)
			require.NoError(t, err)

			_, err = c.Commit(ctx, "f", 1, engine.Tokens{Access: "a2", Refresh: "r2"})
			require.ErrorIs(t, err, engine.ErrConflict)
			got, _, _ := clusterRow(t, c, "f")
			assert.Equal(t, theirs, got)
		})
	}
}

// A failing Commit's or Lock's error names the store and the family and wraps its cause, but
// never holds a token, whichever way it fails.
func TestCoordinatorErrorsHoldNoTokens(t *testing.T) {
	tok := engine.Tokens{Access: "secret-access-token", Refresh: "secret-refresh-token", Type: "DPoP"}
	tests := []struct {
		name   string
		commit func(t *testing.T) error
		is     error
	}{
		{"conflict", func(t *testing.T) error {
			c := openCoordinator(t, "")
			_, err := c.Commit(testContext(t), "f", 0, tok)
			require.NoError(t, err)
			_, err = c.Commit(testContext(t), "f", 0, tok)
			return err
		}, engine.ErrConflict},
		{"cancelled context", func(t *testing.T) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := openCoordinator(t, "").Commit(ctx, "f", 0, tok)
			return err
		}, context.Canceled},
		{"closed coordinator", func(t *testing.T) error {
			c, err := OpenCoordinator(filepath.Join(t.TempDir(), "cluster.db"))
			require.NoError(t, err)
			require.NoError(t, c.Close())
			_, err = c.Commit(testContext(t), "f", 0, tok)
			return err
		}, nil},
		{"expiry out of range", func(t *testing.T) error {
			bad := tok
			bad.Expiry = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
			_, err := openCoordinator(t, "").Commit(testContext(t), "f", 0, bad)
			return err
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.commit(t)
			require.Error(t, err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, `sqlitestore: commit family "f"`), msg)
			assert.NotContains(t, fmt.Sprintf("%s %+v %#v", msg, err, err), "secret-")
		})
	}
}

// After Close, every call fails, and Close again is no error.
func TestCoordinatorCallsAfterCloseFail(t *testing.T) {
	c, err := OpenCoordinator(filepath.Join(t.TempDir(), "cluster.db"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	ctx := testContext(t)
	_, _, err = c.Load(ctx, "f")
	assert.ErrorContains(t, err, `sqlitestore: load family "f"`)
	_, err = c.Lock(ctx, "f")
	assert.ErrorContains(t, err, `sqlitestore: lock family "f"`)
}
