package etcdstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
)

// returnsWithin runs f and fails the test if it has not returned d after it started.
func returnsWithin(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("did not return within %v", d)
		return nil
	}
}

// callsEndInTime checks that Load, Commit and Lock each fail, and return by ctx's deadline (1 s)
// and a second of slack, rather than wait for etcd to answer.
func callsEndInTime(t *testing.T, c *etcdstore.Coordinator) {
	t.Helper()
	for name, call := range map[string]func(context.Context) error{
		"Load": func(ctx context.Context) error {
			_, _, err := c.Load(ctx, "f")
			return err
		},
		"Commit": func(ctx context.Context) error {
			_, err := c.Commit(ctx, "f", 0, engine.Tokens{Access: "SECRET-a", Refresh: "SECRET-r"})
			return err
		},
		"Lock": func(ctx context.Context) error {
			_, err := c.Lock(ctx, "g")
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := returnsWithin(t, 2*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				return call(ctx)
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "etcdstore: ")
			assert.NotContains(t, err.Error(), "SECRET")
		})
	}
}

// A client pointed at a port where nothing listens: every call fails when its context ends.
func TestNothingListening(t *testing.T) {
	ports, err := freePorts(1) // free, and closed again
	require.NoError(t, err)
	c := newCoordinator(t, newClient(t, ports[0]))
	callsEndInTime(t, c)
}

// etcd stops while one replica holds a lock and another waits for it: the waiter returns when its
// context ends, and so does every later call.
func TestServerStopped(t *testing.T) {
	e, err := startEtcd() // this test's own: it stops it
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stopEtcd(e)
		}
	})
	endpoint := e.Clients[0].Addr().String()
	holder := newCoordinator(t, newClient(t, endpoint), etcdstore.WithTTL(2*time.Second))
	waiter := newCoordinator(t, newClient(t, endpoint), etcdstore.WithTTL(2*time.Second))
	_ = mustLock(t, holder, "f")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	waiting := lockAsync(ctx, waiter, "f")
	stillWaiting(t, waiting)

	// The server refuses new connections and requests at once, and cuts the streams it still
	// serves (the waiter's watch) when its request timeout ends, 7 s later. The waiter's context
	// ends in between.
	stoppedC := make(chan struct{})
	go func() {
		defer close(stoppedC)
		stopEtcd(e)
	}()
	stopped = true
	r := await(t, waiting, 3*time.Second) // its deadline is 1.5 s away
	require.ErrorIs(t, r.err, context.DeadlineExceeded)
	<-stoppedC // bounded by the server's request timeout
	callsEndInTime(t, waiter)
	callsEndInTime(t, holder)
}
