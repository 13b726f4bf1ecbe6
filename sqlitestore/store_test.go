package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/clustertest"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role)) // a child process of the multi-process tests (process_test.go)
	}
	// The cluster member program, built once for the real-process tests (cluster_test.go).
	dir, err := os.MkdirTemp("", "sqlitestore-member-")
	if err == nil {
		memberBin, err = clustertest.Build(".", "./internal/member", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// testTimeout bounds each test's calls.
const testTimeout = time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// openStore opens a Store on path (a new file in a temporary directory when path is ""), closed
// when the test ends.
func openStore(t *testing.T, path string, opts ...Option) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "tokens.db")
	}
	s, err := Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

// row is what the file holds for family, read behind the Store's back; ok is false for no row.
func row(t *testing.T, s *Store, family string) (tok engine.Tokens, version int64, ok bool) {
	t.Helper()
	var expiry int64
	err := s.db.QueryRowContext(testContext(t),
		`SELECT access, refresh, expiry_unix_nano, type, version FROM resilient_tokens WHERE family = ?`,
		family).Scan(&tok.Access, &tok.Refresh, &expiry, &tok.Type, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return engine.Tokens{}, 0, false
	}
	require.NoError(t, err)
	if expiry != 0 {
		tok.Expiry = time.Unix(0, expiry)
	}
	return tok, version, true
}

// assertSameTokens checks two pairs field by field; Expiry by instant (a loaded time has no
// monotonic reading and is in time.Local).
func assertSameTokens(t *testing.T, want, got engine.Tokens) {
	t.Helper()
	assert.Equal(t, want.Access, got.Access, "Access")
	assert.Equal(t, want.Refresh, got.Refresh, "Refresh")
	assert.Equal(t, want.Type, got.Type, "Type")
	assert.Equal(t, want.Expiry.IsZero(), got.Expiry.IsZero(), "Expiry zero")
	assert.True(t, want.Expiry.Equal(got.Expiry), "Expiry: want %s, got %s", want.Expiry, got.Expiry)
}

func TestOpenSetsWALFullSyncAndBusyTimeout(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		wantBusy int64 // milliseconds
	}{
		{"default", nil, DefaultBusyTimeout.Milliseconds()},
		{"zero means default", []Option{WithBusyTimeout(0)}, DefaultBusyTimeout.Milliseconds()},
		{"WithBusyTimeout", []Option{WithBusyTimeout(1500 * time.Millisecond)}, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, "", tt.opts...)
			ctx := testContext(t)
			var mode string
			var synchronous, busy int64
			require.NoError(t, s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			require.NoError(t, s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous))
			require.NoError(t, s.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy))
			assert.Equal(t, "wal", mode)
			assert.Equal(t, int64(2), synchronous, "synchronous=FULL")
			assert.Equal(t, tt.wantBusy, busy)
		})
	}
}

// A path is a file name, whatever characters it has: the URI the driver is given escapes them.
func TestOpenNamesTheFileItIsGiven(t *testing.T) {
	for _, name := range []string{"tokens.db", "odd ?name#with%25 chars.db", "ünïcode.sqlite"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			s := openStore(t, path)
			require.NoError(t, s.Save(testContext(t), "f", engine.Tokens{Access: "a"}))
			_, err := os.Stat(path)
			assert.NoError(t, err, "the file is at the path given")
		})
	}
}

func TestOpenFails(t *testing.T) {
	tests := []struct {
		name string
		path string
		opts []Option
	}{
		{"empty path", "", nil},
		{"no such directory", filepath.Join(t.TempDir(), "missing", "tokens.db"), nil},
		{"a directory", t.TempDir(), nil},
		{"a nil option", filepath.Join(t.TempDir(), "tokens.db"), []Option{WithBusyTimeout(time.Second), nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts...)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.True(t, strings.HasPrefix(err.Error(), "sqlitestore: open"), err.Error())
		})
	}
}

// Each pair comes back as saved from the file, read by a Store opened afresh, with the zero and a
// nanosecond-precise Expiry, the "" and DPoP types, and the "" family (the engine's default one).
func TestSaveLoadRoundTrip(t *testing.T) {
	expiry := time.Date(2031, 7, 4, 12, 30, 45, 123456789, time.UTC)
	tests := []struct {
		name   string
		family string
		tok    engine.Tokens
	}{
		{"zero expiry, default type", "tenant-1", engine.Tokens{Access: "a1", Refresh: "r1"}},
		{"nanosecond expiry, DPoP", "tenant-2", engine.Tokens{Access: "a2", Refresh: "r2", Expiry: expiry, Type: "DPoP"}},
		{"expiry in another zone", "tenant-3", engine.Tokens{Access: "a3", Expiry: expiry.In(time.FixedZone("x", -7*3600))}},
		{"expiry before 1970", "tenant-4", engine.Tokens{Access: "a4", Expiry: time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC)}},
		{"the empty family", "", engine.Tokens{Access: "a5", Refresh: "r5", Expiry: expiry, Type: "Bearer"}},
		{"only a refresh token", "tenant-6", engine.Tokens{Refresh: "r6"}},
		{"odd characters", "ténant '7'; DROP TABLE x", engine.Tokens{Access: "a'\"\x00b", Refresh: "ü\n"}},
	}
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := openStore(t, path)
	ctx := testContext(t)
	for _, tt := range tests {
		require.NoError(t, s.Save(ctx, tt.family, tt.tok), tt.name)
	}
	fresh := openStore(t, path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fresh.Load(ctx, tt.family)
			require.NoError(t, err)
			assertSameTokens(t, tt.tok, got)
		})
	}
}

