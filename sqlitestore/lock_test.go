package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// testTTL is the lease of the lock tests: short, so that an expiry takes a second.
const testTTL = time.Second

// lockAsync calls c.Lock(ctx, family) on a goroutine of its own; the channel gets its outcome.
type lockResult struct {
	unlock func(context.Context) error
	err    error
	at     time.Time
}

func lockAsync(ctx context.Context, c *Coordinator, family string) <-chan lockResult {
	out := make(chan lockResult, 1)
	go func() {
		unlock, err := c.Lock(ctx, family)
		out <- lockResult{unlock, err, time.Now()}
	}()
	return out
}

// await waits up to d for a lock outcome, failing the test if none comes.
func awaitLock(t *testing.T, ch <-chan lockResult, d time.Duration, what string) lockResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s: no outcome within %v", what, d)
		return lockResult{}
	}
}

// notWithin checks that no outcome comes within d.
func notWithin(t *testing.T, ch <-chan lockResult, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: came within %v (err %v)", what, d, r.err)
	case <-time.After(d):
	}
}

// Two Coordinators on one file (two processes), and two callers of one Coordinator, lock a family
// exclusively: the second waits until the first unlocks, then gets it at once. Another family is
// free meanwhile.
func TestLockIsExclusive(t *testing.T) {
	for _, sameCoordinator := range []bool{false, true} {
		name := map[bool]string{false: "two coordinators", true: "one coordinator"}[sameCoordinator]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cluster.db")
			a := openCoordinator(t, path, WithLeaseTTL(testTTL))
			b := a
			if !sameCoordinator {
				b = openCoordinator(t, path, WithLeaseTTL(testTTL))
			}
			ctx := testContext(t)
			unlockA, err := a.Lock(ctx, "f")
			require.NoError(t, err)

			second := lockAsync(ctx, b, "f")
			other, err := b.Lock(ctx, "g")
			require.NoError(t, err, "another family does not wait")
			require.NoError(t, other(ctx))
			notWithin(t, second, 300*time.Millisecond, "the second lock of f while the first is held")

			unlocked := time.Now()
			require.NoError(t, unlockA(ctx))
			r := awaitLock(t, second, 5*time.Second, "the second lock of f after unlock")
			require.NoError(t, r.err)
			assert.Less(t, r.at.Sub(unlocked), 500*time.Millisecond, "taken within a few polls of the unlock")
			require.NoError(t, r.unlock(ctx))
		})
	}
}

// A Lock waiting for a held family returns soon after its context ends, with the context's error,
// and leaves the holder's lock alone; a Lock whose context has already ended returns at once.
func TestLockWaitEndsWithItsContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	a, b := openCoordinator(t, path, WithLeaseTTL(testTTL)), openCoordinator(t, path, WithLeaseTTL(testTTL))
	ctx := testContext(t)
	unlock, err := a.Lock(ctx, "f")
	require.NoError(t, err)

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Lock(short, "f")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, `sqlitestore: lock family "f"`)
	assert.Less(t, time.Since(start), time.Second, "returned with its context")

	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	_, err = b.Lock(cancelled, "g")
	require.ErrorIs(t, err, context.Canceled)
	free, err := a.Lock(ctx, "g")
	require.NoError(t, err, "the cancelled Lock left no lease on g")
	require.NoError(t, free(ctx))

	require.NoError(t, unlock(ctx), "the holder's lease is intact")
}

// A holder that stops renewing (its Coordinator closed without unlock, as when its process dies)
// keeps the family for one TTL, then another takes it.
func TestLockOfAClosedHolderEndsAfterTTL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	a, err := OpenCoordinator(path, WithLeaseTTL(testTTL))
	require.NoError(t, err)
	b := openCoordinator(t, path, WithLeaseTTL(testTTL))
	ctx := testContext(t)
	unlockA, err := a.Lock(ctx, "f")
	require.NoError(t, err)
	locked := time.Now()
	require.NoError(t, a.Close())

	r := awaitLock(t, lockAsync(ctx, b, "f"), testTTL+5*time.Second, "the lock after the holder's lease")
	require.NoError(t, r.err)
	waited := r.at.Sub(locked)
	assert.GreaterOrEqual(t, waited, testTTL, "not before the lease ended")
	assert.Less(t, waited, testTTL+time.Second, "soon after it ended")
	assert.Error(t, unlockA(ctx), "the closed holder can no longer unlock")
	require.NoError(t, r.unlock(ctx))
}

