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

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
	"github.com/resilientclient/resilient/internal/clustertest"
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
	s := clusterSuite()
	t.Run("RefreshOncePerExpiry", s.RefreshOncePerExpiry)
	t.Run("KillRefreshingReplica", s.KillRefreshingReplica)
	t.Run("KillLockHolderAfterRotation", s.KillLockHolderAfterRotation)
	t.Run("CutOff", s.CutOff)
	t.Run("CloseOneMember", s.CloseOneMember)
}

// BenchmarkW6ClusterStorm is the W6 storm (clustertest.Suite.Storm): three member processes on the
// embedded etcd, 1,000 requests each parked on one expired token, beside one engine alone. Run it
// with -benchtime=1x.
func BenchmarkW6ClusterStorm(b *testing.B) {
	clusterSuite().Storm(b, 1000)
}