func TestLoadOfNothingIsZero(t *testing.T) {
	s := openStore(t, "")
	got, err := s.Load(testContext(t), "nobody")
	require.NoError(t, err)
	assert.Equal(t, engine.Tokens{}, got)
}

// Saves of one family, one after the other, each replace the pair and count one version up.
func TestSequentialSavesReplaceAndCount(t *testing.T) {
	s := openStore(t, "")
	ctx := testContext(t)
	_, err := s.Load(ctx, "f")
	require.NoError(t, err)
	for i := 1; i <= 20; i++ {
		require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: fmt.Sprint("a", i), Refresh: fmt.Sprint("r", i)}))
	}
	tok, version, ok := row(t, s, "f")
	require.True(t, ok)
	assert.Equal(t, int64(20), version)
	assert.Equal(t, engine.Tokens{Access: "a20", Refresh: "r20"}, tok)
}

// Two Stores on one file stand for two processes: whichever saves second over a row the other
// changed meanwhile gets ErrConflict, and the row keeps the first one's pair.
func TestConflicts(t *testing.T) {
	older := engine.Tokens{Access: "older-access", Refresh: "older-refresh"}
	newer := engine.Tokens{Access: "newer-access", Refresh: "newer-refresh"}
	winner := engine.Tokens{Access: "winner-access", Refresh: "winner-refresh"}
	tests := []struct {
		name    string
		seed    bool  // a row for f exists before the two stores start
		aLoads  bool  // a loads f before b saves
		bLoads  bool  // b loads f before anybody saves
		wantRow int64 // the row's version after the winner's save
	}{
		{"both loaded, the second save loses", true, true, true, 2},
		{"both found nothing, the second insert loses", false, true, true, 1},
		{"a save without a load over an existing row loses", true, true, false, 2},
		{"an insert without a load over a row just inserted loses", false, false, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			path := filepath.Join(t.TempDir(), "tokens.db")
			if tt.seed {
				seed := openStore(t, path)
				require.NoError(t, seed.Save(ctx, "f", older))
			}
			a, b := openStore(t, path), openStore(t, path)
			if tt.aLoads {
				_, err := a.Load(ctx, "f")
				require.NoError(t, err)
			}
			if tt.bLoads {
				_, err := b.Load(ctx, "f")
				require.NoError(t, err)
			}
			require.NoError(t, a.Save(ctx, "f", winner))

			err := b.Save(ctx, "f", newer)
			require.ErrorIs(t, err, ErrConflict)
			require.ErrorIs(t, err, engine.ErrConflict, "the engine's sentinel matches too")
			tok, version, ok := row(t, a, "f")
			require.True(t, ok)
			assert.Equal(t, winner, tok, "the loser wrote nothing")
			assert.Equal(t, tt.wantRow, version)

			// The loser loads the winner's pair, and its next save goes through.
			got, err := b.Load(ctx, "f")
			require.NoError(t, err)
			assert.Equal(t, winner, got)
			require.NoError(t, b.Save(ctx, "f", newer))
			tok, _, _ = row(t, a, "f")
			assert.Equal(t, newer, tok)
			// And now the first store is the one behind.
			assert.ErrorIs(t, a.Save(ctx, "f", older), ErrConflict)
		})
	}
}

// A failing Save's error names the store and the family and wraps its cause, but never holds a
// token, whichever way it fails.
func TestErrorsHoldNoTokens(t *testing.T) {
	tok := engine.Tokens{Access: "secret-access-token", Refresh: "secret-refresh-token", Type: "DPoP"}
	tests := []struct {
		name string
		save func(t *testing.T) error
		is   error
	}{
		{"conflict", func(t *testing.T) error {
			path := filepath.Join(t.TempDir(), "tokens.db")
			require.NoError(t, openStore(t, path).Save(testContext(t), "f", tok))
			return openStore(t, path).Save(testContext(t), "f", tok)
		}, ErrConflict},
		{"cancelled context", func(t *testing.T) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return openStore(t, "").Save(ctx, "f", tok)
		}, context.Canceled},
		{"closed store", func(t *testing.T) error {
			s, err := Open(filepath.Join(t.TempDir(), "tokens.db"))
			require.NoError(t, err)
			require.NoError(t, s.Close())
			return s.Save(testContext(t), "f", tok)
		}, nil},
		{"expiry out of range", func(t *testing.T) error {
			bad := tok
			bad.Expiry = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
			return openStore(t, "").Save(testContext(t), "f", bad)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.save(t)
			require.Error(t, err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, `sqlitestore: save family "f"`), msg)
			assert.NotContains(t, msg, tok.Access)
			assert.NotContains(t, msg, tok.Refresh)
			assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), "secret-")
		})
	}
}