// A live holder renews its lease: held for three TTLs, the family stays its own, and its unlock
// finds the lease still its own.
func TestRenewalKeepsTheLockPastTTL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	a, b := openCoordinator(t, path, WithLeaseTTL(testTTL)), openCoordinator(t, path, WithLeaseTTL(testTTL))
	ctx := testContext(t)
	unlock, err := a.Lock(ctx, "f")
	require.NoError(t, err)
	held, cancel := context.WithTimeout(ctx, 3*testTTL)
	defer cancel()
	_, err = b.Lock(held, "f")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the lock stayed with its holder for 3 TTLs")
	require.NoError(t, unlock(ctx), "and is still its own")
	free, err := b.Lock(ctx, "f")
	require.NoError(t, err)
	require.NoError(t, free(ctx))
}

// A lease taken over (here by hand, as another holder would once it expired) is lost: the old
// holder's renewal finds it so and stops, and its unlock reports ErrLeaseLost and leaves the new
// holder's row. Unlock again returns the same.
func TestUnlockOfALostLease(t *testing.T) {
	c := openCoordinator(t, "", WithLeaseTTL(testTTL))
	before := goleak.IgnoreCurrent()
	ctx := testContext(t)
	unlock, err := c.Lock(ctx, "f")
	require.NoError(t, err)
	_, err = c.db.ExecContext(ctx, `UPDATE resilient_locks SET holder = 'someone else' WHERE family = 'f'`)
	require.NoError(t, err)
	goleak.VerifyNone(t, before) // the renewal ended at its next tick, a third of the TTL on

	err = unlock(ctx)
	require.ErrorIs(t, err, ErrLeaseLost)
	assert.ErrorContains(t, err, `sqlitestore: unlock family "f"`)
	assert.Equal(t, err, unlock(ctx), "unlock works once")
	var holder string
	require.NoError(t, c.db.QueryRowContext(ctx, `SELECT holder FROM resilient_locks WHERE family = 'f'`).Scan(&holder))
	assert.Equal(t, "someone else", holder, "the new holder's lease stays")
}

// No goroutine outlives an unlock, nor a Close with locks still held, nor a Lock that gave up.
func TestLockLeavesNoGoroutine(t *testing.T) {
	c, err := OpenCoordinator(filepath.Join(t.TempDir(), "cluster.db"), WithLeaseTTL(testTTL))
	require.NoError(t, err)
	before := goleak.IgnoreCurrent()
	ctx := testContext(t)

	unlock, err := c.Lock(ctx, "f")
	require.NoError(t, err)
	require.NoError(t, unlock(ctx))
	goleak.VerifyNone(t, before)

	_, err = c.Lock(ctx, "g")
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Lock(short, "g")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, c.Close())
	goleak.VerifyNone(t, before)
}

// A Lock whose taking of the lease the driver reported failed, though SQLite wrote it (its context
// ended during the commit: cancelAtCommit), leaves no lease behind: the family is free
// at once, not one TTL later.
func TestALockReportedFailedLeavesNoLease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.db")
	c, other := openCoordinator(t, path, WithLeaseTTL(time.Minute)), openCoordinator(t, path, WithLeaseTTL(time.Minute))
	ctx := testContext(t)
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 20, "no lock was written and reported failed in 20 attempts")
		lockCtx, cancel := context.WithCancel(ctx)
		cancelAtCommit(t, c.db, cancel)
		unlock, err := c.Lock(lockCtx, "f")
		cancel()
		if err == nil { // the driver saw the cancellation too late: a plain lock
			require.NoError(t, unlock(ctx))
			continue
		}
		require.ErrorIs(t, err, context.Canceled)
		break
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	free, err := other.Lock(short, "f")
	require.NoError(t, err, "no lease left behind by the failed Lock (its TTL is a minute)")
	require.NoError(t, free(ctx))
}
