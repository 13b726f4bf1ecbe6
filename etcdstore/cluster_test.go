package etcdstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
	"github.com/resilientclient/resilient/internal/clustertest"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// memberBin is the member program (internal/member), built by TestMain without -race: members
// are processes of their own, and this one keeps the race detector on what it runs itself.
var memberBin string

// clusterTTL is the lease of the members' Coordinators: etcd's shortest with its default election
// timeout, so that a killed holder's locks end within about 2 s.
const clusterTTL = 2 * time.Second

// envPrefix is read by the member program only (internal/member's EnvPrefix).
const envPrefix = "ETCDSTORE_PREFIX"

// stores counts the stores handed out, so that every one has a prefix of its own, even when a test
// or benchmark runs again in the same process (-count).
var stores atomic.Int64

// clusterSuite is clustertest's suite on member processes connected to the embedded etcd, each
// test's members sharing a key prefix nobody else uses, whose first pair a Coordinator of this
// process commits.
func clusterSuite() clustertest.Suite {
	return clustertest.Suite{
		Bin: memberBin,
		TTL: clusterTTL,
		Store: func(t testing.TB) ([]string, func(string, engine.Tokens)) {
			prefix := fmt.Sprintf("/cluster/%s/%d/", strings.ReplaceAll(t.Name(), "/", "_"), stores.Add(1))
			seed := func(family string, tok engine.Tokens) {
				coord, err := etcdstore.New(newClient(t, etcdEndpoint), etcdstore.WithPrefix(prefix), etcdstore.WithTTL(clusterTTL))
				require.NoError(t, err)
				defer func() { assert.NoError(t, coord.Close()) }()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err = coord.Commit(ctx, family, 0, tok)
				require.NoError(t, err, "seed family %q", family)
			}
			return []string{clustertest.EnvStore + "=" + etcdEndpoint, envPrefix + "=" + prefix}, seed
		},
	}
}

// Every scenario of cluster mode, on member processes sharing the embedded etcd: one refresh per
// expiry, a member SIGKILLed while it refreshes, the lock holder SIGKILLed after the server rotated
// (with and without a reuse grace), a member cut off from etcd, and Close of one member.
func TestCluster(t *testing.T) {
	clusterSuite().Run(t)
}

// BenchmarkW6ClusterStorm is the W6 storm (clustertest.Suite.Storm): three member processes on the
// embedded etcd, 1,000 requests each parked on one expired token, beside one engine alone. Run it
// with -benchtime=1x.
func BenchmarkW6ClusterStorm(b *testing.B) {
	clusterSuite().Storm(b, 1000)
}

// The member program's own wiring, which the suite does not look at: its locks are under the
// prefix it is given and on a lease of the TTL it is given, and its close revokes that lease.
func TestMemberLeaseAndPrefix(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	storeEnv, seed := clusterSuite().Store(t)
	seed("", srv.Login("ann"))
	var prefix string
	for _, kv := range storeEnv {
		if p, ok := strings.CutPrefix(kv, envPrefix+"="); ok {
			prefix = p
		}
	}
	require.NotEmpty(t, prefix)
	m, err := clustertest.Start(memberBin, append([]string{clustertest.EnvAPI + "=" + srv.URL(),
		clustertest.EnvTokenURL + "=" + srv.OAuth2TokenURL(), clustertest.EnvTTL + "=" + clusterTTL.String()}, storeEnv...)...)
	require.NoError(t, err)
	t.Cleanup(m.Kill)

	// The member's refresh call is held at the token endpoint: it holds the family's lock.
	release := srv.HoldTokenCalls()
	defer release()
	srv.ExpireAccessTokens()
	require.NoError(t, m.Send("get 1 20000"))
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().RefreshCalls < 1 {
		require.True(t, time.Now().Before(deadline), "the member calls the token endpoint within 10 s")
		time.Sleep(5 * time.Millisecond)
	}
	client := newClient(t, etcdEndpoint)
	resp, err := client.Get(bounded(t, 5*time.Second), prefix+"locks/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "one lock key under the member's prefix")
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	ttl, err := client.TimeToLive(bounded(t, 5*time.Second), lease)
	require.NoError(t, err)
	assert.Equal(t, int64(clusterTTL/time.Second), ttl.GrantedTTL, "the lease lasts %s", clustertest.EnvTTL)

	release()
	r, err := m.Wait(20 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, r.OK, "%v", r.Failed)
	r, err = m.Close(30 * time.Second)
	require.NoError(t, err)
	assert.True(t, r.Closed)
	assert.Empty(t, r.Leaks)
	ttl, err = client.TimeToLive(bounded(t, 5*time.Second), lease)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "close revoked the lease")
}