// An Expiry that Unix nanoseconds cannot hold is refused rather than stored wrong.
func TestExpiryOutOfRangeIsRefused(t *testing.T) {
	for _, expiry := range []time.Time{
		time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		s := openStore(t, "")
		err := s.Save(testContext(t), "f", engine.Tokens{Access: "a", Expiry: expiry})
		require.Error(t, err, expiry)
		_, _, ok := row(t, s, "f")
		assert.False(t, ok, "nothing stored for %s", expiry)
	}
}

// A call whose context is already over fails at once with its error.
func TestCancelledContext(t *testing.T) {
	s := openStore(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Load(ctx, "f")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Save(ctx, "f", engine.Tokens{Access: "a"}), context.Canceled)
	_, _, ok := row(t, s, "f")
	assert.False(t, ok)
}

// A Save waiting for another writer's lock (another process's, here another connection's) returns
// when its context ends, long before the busy timeout; the lock's holder is unaffected.
func TestContextEndsAWaitForTheLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := openStore(t, path, WithBusyTimeout(30*time.Second))
	ctx := testContext(t)
	require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "a1"}))

	other := openStore(t, path)
	holder, err := other.db.Conn(ctx)
	require.NoError(t, err)
	defer holder.Close()
	_, err = holder.ExecContext(ctx, "BEGIN IMMEDIATE") // takes the write lock and keeps it
	require.NoError(t, err)

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Save(short, "f", engine.Tokens{Access: "a2"})
	waited := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, waited, 15*time.Second, "returned with its context, not after the busy timeout")

	_, err = holder.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	got, err := s.Load(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, "a1", got.Access, "the interrupted save stored nothing")
	require.NoError(t, s.Save(ctx, "f", engine.Tokens{Access: "a3"}), "and the store is usable after it")
}

// A hundred goroutines load and save a family each while one more saves one family over and over:
// every row ends as its last save left it. Run with -race.
func TestConcurrentFamilies(t *testing.T) {
	s := openStore(t, "")
	ctx := testContext(t)
	const goroutines, sequential = 100, 50
	pair := func(family string, n int) engine.Tokens {
		return engine.Tokens{Access: fmt.Sprintf("%s-a%d", family, n), Refresh: fmt.Sprintf("%s-r%d", family, n),
			Expiry: time.Unix(1_900_000_000, int64(n))}
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+1)
	for g := range goroutines {
		family := fmt.Sprintf("family-%03d", g)
		wg.Go(func() {
			for n := 1; n <= 3; n++ {
				got, err := s.Load(ctx, family)
				if err != nil {
					errs <- err
					return
				}
				if n > 1 && got.Access != pair(family, n-1).Access {
					errs <- fmt.Errorf("%s: loaded %q after save %d", family, got.Access, n-1)
					return
				}
				if err := s.Save(ctx, family, pair(family, n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for n := 1; n <= sequential; n++ {
			if err := s.For("shared").Save(ctx, pair("shared", n)); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	for g := range goroutines {
		family := fmt.Sprintf("family-%03d", g)
		tok, version, ok := row(t, s, family)
		require.True(t, ok, family)
		assertSameTokens(t, pair(family, 3), tok)
		assert.Equal(t, int64(3), version, family)
	}
	tok, version, _ := row(t, s, "shared")
	assertSameTokens(t, pair("shared", sequential), tok)
	assert.Equal(t, int64(sequential), version)
}

// For is the Store seen through one family: same rows, same versions.
func TestForIsOneFamilyOfTheStore(t *testing.T) {
	s := openStore(t, "")
	ctx := testContext(t)
	ts := s.For("tenant-1")
	require.NoError(t, ts.Save(ctx, engine.Tokens{Access: "a1"}))
	got, err := s.Load(ctx, "tenant-1")
	require.NoError(t, err)
	assert.Equal(t, "a1", got.Access)
	require.NoError(t, s.Save(ctx, "tenant-1", engine.Tokens{Access: "a2"}))
	require.NoError(t, ts.Save(ctx, engine.Tokens{Access: "a3"}), "For shares the Store's versions")
	got, err = ts.Load(ctx)
	require.NoError(t, err)
	assert.Equal(t, "a3", got.Access)
	other, err := s.For("tenant-2").Load(ctx)
	require.NoError(t, err)
	assert.Equal(t, engine.Tokens{}, other)
}

func TestCallsAfterCloseFail(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "tokens.db"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Load(testContext(t), "f")
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), `sqlitestore: load family "f"`), err.Error())
}
