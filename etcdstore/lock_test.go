package etcdstore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
)

type locked struct {
	unlock func(context.Context) error
	err    error
}

// lockAsync calls Lock in a goroutine and delivers its result on the channel.
func lockAsync(ctx context.Context, c *etcdstore.Coordinator, family string) <-chan locked {
	ch := make(chan locked, 1)
	go func() {
		unlock, err := c.Lock(ctx, family)
		ch <- locked{unlock, err}
	}()
	return ch
}

// await waits up to d for a Lock's result, and fails the test if none comes.
func await(t *testing.T, ch <-chan locked, d time.Duration) locked {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("Lock did not return within %v", d)
		return locked{}
	}
}

// stillWaiting checks that a Lock has not returned for a while.
func stillWaiting(t *testing.T, ch <-chan locked) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Lock returned (err %v) while another held the family", r.err)
	case <-time.After(500 * time.Millisecond):
	}
}

func mustLock(t *testing.T, c *etcdstore.Coordinator, family string) func(context.Context) error {
	t.Helper()
	unlock, err := c.Lock(bounded(t, 10*time.Second), family)
	require.NoError(t, err)
	return unlock
}

// The second holder of a family waits until the first unlocks, whether it is another replica (its
// own client and lease) or another engine of the same process (the same Coordinator).
func TestLockExcludes(t *testing.T) {
	for name, sameCoordinator := range map[string]bool{"two coordinators": false, "one coordinator": true} {
		t.Run(name, func(t *testing.T) {
			a := newCoordinator(t, newClient(t, etcdEndpoint))
			b := a
			if !sameCoordinator {
				b = newCoordinator(t, newClient(t, etcdEndpoint))
			}
			unlockA := mustLock(t, a, "f")
			second := lockAsync(bounded(t, 20*time.Second), b, "f")
			stillWaiting(t, second)

			require.NoError(t, unlockA(bounded(t, 5*time.Second)))
			r := await(t, second, 10*time.Second)
			require.NoError(t, r.err)
			assert.NoError(t, unlockA(bounded(t, 5*time.Second)), "a second unlock does nothing")

			third := lockAsync(bounded(t, 20*time.Second), a, "f")
			stillWaiting(t, third)
			require.NoError(t, r.unlock(bounded(t, 5*time.Second)))
			r = await(t, third, 10*time.Second)
			require.NoError(t, r.err)
			require.NoError(t, r.unlock(bounded(t, 5*time.Second)))
		})
	}
}

// Holding one family never delays another, even one whose key starts with the held one's.
func TestLockFamiliesAreIndependent(t *testing.T) {
	for _, tc := range []struct{ held, other string }{
		{"f", "g"},
		{"a/b", "a"}, // unescaped, a's lock prefix locks/a/ would cover a/b's lock key
		{"a", "a/b"},
		{"", "x"}, // the engine's default family
		{"x", ""},
	} {
		t.Run(tc.held+" then "+tc.other, func(t *testing.T) {
			a := newCoordinator(t, newClient(t, etcdEndpoint))
			b := newCoordinator(t, newClient(t, etcdEndpoint))
			unlockA := mustLock(t, a, tc.held)
			defer unlockA(context.Background())

			unlockB, err := b.Lock(bounded(t, 5*time.Second), tc.other)
			require.NoError(t, err, "a lock on another family waits for nothing")
			require.NoError(t, unlockB(bounded(t, 5*time.Second)))
		})
	}
}

// A Lock whose context ends while it waits returns at once with the context's error, and leaves
// nothing behind that would block the family later.
func TestLockCancelled(t *testing.T) {
	for name, tc := range map[string]struct {
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		"cancelled while waiting": {
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(300*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: context.Canceled,
		},
		"deadline while waiting": {
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		"cancelled before": {
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: context.Canceled,
		},
	} {
		t.Run(name, func(t *testing.T) {
			for _, sameCoordinator := range []bool{false, true} {
				a := newCoordinator(t, newClient(t, etcdEndpoint))
				b := a
				if !sameCoordinator {
					b = newCoordinator(t, newClient(t, etcdEndpoint))
				}
				family := "f" + strconv.FormatBool(sameCoordinator)
				unlockA := mustLock(t, a, family)

				ctx, cancel := tc.ctx()
				r := await(t, lockAsync(ctx, b, family), 5*time.Second)
				cancel()
				require.ErrorIs(t, r.err, tc.want)
				assert.Nil(t, r.unlock)
				assert.True(t, strings.HasPrefix(r.err.Error(), "etcdstore: "), r.err.Error())

				require.NoError(t, unlockA(bounded(t, 5*time.Second)))
				unlockB, err := b.Lock(bounded(t, 10*time.Second), family)
				require.NoError(t, err, "the given-up wait left nothing that blocks the family")
				require.NoError(t, unlockB(bounded(t, 5*time.Second)))
			}
		})
	}
}

// A holder that dies without unlocking keeps the others waiting for the lease's TTL at most: its
// client closed (the process died, the keepalive stops), or its lease revoked (etcd lost it).
func TestLockEndsWithTheLease(t *testing.T) {
	const ttl = 2 * time.Second // etcd's minimum with its default election timeout

	t.Run("holder's client closed", func(t *testing.T) {
		deadClient := newClient(t, etcdEndpoint)
		dead := newCoordinator(t, deadClient, etcdstore.WithTTL(ttl))
		alive := newCoordinator(t, newClient(t, etcdEndpoint), etcdstore.WithTTL(ttl))
		_ = mustLock(t, dead, "f") // never unlocked

		waiting := lockAsync(bounded(t, 30*time.Second), alive, "f")
		stillWaiting(t, waiting)
		require.NoError(t, deadClient.Close())
		closed := time.Now()
		r := await(t, waiting, ttl+time.Second)
		require.NoError(t, r.err)
		t.Logf("the waiter got the lock %v after the holder's client closed", time.Since(closed).Round(time.Millisecond))
		require.NoError(t, r.unlock(bounded(t, 5*time.Second)))
	})

	t.Run("holder's lease revoked", func(t *testing.T) {
		admin := newClient(t, etcdEndpoint)
		holder := newCoordinator(t, newClient(t, etcdEndpoint), etcdstore.WithTTL(ttl))
		other := newCoordinator(t, newClient(t, etcdEndpoint), etcdstore.WithTTL(ttl))
		_ = mustLock(t, holder, "f")

		waiting := lockAsync(bounded(t, 30*time.Second), other, "f")
		stillWaiting(t, waiting)
		lease := leaseOf(t, admin, testPrefix(t)+"locks/f/")
		_, err := admin.Revoke(bounded(t, 5*time.Second), lease)
		require.NoError(t, err)
		r := await(t, waiting, 5*time.Second)
		require.NoError(t, r.err)
		require.NoError(t, r.unlock(bounded(t, 5*time.Second)))

		// The holder's session ended with its lease: its next Lock makes a new one.
		unlock, err := holder.Lock(bounded(t, 10*time.Second), "g")
		require.NoError(t, err)
		assert.NotEqual(t, lease, leaseOf(t, admin, testPrefix(t)+"locks/g/"), "a new lease")
		require.NoError(t, unlock(bounded(t, 5*time.Second)))
	})
}

// An unlock that fails (here its context has ended) returns the error, and the lock is still
// released soon after, well within the TTL, for another replica and for the same Coordinator.
func TestFailedUnlockStillReleases(t *testing.T) {
	a := newCoordinator(t, newClient(t, etcdEndpoint)) // TTL 10 s
	b := newCoordinator(t, newClient(t, etcdEndpoint))
	unlock := mustLock(t, a, "f")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	err := unlock(done)
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.HasPrefix(err.Error(), "etcdstore: "), err.Error())

	for name, c := range map[string]*etcdstore.Coordinator{"another replica": b, "the same coordinator": a} {
		unlock, err := c.Lock(bounded(t, 5*time.Second), "f")
		require.NoError(t, err, name)
		require.NoError(t, unlock(bounded(t, 5*time.Second)), name)
	}
}

// leaseOf returns the lease of the first lock key under prefix.
func leaseOf(t *testing.T, client *clientv3.Client, prefix string) clientv3.LeaseID {
	t.Helper()
	resp, err := client.Get(bounded(t, 5*time.Second), prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	require.NotEmpty(t, resp.Kvs, "a lock key under %s", prefix)
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// Close revokes the lease: every lock held through the Coordinator is free at once, and it takes
// no more.
func TestCloseReleasesLocks(t *testing.T) {
	client := newClient(t, etcdEndpoint)
	a, err := etcdstore.New(client, etcdstore.WithPrefix(testPrefix(t)))
	require.NoError(t, err)
	b := newCoordinator(t, newClient(t, etcdEndpoint))
	_ = mustLock(t, a, "f")
	_ = mustLock(t, a, "g")

	require.NoError(t, a.Close())
	for _, family := range []string{"f", "g"} {
		unlock, err := b.Lock(bounded(t, 5*time.Second), family)
		require.NoError(t, err, "Close released %s", family)
		require.NoError(t, unlock(bounded(t, 5*time.Second)))
	}
	_, err = a.Lock(bounded(t, 5*time.Second), "h")
	require.Error(t, err, "no Lock after Close")
	assert.NoError(t, a.Close(), "a second Close does nothing")

	_, err = a.Commit(bounded(t, 5*time.Second), "f", 0, engine.Tokens{Access: "a"})
	assert.NoError(t, err, "Load and Commit need only the client")
}
